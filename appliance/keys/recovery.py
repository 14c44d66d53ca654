"""The printed recovery key: 256 random bits a person can type back.

Format: 32 random bytes followed by a 3-byte checksum (the first bytes of
SHA-256 over a label and the key), encoded in RFC 4648 base32 (56 letters and
digits 2-7, no padding) and grouped in fours with dashes. Case, spaces and
dashes are ignored when typed; 0, 1 and 8 are read as O, I and B since the
alphabet has none of them. The checksum catches typos before any key is tried.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from appliance.keys.errors import BadRecoveryKey
from appliance.keys.primitives import KEY_BYTES, equal, random_bytes

CHECKSUM_BYTES = 3
GROUP = 4
ENCODED_LENGTH = (KEY_BYTES + CHECKSUM_BYTES) * 8 // 5  # 56
_LOOKALIKES = str.maketrans({"0": "O", "1": "I", "8": "B"})


def _checksum(key: bytes) -> bytes:
    return hashlib.sha256(b"citadel recovery key\x00" + key).digest()[:CHECKSUM_BYTES]


def new_recovery_key() -> tuple[bytes, str]:
    """A fresh recovery key: the raw 32 bytes and the text to print."""
    key = random_bytes(KEY_BYTES)
    return key, format_recovery_key(key)


def format_recovery_key(key: bytes) -> str:
    text = base64.b32encode(key + _checksum(key)).decode("ascii")
    return "-".join(text[i:i + GROUP] for i in range(0, len(text), GROUP))


def parse_recovery_key(text: str) -> bytes:
    """The 32-byte key from typed text; ``BadRecoveryKey`` if it is malformed or mistyped."""
    compact = re.sub(r"[\s-]", "", text).upper().translate(_LOOKALIKES)
    if len(compact) != ENCODED_LENGTH:
        raise BadRecoveryKey(detail=f"it has {len(compact)} characters, not {ENCODED_LENGTH}")
    try:
        raw = base64.b32decode(compact)
    except (binascii.Error, ValueError):
        raise BadRecoveryKey(detail="it contains characters that are not A-Z or 2-7") from None
    key, checksum = raw[:KEY_BYTES], raw[KEY_BYTES:]
    if not equal(checksum, _checksum(key)):
        raise BadRecoveryKey(detail="its checksum does not match")
    return key
