"""What SP 800-73-4 fixes: the PIV AID, slots, algorithms and data objects.

Shared by the client (``piv``) and the virtual card (``applet``) so both read
the standard the same way.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from enum import IntEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from appliance.cards import tlv
from appliance.cards.errors import BadPinFormat, UnsupportedAlgorithm

#: PIV application identifier; cards select on the first 9 bytes (the PIX truncated).
PIV_AID = bytes.fromhex("A000000308000010000100")
PIV_AID_SELECT = PIV_AID[:9]
PIV_RID = PIV_AID[:5]

INS_SELECT = 0xA4
INS_VERIFY = 0x20
INS_GET_DATA = 0xCB
INS_GENERAL_AUTHENTICATE = 0x87

PIN_REFERENCE = 0x80
PIN_MIN, PIN_MAX = 6, 8
PIN_PAD = 0xFF

# Data objects (GET DATA tags) and their containers.
TAG_CHUID = 0x5FC102
TAG_DISCOVERY = 0x7E
TAG_DATA = 0x53
TAG_CERTIFICATE = 0x70
TAG_CERT_INFO = 0x71
TAG_ERROR_DETECTION = 0xFE
TAG_TAG_LIST = 0x5C

# CHUID fields.
TAG_FASCN = 0x30
TAG_GUID = 0x34
TAG_EXPIRY = 0x35
TAG_ISSUER_SIGNATURE = 0x3E

# GENERAL AUTHENTICATE dynamic authentication template and its fields.
TAG_DYNAMIC_AUTH = 0x7C
TAG_RESPONSE = 0x82
TAG_CHALLENGE = 0x81
TAG_EXPONENTIATION = 0x85


class Slot(IntEnum):
    """Key references (SP 800-78-4 table 4-1)."""

    AUTHENTICATION = 0x9A
    SIGNATURE = 0x9C
    KEY_MANAGEMENT = 0x9D
    CARD_AUTHENTICATION = 0x9E

    @property
    def label(self) -> str:
        return f"{self.value:02X}"


#: Certificate object for each slot.
CERTIFICATE_TAGS = {
    Slot.AUTHENTICATION: 0x5FC105,
    Slot.SIGNATURE: 0x5FC10A,
    Slot.KEY_MANAGEMENT: 0x5FC10B,
    Slot.CARD_AUTHENTICATION: 0x5FC101,
}


class Algorithm(IntEnum):
    """Algorithm identifiers (SP 800-78-4 table 6-2) that Citadel accepts."""

    RSA_2048 = 0x07
    ECC_P256 = 0x11

    @property
    def label(self) -> str:
        return {Algorithm.RSA_2048: "rsa2048", Algorithm.ECC_P256: "p256"}[self]

    @property
    def signature_name(self) -> str:
        return {Algorithm.RSA_2048: "rsa-pkcs1v15-sha256",
                Algorithm.ECC_P256: "ecdsa-p256-sha256"}[self]


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def algorithm_of(public_key: object, slot: int = Slot.AUTHENTICATION) -> Algorithm:
    """The PIV algorithm of ``public_key``; anything else is refused."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if isinstance(public_key.curve, ec.SECP256R1):
            return Algorithm.ECC_P256
        raise UnsupportedAlgorithm(slot=f"{slot:02X}", detail=f"ECC {public_key.curve.name}")
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size == 2048:
            return Algorithm.RSA_2048
        raise UnsupportedAlgorithm(slot=f"{slot:02X}", detail=f"RSA-{public_key.key_size}")
    raise UnsupportedAlgorithm(slot=f"{slot:02X}", detail=type(public_key).__name__)


def pad_pin(pin: str) -> bytes:
    """The 8-byte PIN reference data: the PIN's bytes padded with FF."""
    raw = pin.encode("utf-8")
    if not PIN_MIN <= len(raw) <= PIN_MAX:
        raise BadPinFormat()
    return raw + bytes([PIN_PAD]) * (PIN_MAX - len(raw))


@dataclass(frozen=True)
class Chuid:
    """The Card Holder Unique Identifier: who issued the card and its GUID."""

    fascn: bytes
    guid: bytes
    expiry: str

    def encode(self) -> bytes:
        return (tlv.encode(TAG_FASCN, self.fascn) + tlv.encode(TAG_GUID, self.guid)
                + tlv.encode(TAG_EXPIRY, self.expiry.encode("ascii"))
                + tlv.encode(TAG_ISSUER_SIGNATURE, b"") + tlv.encode(TAG_ERROR_DETECTION, b""))

    @classmethod
    def decode(cls, value: bytes) -> Chuid:
        fields = tlv.to_dict(value)
        return cls(fascn=fields.get(TAG_FASCN, b""), guid=fields.get(TAG_GUID, b""),
                   expiry=fields.get(TAG_EXPIRY, b"").decode("ascii", "replace"))


def encode_certificate_object(der: bytes) -> bytes:
    """The content of a certificate data object (uncompressed)."""
    return (tlv.encode(TAG_CERTIFICATE, der) + tlv.encode(TAG_CERT_INFO, b"\x00")
            + tlv.encode(TAG_ERROR_DETECTION, b""))


def decode_certificate_object(value: bytes) -> x509.Certificate:
    """The X.509 certificate in a certificate data object (gzip-compressed or not)."""
    fields = tlv.to_dict(value)
    if TAG_CERTIFICATE not in fields:
        raise ValueError("no certificate (tag 70) in the object")
    der = fields[TAG_CERTIFICATE]
    if fields.get(TAG_CERT_INFO, b"\x00")[:1] == b"\x01":  # CertInfo: gzip-compressed
        try:
            der = gzip.decompress(der)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"compressed certificate does not inflate: {exc}") from exc
    return x509.load_der_x509_certificate(der)


#: DER prefixes of DigestInfo (RFC 8017 section 9.2, note 1), by digest length.
DIGEST_INFO_PREFIXES = {
    32: bytes.fromhex("3031300d060960864801650304020105000420"),  # SHA-256
    48: bytes.fromhex("3041300d060960864801650304020205000430"),  # SHA-384
    64: bytes.fromhex("3051300d060960864801650304020305000440"),  # SHA-512
}
RSA_2048_BYTES = 256


def pkcs1v15_block(digest: bytes, size: int = RSA_2048_BYTES) -> bytes:
    """EMSA-PKCS1-v1_5 encoding of a SHA-2 digest: what an RSA PIV key exponentiates.

    PIV cards do raw RSA, so the client builds this block (RFC 8017 section 9.2).
    """
    info = DIGEST_INFO_PREFIXES[len(digest)] + digest
    return b"\x00\x01" + b"\xff" * (size - 3 - len(info)) + b"\x00" + info


def digest_from_pkcs1v15_block(block: bytes) -> bytes | None:
    """The digest inside an EMSA-PKCS1-v1_5 block, or None if it is not one."""
    if len(block) < 11 or block[:2] != b"\x00\x01":
        return None
    end = block.find(b"\x00", 2)
    if end < 10 or block[2:end].strip(b"\xff"):
        return None
    info = block[end + 1:]
    for size, prefix in DIGEST_INFO_PREFIXES.items():
        if len(info) == len(prefix) + size and info.startswith(prefix):
            return info[len(prefix):]
    return None


def key_fingerprint(public_key: PublicKeyTypes) -> str:
    """SHA-256 of the key's SubjectPublicKeyInfo (hex): how a card key is looked up."""
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()
