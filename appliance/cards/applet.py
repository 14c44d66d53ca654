"""The PIV applet of the virtual card: SP 800-73-4 commands on a ``VirtualCardState``.

Implements what Citadel and common PIV software use: SELECT, VERIFY (PIN with
retry counter and blocking), GET DATA (CHUID, discovery object, certificates),
GENERAL AUTHENTICATE (sign with ECDSA P-256 or raw RSA-2048 over a PKCS#1 v1.5
block, P-256 ECDH), command chaining and GET RESPONSE. Tests can make it
misbehave once with ``inject(Fault...)``.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from appliance.cards import spec, tlv
from appliance.cards.apdu import (
    CLA_CHAINING,
    INS_GET_RESPONSE,
    SW_AUTH_BLOCKED,
    SW_CLA_NOT_SUPPORTED,
    SW_CONDITIONS,
    SW_INS_NOT_SUPPORTED,
    SW_NOT_FOUND,
    SW_OK,
    SW_REF_NOT_FOUND,
    SW_SECURITY_STATUS,
    SW_WRONG_DATA,
    SW_WRONG_LENGTH,
    SW_WRONG_P1P2,
    ApduError,
    Command,
    Response,
)
from appliance.cards.spec import Slot
from appliance.cards.virtual_state import VirtualCardState

HASHES = {32: hashes.SHA256(), 48: hashes.SHA384(), 64: hashes.SHA512()}
DISCOVERY = tlv.encode(0x4F, spec.PIV_AID) + tlv.encode(0x5F2F, b"\x40\x00")
SELECT_ANSWER = tlv.encode(0x61, tlv.encode(0x4F, spec.PIV_AID[5:])
                           + tlv.encode(0x79, tlv.encode(0x4F, spec.PIV_RID)))


class Fault(StrEnum):
    """One-shot misbehaviours, for testing how clients cope."""

    TRUNCATED = "truncated"  # next answer is one byte: no status word
    BAD_TLV = "bad-tlv"  # next GET DATA or GENERAL AUTHENTICATE answer loses its last byte
    WRONG_TAG = "wrong-tag"  # next GENERAL AUTHENTICATE answer lacks the 7C template
    ENDLESS_CHAINING = "endless-chaining"  # next answer with data says 61xx forever
    WRONG_LE = "wrong-le"  # next answer with data is 6Cxx unless Le is exact
    REMOVE_ON_AUTH = "remove-on-auth"  # the card is pulled out at GENERAL AUTHENTICATE


def _status(sw: int) -> Response:
    return Response(b"", sw)


class PivApplet:
    """Processes command APDUs; ``process`` returns the answer, or None to vanish."""

    def __init__(self, state: VirtualCardState,
                 on_change: Callable[[VirtualCardState], None] | None = None) -> None:
        self.state = state
        self._on_change = on_change
        self._faults: set[Fault] = set()
        self._lock = threading.Lock()
        self.commands_seen = 0  # how many APDUs reached the card (tests check it)
        self.reset()

    def reset(self) -> None:
        """Power cycle: nothing selected, PIN not verified, no pending data."""
        self.selected = False
        self.pin_verified = False
        self._chain: tuple[bytes, bytes] | None = None  # (header, data so far)
        self._pending = b""
        self._endless = False

    def inject(self, fault: Fault) -> None:
        """Misbehave once, at the next command where ``fault`` applies."""
        with self._lock:
            self._faults.add(Fault(fault))

    def clear_faults(self) -> None:
        """Forget faults that have not fired."""
        with self._lock:
            self._faults.clear()

    def _take(self, fault: Fault) -> bool:
        with self._lock:
            if fault in self._faults:
                self._faults.discard(fault)
                return True
            return False

    # -- framing -------------------------------------------------------------------

    def process(self, raw: bytes) -> bytes | None:
        """Answer one command APDU (``data || SW1 SW2``); None means "card removed"."""
        self.commands_seen += 1
        try:
            command = Command.parse(raw)
        except ApduError:
            return _status(SW_WRONG_LENGTH).encode()
        if self._take(Fault.TRUNCATED):
            return b"\x90"
        if command.ins == INS_GET_RESPONSE:
            return self._get_response(command)
        self._pending, self._endless = b"", False
        whole = self._unchain(command)
        if whole is None:
            return _status(SW_OK).encode()
        if whole.ins == spec.INS_GENERAL_AUTHENTICATE and self._take(Fault.REMOVE_ON_AUTH):
            return None
        return self._send(self._dispatch(whole), whole.le)

    def _unchain(self, command: Command) -> Command | None:
        """Accumulate chained commands; the full command once the last part arrives."""
        header = bytes([command.cla & ~CLA_CHAINING, command.ins, command.p1, command.p2])
        earlier = self._chain[1] if self._chain and self._chain[0] == header else b""
        if command.cla & CLA_CHAINING:
            self._chain = (header, earlier + command.data)
            return None
        self._chain = None
        if not earlier:
            return command
        return Command(header[0], command.ins, command.p1, command.p2,
                       earlier + command.data, command.le)

    def _send(self, response: Response, le: int | None) -> bytes:
        data = response.data
        if data and len(data) <= 256 and le != len(data) and self._take(Fault.WRONG_LE):
            return bytes([0x6C, len(data) & 0xFF])
        if data and self._take(Fault.ENDLESS_CHAINING):
            self._endless = True
            return data[:16] + b"\x61\x10"
        limit = 256 if le is None else le
        if len(data) <= limit:
            return Response(data, response.sw).encode()
        self._pending = data[limit:]
        return data[:limit] + bytes([0x61, min(len(self._pending), 256) & 0xFF])

    def _get_response(self, command: Command) -> bytes:
        if self._endless:
            return bytes(16) + b"\x61\x10"
        if not self._pending:
            return _status(SW_CONDITIONS).encode()
        limit = command.le or 256
        chunk, self._pending = self._pending[:limit], self._pending[limit:]
        if self._pending:
            return chunk + bytes([0x61, min(len(self._pending), 256) & 0xFF])
        return chunk + b"\x90\x00"

    # -- commands ---------------------------------------------------------------------

    def _dispatch(self, command: Command) -> Response:
        if command.cla != 0x00:  # no secure messaging, no logical channels
            return _status(SW_CLA_NOT_SUPPORTED)
        if command.ins == spec.INS_SELECT:
            return self._select(command)
        if not self.selected:
            return _status(SW_INS_NOT_SUPPORTED)
        handlers = {spec.INS_VERIFY: self._verify, spec.INS_GET_DATA: self._get_data,
                    spec.INS_GENERAL_AUTHENTICATE: self._general_authenticate}
        handler = handlers.get(command.ins)
        if handler is None:
            return _status(SW_INS_NOT_SUPPORTED)
        response = handler(command)
        if response.data and self._take(Fault.BAD_TLV):
            return Response(response.data[:-1], response.sw)
        return response

    def _select(self, command: Command) -> Response:
        aid = command.data
        if command.p1 != 0x04 or len(aid) < 5 or not spec.PIV_AID.startswith(aid):
            self.selected = False
            return _status(SW_NOT_FOUND)
        self.selected = True
        return Response(SELECT_ANSWER, SW_OK)

    def _verify(self, command: Command) -> Response:
        if command.p2 != spec.PIN_REFERENCE:
            return _status(SW_REF_NOT_FOUND)
        if command.p1 == 0xFF:  # reset the security status
            self.pin_verified = False
            return _status(SW_OK)
        state = self.state
        if not command.data:
            if self.pin_verified:
                return _status(SW_OK)
            return _status(0x63C0 | state.pin_tries_left if state.pin_tries_left else
                           SW_AUTH_BLOCKED)
        if len(command.data) != spec.PIN_MAX:
            return _status(SW_WRONG_DATA)
        if state.pin_tries_left == 0:
            return _status(SW_AUTH_BLOCKED)
        if hmac.compare_digest(command.data, spec.pad_pin(state.pin)):
            self.pin_verified = True
            self._set_tries(state.pin_tries_max)
            return _status(SW_OK)
        self.pin_verified = False
        self._set_tries(state.pin_tries_left - 1)
        return _status(0x63C0 | state.pin_tries_left)

    def _set_tries(self, tries: int) -> None:
        if tries != self.state.pin_tries_left:
            self.state.pin_tries_left = tries
            if self._on_change:
                self._on_change(self.state)

    def _get_data(self, command: Command) -> Response:
        if (command.p1, command.p2) != (0x3F, 0xFF):
            return _status(SW_WRONG_P1P2)
        try:
            tag = int.from_bytes(tlv.unwrap(command.data, spec.TAG_TAG_LIST), "big")
        except tlv.TlvError:
            return _status(SW_WRONG_DATA)
        value = self._data_object(tag)
        return Response(value, SW_OK) if value is not None else _status(SW_NOT_FOUND)

    def _data_object(self, tag: int) -> bytes | None:
        if tag == spec.TAG_DISCOVERY:
            return tlv.encode(spec.TAG_DISCOVERY, DISCOVERY)
        if tag == spec.TAG_CHUID:
            return tlv.encode(spec.TAG_DATA, self.state.chuid.encode())
        for slot, cert_tag in spec.CERTIFICATE_TAGS.items():
            if tag == cert_tag and slot in self.state.certificates:
                certificate = spec.encode_certificate_object(self.state.certificates[slot])
                return tlv.encode(spec.TAG_DATA, certificate)
        return None

    def _general_authenticate(self, command: Command) -> Response:
        try:
            slot = Slot(command.p2)
        except ValueError:
            return _status(SW_WRONG_P1P2)
        key = self.state.keys.get(slot)
        if key is None:
            return _status(SW_REF_NOT_FOUND)
        if spec.algorithm_of(key.public_key(), slot) != command.p1:
            return _status(SW_WRONG_P1P2)
        if not self.pin_verified:
            return _status(SW_SECURITY_STATUS)
        try:
            fields = tlv.to_dict(tlv.unwrap(command.data, spec.TAG_DYNAMIC_AUTH))
        except tlv.TlvError:
            return _status(SW_WRONG_DATA)
        if fields.get(spec.TAG_RESPONSE) != b"":
            return _status(SW_WRONG_DATA)
        if spec.TAG_CHALLENGE in fields:
            result = _sign(key, fields[spec.TAG_CHALLENGE])
        elif spec.TAG_EXPONENTIATION in fields:
            result = _agree(key, fields[spec.TAG_EXPONENTIATION])
        else:
            result = None
        if result is None:
            return _status(SW_WRONG_DATA)
        outer = 0x7D if self._take(Fault.WRONG_TAG) else spec.TAG_DYNAMIC_AUTH
        return Response(tlv.encode(outer, tlv.encode(spec.TAG_RESPONSE, result)), SW_OK)


def _sign(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, data: bytes) -> bytes | None:
    """ECDSA over a hash-sized input, or RSA over a PKCS#1 v1.5 block, via ``cryptography``.

    A real card exponentiates any RSA block; this one signs only well-formed
    SHA-2 DigestInfo blocks, which is all PIV clients send for signatures.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        # ECDSA uses the leftmost 256 bits of the input, as a real card does.
        hashed = data[:32].rjust(32, b"\x00")
        return key.sign(hashed, ec.ECDSA(Prehashed(hashes.SHA256())))
    if len(data) != key.key_size // 8:
        return None
    digest = spec.digest_from_pkcs1v15_block(data)
    if digest is None:
        return None
    return key.sign(digest, padding.PKCS1v15(), Prehashed(HASHES[len(digest)]))


def _agree(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, point: bytes) -> bytes | None:
    """The ECDH shared secret with the peer ``point``; None for RSA keys or bad points."""
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        return None
    return key.exchange(ec.ECDH(), peer)

