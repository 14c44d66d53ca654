"""The signed statements of the audit log and their exact bytes.

A checkpoint says "after ``size`` events the Merkle root is ``root`` and the
chain head is ``head``". Its signature input is

    b"citadel.audit.checkpoint.v1\\n" || canonical JSON of
    {"head": hex, "key": key id, "root": hex, "size": n, "ts": "...Z", "v": 1}

and its JSON form (database export, anchor line, evidence bundle) is that
object plus ``"sig"``: the base64 Ed25519 signature.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.chain import canonical_json, format_ts, parse_ts
from audit.signing import AuditSigner, verify_signature

CHECKPOINT_TAG = b"citadel.audit.checkpoint.v1\n"
SEGMENT_TAG = b"citadel.audit.segment.v1\n"
BUNDLE_TAG = b"citadel.audit.bundle.v1\n"


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64d(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def as_utc(ts: datetime) -> datetime:
    """Aware UTC (SQLite hands back naive datetimes, which are UTC here)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def signed_message(tag: bytes, body: dict[str, Any]) -> bytes:
    return tag + canonical_json(body).encode()


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as signed; the same whether read from the database or the anchor."""

    size: int
    root: bytes
    head: bytes
    ts: datetime
    key_id: str
    signature: bytes

    def body(self) -> dict[str, Any]:
        return {"head": self.head.hex(), "key": self.key_id, "root": self.root.hex(),
                "size": self.size, "ts": format_ts(self.ts), "v": 1}

    def message(self) -> bytes:
        return signed_message(CHECKPOINT_TAG, self.body())

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "sig": b64e(self.signature)}

    def line(self) -> str:
        """The anchor and syslog form: one canonical JSON line."""
        return canonical_json(self.to_json())

    def verify(self, keys: dict[str, Ed25519PublicKey]) -> bool:
        key = keys.get(self.key_id)
        return key is not None and verify_signature(key, self.signature, self.message())

    @classmethod
    def sign(cls, signer: AuditSigner, size: int, root: bytes, head: bytes,
             ts: datetime) -> SignedCheckpoint:
        unsigned = cls(size, root, head, ts, signer.key_id, b"")
        return cls(size, root, head, ts, signer.key_id, signer.sign(unsigned.message()))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignedCheckpoint:
        """Parse the JSON form; ValueError if any field is missing or malformed."""
        try:
            if data["v"] != 1:
                raise ValueError(f"unknown checkpoint version {data['v']!r}")
            size = data["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError("size must be a whole number")
            root, head = bytes.fromhex(data["root"]), bytes.fromhex(data["head"])
            if len(root) != 32 or len(head) != 32:
                raise ValueError("root and head must be 32-byte hashes")
            return cls(size, root, head, parse_ts(data["ts"]), str(data["key"]),
                       b64d(data["sig"]))
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"not a checkpoint: {exc!r}") from None

    @classmethod
    def from_row(cls, row: Any) -> SignedCheckpoint:
        return cls(row.tree_size, row.root_hash, row.head_hash, as_utc(row.ts), row.key_id,
                   row.signature)
