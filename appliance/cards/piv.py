"""A PIV client (NIST SP 800-73-4) over PC/SC: works with YubiKeys and other PIV cards.

    with PivSession.open(reader=None) as piv:      # first reader holding a card
        piv.verify_pin("123456")
        signature = piv.sign(message)              # slot 9A, SHA-256
        shared = piv.ecdh(peer_public_key)         # slot 9D, P-256

The session holds a PC/SC transaction and resets the card when it closes, so
the verified PIN never outlives the operation. Responses longer than one APDU
(61xx), a wrong Le (6Cxx) and commands longer than 255 bytes (command chaining)
are handled here; anything malformed raises ``MalformedResponse``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from appliance.cards import spec, tlv
from appliance.cards.apdu import (
    INS_GET_RESPONSE,
    SW_AUTH_BLOCKED,
    SW_BYTES_REMAINING,
    SW_NOT_FOUND,
    SW_OK,
    SW_REF_NOT_FOUND,
    SW_SECURITY_STATUS,
    SW_VERIFY_FAILED,
    SW_WRONG_LE,
    ApduError,
    Command,
    Response,
    sw_hex,
)
from appliance.cards.errors import (
    CardCommandFailed,
    CardRemoved,
    MalformedResponse,
    NotPivCard,
    PinBlocked,
    PinRequired,
    SlotEmpty,
    UnsupportedAlgorithm,
    WrongPin,
)
from appliance.cards.spec import Algorithm, Slot
from appliance.cards.transport import CardChannel, PcscContext

MAX_RESPONSE = 65536
INS_YUBIKEY_SERIAL = 0xF8


@dataclass(frozen=True)
class PinStatus:
    """Whether the PIN is verified in this session, and the tries left if known."""

    verified: bool
    tries_left: int | None


@dataclass(frozen=True)
class CardIdentity:
    """How Citadel names a card: the CHUID GUID, else the YubiKey serial."""

    card_id: str
    guid: str | None
    fascn: str | None
    serial: int | None


class PivSession:
    """The PIV application selected on one card, for one operation."""

    def __init__(self, channel: CardChannel) -> None:
        self._channel = channel
        self.reader = channel.reader

    @classmethod
    @contextmanager
    def open(cls, reader: str | None = None) -> Iterator[PivSession]:
        """Connect to ``reader`` (exact name) or the first reader with a card; select PIV."""
        with PcscContext() as context:
            name = context.choose_reader(reader)
            with context.connect(name) as channel:
                session = cls(channel)
                session.select()
                yield session

    # -- APDU exchange ---------------------------------------------------------------

    def _exchange(self, command: Command) -> Response:
        raw = self._channel.transmit(command.encode())
        if not raw and self._channel.vanished():
            raise CardRemoved()
        try:
            return Response.parse(raw)
        except ApduError as exc:
            raise MalformedResponse(detail=str(exc)) from exc

    def transceive(self, command: Command) -> Response:
        """Send ``command`` (chained if long); collect all response data (61xx, 6Cxx)."""
        *head, last = command.chained()
        for part in head:
            response = self._exchange(part)
            if response.sw != SW_OK:
                return response
        response = self._exchange(last)
        if response.sw1 == SW_WRONG_LE:
            response = self._exchange(replace(last, le=response.sw2 or 256))
        data = response.data
        for _ in range(MAX_RESPONSE // 256):
            if response.sw1 != SW_BYTES_REMAINING:
                return Response(data, response.sw)
            response = self._exchange(Command(0x00, INS_GET_RESPONSE, 0, 0, le=response.sw2 or 256))
            data += response.data
        raise MalformedResponse(detail=f"response chaining beyond {MAX_RESPONSE} bytes")

    def _require_ok(self, response: Response, command: str) -> bytes:
        if response.sw == SW_OK:
            return response.data
        if response.sw == SW_SECURITY_STATUS:
            raise PinRequired(action=command)
        if response.sw == SW_AUTH_BLOCKED:
            raise PinBlocked()
        raise CardCommandFailed(command=command, sw=sw_hex(response.sw))

    # -- PIV commands -------------------------------------------------------------------

    def select(self) -> None:
        """SELECT the PIV application."""
        response = self.transceive(Command(0x00, spec.INS_SELECT, 0x04, 0x00,
                                           spec.PIV_AID_SELECT, le=256))
        if response.sw != SW_OK:
            raise NotPivCard(reader=self.reader)

    def pin_status(self) -> PinStatus:
        """Ask the card (VERIFY without data) whether the PIN is verified, and tries left."""
        response = self.transceive(Command(0x00, spec.INS_VERIFY, 0x00, spec.PIN_REFERENCE))
        if response.sw == SW_OK:
            return PinStatus(True, None)
        if response.sw == SW_AUTH_BLOCKED:
            return PinStatus(False, 0)
        if response.sw1 == SW_VERIFY_FAILED and response.sw2 & 0xF0 == 0xC0:
            return PinStatus(False, response.sw2 & 0x0F)
        raise CardCommandFailed(command="to report the PIN status", sw=sw_hex(response.sw))

    def verify_pin(self, pin: str) -> None:
        """VERIFY the PIN; raises ``WrongPin`` (with tries left) or ``PinBlocked``."""
        response = self.transceive(Command(0x00, spec.INS_VERIFY, 0x00, spec.PIN_REFERENCE,
                                           spec.pad_pin(pin)))
        if response.sw == SW_OK:
            return
        if response.sw == SW_AUTH_BLOCKED:
            raise PinBlocked()
        if response.sw1 == SW_VERIFY_FAILED and response.sw2 & 0xF0 == 0xC0:
            tries = response.sw2 & 0x0F
            if tries == 0:
                raise PinBlocked()
            raise WrongPin(tries)
        raise CardCommandFailed(command="the PIN", sw=sw_hex(response.sw))

    def get_data(self, tag: int) -> bytes | None:
        """The content of data object ``tag``, or None if the card does not hold it."""
        query = tlv.encode(spec.TAG_TAG_LIST, tlv.encode_tag(tag))
        response = self.transceive(Command(0x00, spec.INS_GET_DATA, 0x3F, 0xFF, query, le=256))
        if response.sw in (SW_NOT_FOUND, SW_REF_NOT_FOUND):
            return None
        data = self._require_ok(response, f"to read object {tag:X}")
        outer = spec.TAG_DISCOVERY if tag == spec.TAG_DISCOVERY else spec.TAG_DATA
        try:
            return tlv.unwrap(data, outer)
        except tlv.TlvError as exc:
            raise MalformedResponse(detail=f"object {tag:X}: {exc}") from exc

    def read_chuid(self) -> spec.Chuid | None:
        """The Card Holder Unique Identifier, if the card has one."""
        value = self.get_data(spec.TAG_CHUID)
        if value is None:
            return None
        try:
            return spec.Chuid.decode(value)
        except tlv.TlvError as exc:
            raise MalformedResponse(detail=f"CHUID: {exc}") from exc

    def read_certificate(self, slot: Slot = Slot.AUTHENTICATION) -> x509.Certificate:
        """The X.509 certificate stored for ``slot``."""
        value = self.get_data(spec.CERTIFICATE_TAGS[slot])
        if value is None:
            raise SlotEmpty(what="certificate", slot=slot.label)
        try:
            return spec.decode_certificate_object(value)
        except (ValueError, tlv.TlvError) as exc:
            raise MalformedResponse(detail=f"certificate of slot {slot.label}: {exc}") from exc

    def yubikey_serial(self) -> int | None:
        """A YubiKey's serial number (None on other cards)."""
        response = self.transceive(Command(0x00, INS_YUBIKEY_SERIAL, 0x00, 0x00, le=256))
        if response.sw != SW_OK or len(response.data) != 4:
            return None
        return int.from_bytes(response.data, "big")

    def identity(self) -> CardIdentity:
        """The card's stable identifier: the CHUID GUID, else a YubiKey's serial."""
        chuid = self.read_chuid()
        guid = chuid.guid.hex() if chuid and chuid.guid.strip(b"\x00") else None
        fascn = chuid.fascn.hex() if chuid and chuid.fascn else None
        serial = None if guid else self.yubikey_serial()
        if guid:
            card_id = guid
        elif serial is not None:
            card_id = f"yubikey-{serial}"
        else:
            raise SlotEmpty(what="CHUID (card identifier)", slot="5FC102")
        return CardIdentity(card_id, guid, fascn, serial)

    # -- private-key operations ------------------------------------------------------------

    def _authenticate(self, algorithm: Algorithm, slot: Slot, template: bytes,
                      action: str) -> bytes:
        command = Command(0x00, spec.INS_GENERAL_AUTHENTICATE, algorithm, slot,
                          tlv.encode(spec.TAG_DYNAMIC_AUTH, template), le=256)
        response = self.transceive(command)
        if response.sw == SW_REF_NOT_FOUND:
            raise SlotEmpty(what="key", slot=slot.label)
        data = self._require_ok(response, action)
        try:
            fields = tlv.to_dict(tlv.unwrap(data, spec.TAG_DYNAMIC_AUTH))
        except tlv.TlvError as exc:
            raise MalformedResponse(detail=f"GENERAL AUTHENTICATE: {exc}") from exc
        if spec.TAG_RESPONSE not in fields:
            raise MalformedResponse(detail="GENERAL AUTHENTICATE answer without a response")
        return fields[spec.TAG_RESPONSE]

    def sign(self, message: bytes, slot: Slot = Slot.AUTHENTICATION,
             public_key: PublicKeyTypes | None = None) -> bytes:
        """Sign SHA-256(``message``) with ``slot``'s key (PIN must be verified).

        Returns a DER ECDSA signature (P-256) or a PKCS#1 v1.5 signature (RSA-2048);
        both verify with ``cryptography`` against the slot's public key and SHA-256.
        """
        key = public_key if public_key is not None else self.read_certificate(slot).public_key()
        algorithm = spec.algorithm_of(key, slot)
        digest = hashlib.sha256(message).digest()
        payload = digest if algorithm is Algorithm.ECC_P256 else spec.pkcs1v15_block(digest)
        template = tlv.encode(spec.TAG_RESPONSE, b"") + tlv.encode(spec.TAG_CHALLENGE, payload)
        signature = self._authenticate(algorithm, slot, template, "sign")
        _check_signature_shape(algorithm, signature)
        return signature

    def ecdh(self, peer: ec.EllipticCurvePublicKey,
             slot: Slot = Slot.KEY_MANAGEMENT) -> bytes:
        """The P-256 ECDH shared secret (x coordinate) of ``slot``'s key and ``peer``."""
        if not isinstance(peer.curve, ec.SECP256R1):
            raise UnsupportedAlgorithm(slot=slot.label, detail=f"peer key on {peer.curve.name}")
        point = peer.public_bytes(serialization.Encoding.X962,
                                  serialization.PublicFormat.UncompressedPoint)
        template = tlv.encode(spec.TAG_RESPONSE, b"") + tlv.encode(spec.TAG_EXPONENTIATION, point)
        shared = self._authenticate(Algorithm.ECC_P256, slot, template, "decrypt")
        if len(shared) != 32:
            raise MalformedResponse(detail=f"ECDH secret of {len(shared)} bytes, expected 32")
        return shared


def _check_signature_shape(algorithm: Algorithm, signature: bytes) -> None:
    if algorithm is Algorithm.RSA_2048:
        if len(signature) != spec.RSA_2048_BYTES:
            raise MalformedResponse(detail=f"RSA signature of {len(signature)} bytes")
        return
    try:
        decode_dss_signature(signature)
    except ValueError as exc:
        raise MalformedResponse(detail="ECDSA signature is not DER") from exc
