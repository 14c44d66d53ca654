"""The few cryptographic operations Citadel uses, each a thin call into a vetted library.

AES-256-GCM, HKDF-SHA256 and HMAC-SHA256 come from ``cryptography`` (OpenSSL);
randomness from the operating system. Nothing here implements a primitive: it
only fixes parameters and turns library failures into Citadel errors.
"""

from __future__ import annotations

import base64
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.keys.errors import DecryptionFailed

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the operating system's CSPRNG."""
    return os.urandom(count)


def hkdf(key: bytes, info: bytes, *, length: int = KEY_BYTES, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 (RFC 5869): one independent key per purpose from one key."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of ``data``."""
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def equal(a: bytes, b: bytes) -> bool:
    """Compare two MACs or secrets in constant time."""
    return hmac.compare_digest(a, b)


def seal(key: bytes | AESGCM, plaintext: bytes, ad: bytes, nonce: bytes | None = None) -> bytes:
    """AES-256-GCM encryption: ``nonce || ciphertext || tag`` (random 96-bit nonce)."""
    nonce = nonce if nonce is not None else random_bytes(NONCE_BYTES)
    cipher = key if isinstance(key, AESGCM) else AESGCM(key)
    return nonce + cipher.encrypt(nonce, plaintext, ad)


def open_sealed(key: bytes | AESGCM, sealed: bytes, ad: bytes, what: str) -> bytes:
    """Reverse ``seal``; any change to the bytes, the key or ``ad`` raises ``DecryptionFailed``."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed(what=what)
    cipher = key if isinstance(key, AESGCM) else AESGCM(key)
    try:
        return cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], ad)
    except InvalidTag:
        raise DecryptionFailed(what=what) from None


def frame(*parts: bytes | str | int) -> bytes:
    """Unambiguous associated data: each part prefixed by its 4-byte length.

    Strings are UTF-8, integers are 8-byte big-endian; framing means no two
    different lists of parts can produce the same bytes.
    """
    out: list[bytes] = []
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        elif isinstance(part, int):
            part = part.to_bytes(8, "big")
        out.append(len(part).to_bytes(4, "big"))
        out.append(part)
    return b"".join(out)


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
