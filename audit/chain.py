"""Canonical bytes of an audit event and the hash chain over them.

An event's canonical form is the UTF-8 JSON of its public fields with sorted
keys and no insignificant whitespace; timestamps are ISO 8601 UTC with
microseconds and a ``Z``; ``meta`` is embedded as its own canonical JSON. Its
entry hash is

    SHA-256(b"citadel.audit.entry\\x00" || prev_hash || SHA-256(0x00 || canonical))

where the inner hash is the RFC 6962 leaf hash of the event, so the same leaf
feeds both the chain and the Merkle tree. The first event's ``prev_hash`` is 32
zero bytes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

GENESIS = bytes(32)
CHAIN_TAG = b"citadel.audit.entry\x00"
FIELDS = ("seq", "ts", "user", "action", "entity", "entity_id", "count", "ip", "meta")

_sha256 = hashlib.sha256
TEMPLATE = ('{"action":%s,"count":%d,"entity":%s,"entity_id":%s,"ip":%s,"meta":%s,'
             '"seq":%d,"ts":"%s","user":%s}')


def format_ts(ts: datetime) -> str:
    """``ts`` as the canonical text: UTC, microseconds, ``Z`` (naive means UTC)."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts.isoformat(timespec="microseconds") + "Z"


def parse_ts(text: str) -> datetime:
    """The aware UTC datetime of a canonical (or any ISO 8601) timestamp."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text, no NaN: one text per value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def json_text(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


def canonical_row(seq: int, ts: datetime, user: str | None, action: str, entity: str | None,
                  entity_id: str | None, count: int, ip: str | None, meta: str) -> bytes:
    """Canonical bytes straight from stored columns (``meta`` as stored, already canonical).

    The fast path used by append, verify and proofs; it yields exactly
    ``canonical_bytes`` of the same event whenever ``meta`` is stored in its
    canonical form, which ``record`` guarantees. A ``meta`` text edited into
    another spelling therefore changes the bytes, as it should.
    """
    return (TEMPLATE % (json_text(action), count, json_text(entity), json_text(entity_id),
                        json_text(ip), meta, seq, format_ts(ts), json_text(user))).encode()


def canonical_bytes(event: dict[str, Any]) -> bytes:
    """The bytes that are hashed: ``event`` holds FIELDS, ``meta`` as a JSON string or a dict."""
    body = {name: event[name] for name in FIELDS}
    body["ts"] = format_ts(event["ts"]) if isinstance(event["ts"], datetime) else event["ts"]
    body["meta"] = json.loads(event["meta"]) if isinstance(event["meta"], str) else event["meta"]
    return canonical_json(body).encode()


def leaf_hash(canonical: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || canonical)."""
    return _sha256(b"\x00" + canonical).digest()


def link_hash(prev_hash: bytes, leaf: bytes) -> bytes:
    """The chain step from the previous entry hash and this event's leaf hash."""
    return _sha256(CHAIN_TAG + prev_hash + leaf).digest()


def entry_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    return link_hash(prev_hash, leaf_hash(canonical))
