"""The sealed segment file: archived events, signed, zstd-compressed.

Uncompressed, a segment is one header line and one line per event::

    {"checkpoint": {...}, "created": "...Z", "end": 4096, "events_sha256": hex,
     "first": 0, "format": "citadel.audit.segment/v1", "head_hash": hex, "key": id,
     "prev_hash": hex, "sig": b64, "checkpoint_size": 5000, "v": 1}
    <seq> TAB <canonical event JSON> TAB <prev_hash hex> TAB <hash hex>
    ...

``events_sha256`` is SHA-256 over every byte after the header line. The
signature input is ``b"citadel.audit.segment.v1\\n"`` followed by the canonical
JSON of the header without ``sig``, ``format`` and ``checkpoint`` (the embedded
checkpoint, which covers the whole segment, carries its own signature). The
database keeps the same signed fields as the segment's stub.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import zstandard

from audit.chain import canonical_json, format_ts, parse_ts
from audit.signing import AuditSigner, verify_signature
from audit.statements import (
    SEGMENT_TAG,
    SignedCheckpoint,
    as_utc,
    b64d,
    b64e,
    signed_message,
)

FORMAT = "citadel.audit.segment/v1"
SUFFIX = ".jsonl.zst"


@dataclass(frozen=True)
class SegmentSeal:
    """The signed description of a segment, as in the file header and the database stub."""

    first: int
    end: int
    prev_hash: bytes
    head_hash: bytes
    events_sha256: bytes
    checkpoint_size: int
    created: datetime
    key_id: str
    signature: bytes = b""

    def body(self) -> dict[str, Any]:
        return {"checkpoint_size": self.checkpoint_size, "created": format_ts(self.created),
                "end": self.end, "events_sha256": self.events_sha256.hex(), "first": self.first,
                "head_hash": self.head_hash.hex(), "key": self.key_id,
                "prev_hash": self.prev_hash.hex(), "v": 1}

    def message(self) -> bytes:
        return signed_message(SEGMENT_TAG, self.body())

    def signed(self, signer: AuditSigner) -> SegmentSeal:
        unsigned = SegmentSeal(**{**self.__dict__, "key_id": signer.key_id, "signature": b""})
        return SegmentSeal(**{**unsigned.__dict__, "signature": signer.sign(unsigned.message())})

    def verify(self, keys: dict[str, Any]) -> bool:
        key = keys.get(self.key_id)
        return key is not None and verify_signature(key, self.signature, self.message())

    @classmethod
    def from_row(cls, row: Any) -> SegmentSeal:
        return cls(row.first_seq, row.end_seq, row.prev_hash, row.head_hash, row.events_sha256,
                   row.checkpoint_size, as_utc(row.created), row.key_id, row.signature)

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> SegmentSeal:
        try:
            return cls(int(header["first"]), int(header["end"]), bytes.fromhex(header["prev_hash"]),
                       bytes.fromhex(header["head_hash"]), bytes.fromhex(header["events_sha256"]),
                       int(header["checkpoint_size"]), parse_ts(header["created"]),
                       str(header["key"]), b64d(header["sig"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a segment header: {exc!r}") from None


def file_name(first: int, end: int) -> str:
    return f"segment-{first:015d}-{end:015d}{SUFFIX}"


def event_line(seq: int, canonical: bytes, prev_hash: bytes, entry: bytes) -> bytes:
    return b"%d\t%s\t%s\t%s\n" % (seq, canonical, prev_hash.hex().encode(), entry.hex().encode())


def write_segment(path: Path, seal: SegmentSeal, checkpoint: SignedCheckpoint,
                  lines: list[bytes]) -> bytes:
    """Write the file atomically (temp file, fsync, rename); return its SHA-256."""
    header = {**seal.body(), "checkpoint": checkpoint.to_json(), "format": FORMAT,
              "sig": b64e(seal.signature)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    with tmp.open("wb") as raw:
        with zstandard.ZstdCompressor(level=9).stream_writer(raw, closefd=False) as out:
            out.write(canonical_json(header).encode() + b"\n")
            for line in lines:
                out.write(line)
        raw.flush()
        os.fsync(raw.fileno())
    with tmp.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return digest.digest()


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


class SegmentReader:
    """Streams a segment file: ``header`` first, then ``events()``; ``events_digest`` after."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] = path.open("rb")
        reader = zstandard.ZstdDecompressor().stream_reader(self._file)
        self._stream = io.BufferedReader(reader, buffer_size=1 << 20)  # type: ignore[arg-type]
        try:
            self.header: dict[str, Any] = json.loads(self._stream.readline())
            self.seal = SegmentSeal.from_header(self.header)
            self.checkpoint = SignedCheckpoint.from_json(self.header["checkpoint"])
        except (ValueError, KeyError, TypeError, zstandard.ZstdError) as exc:
            self.close()
            raise ValueError(f"{path.name} has no readable header ({exc})") from None
        self._digest = hashlib.sha256()

    def events(self) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        """(seq, canonical, prev_hash, hash) per event; ValueError on a malformed line."""
        update = self._digest.update
        try:
            for line in self._stream:
                update(line)
                parts = line.rstrip(b"\n").split(b"\t")
                if len(parts) != 4:
                    raise ValueError(f"{self.path.name}: malformed event line")
                yield int(parts[0]), parts[1], bytes.fromhex(parts[2].decode()), \
                    bytes.fromhex(parts[3].decode())
        except zstandard.ZstdError as exc:
            raise ValueError(f"{self.path.name} is damaged ({exc})") from None

    @property
    def events_digest(self) -> bytes:
        return self._digest.digest()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SegmentReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
