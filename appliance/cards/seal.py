"""Seal a small secret to a card's key-management key (slot 9D, ECC P-256).

ECIES built from vetted parts in ``cryptography``: an ephemeral P-256 key,
ECDH with the card's public key, HKDF-SHA256, AES-256-GCM. Only the card can
redo the ECDH (``PivSession.ecdh``), so only the card holder, with the PIN,
can open the secret. Layout (all offsets in bytes; docs/smart-cards.md):

    0    6   magic "CSEAL" and version 0x01
    6    32  SHA-256 of the recipient's SubjectPublicKeyInfo (which card)
    38   65  ephemeral public key, uncompressed SEC1 point (04 || X || Y)
    103  12  AES-GCM nonce
    115  n   ciphertext, then the 16-byte GCM tag

Key = HKDF-SHA256(ikm = ECDH x-coordinate, salt = none,
info = "citadel seal-to-card v1" || bytes 6..103); the AES-GCM associated data
is bytes 0..115, so no header byte can change without the tag failing.
``seal_to_card`` runs without pyscard.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.cards import spec
from appliance.cards.errors import SealedDataInvalid, UnsupportedAlgorithm, WrongCard
from appliance.cards.spec import Slot
from appliance.kernel.errors import BadRequest

if TYPE_CHECKING:
    from appliance.cards.piv import PivSession

MAGIC = b"CSEAL\x01"
INFO = b"citadel seal-to-card v1"
FINGERPRINT_SIZE = 32
POINT_SIZE = 65
NONCE_SIZE = 12
TAG_SIZE = 16
HEADER_SIZE = len(MAGIC) + FINGERPRINT_SIZE + POINT_SIZE + NONCE_SIZE
MAX_SECRET = 65536


def _p256(public_key: object) -> ec.EllipticCurvePublicKey:
    if isinstance(public_key, ec.EllipticCurvePublicKey) and \
            isinstance(public_key.curve, ec.SECP256R1):
        return public_key
    raise UnsupportedAlgorithm(slot="9D", detail=f"{type(public_key).__name__} cannot be "
                               "sealed to; the 9D key must be ECC P-256")


def _key(shared: bytes, binding: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=INFO + binding).derive(shared)


def seal_to_card(public_key_9d: PublicKeyTypes, data: bytes) -> bytes:
    """Encrypt ``data`` (up to 64 KiB) so that only the card holding ``public_key_9d`` opens it."""
    recipient = _p256(public_key_9d)
    if len(data) > MAX_SECRET:
        raise BadRequest(detail=f"a sealed secret is at most {MAX_SECRET} bytes")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    binding = bytes.fromhex(spec.key_fingerprint(recipient)) + point
    nonce = os.urandom(NONCE_SIZE)
    header = MAGIC + binding + nonce
    key = _key(ephemeral.exchange(ec.ECDH(), recipient), binding)
    return header + AESGCM(key).encrypt(nonce, data, header)


def sealed_fingerprint(blob: bytes) -> str:
    """Which card key (SubjectPublicKeyInfo SHA-256, hex) ``blob`` is sealed to."""
    _check_shape(blob)
    return blob[len(MAGIC):len(MAGIC) + FINGERPRINT_SIZE].hex()


def _check_shape(blob: bytes) -> None:
    if not blob.startswith(MAGIC):
        raise SealedDataInvalid(detail="not a Citadel sealed secret (bad magic or version)")
    if len(blob) < HEADER_SIZE + TAG_SIZE:
        raise SealedDataInvalid(detail="too short")


def open_with_card(piv_session: PivSession, blob: bytes) -> bytes:
    """Decrypt ``blob`` with the card in ``piv_session`` (its PIN already verified)."""
    fingerprint = sealed_fingerprint(blob)
    card_key = _p256(piv_session.read_certificate(Slot.KEY_MANAGEMENT).public_key())
    if spec.key_fingerprint(card_key) != fingerprint:
        raise WrongCard(fingerprint=fingerprint[:16])
    start = len(MAGIC)
    binding = blob[start:start + FINGERPRINT_SIZE + POINT_SIZE]
    point = binding[FINGERPRINT_SIZE:]
    nonce = blob[start + FINGERPRINT_SIZE + POINT_SIZE:HEADER_SIZE]
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise SealedDataInvalid(detail="ephemeral key is not a P-256 point") from exc
    key = _key(piv_session.ecdh(ephemeral, Slot.KEY_MANAGEMENT), binding)
    try:
        return AESGCM(key).decrypt(nonce, blob[HEADER_SIZE:], blob[:HEADER_SIZE])
    except InvalidTag as exc:
        raise SealedDataInvalid(detail="authentication failed") from exc
