"""Archiving: old events move out of the table into sealed segment files.

History is never deleted: an archived event still verifies, proves and
exports, from its segment. In order, and stopping with nothing removed at the
first problem:

1. choose [first live seq, end): events older than the cut-off date, no
   further than the newest checkpoint rounded down to a multiple of
   ``2**STRIDE`` (so the stored tree nodes cover the archived range whole),
   at most ``max_events`` per segment;
2. re-verify the range against the signed checkpoint that covers it (chain,
   hashes and the Merkle root at that checkpoint's size);
3. write the segment file (signed, fsynced, renamed into place), read it back
   and check it;
4. in one transaction, insert the segment's signed stub and delete exactly
   those events; the database triggers refuse to delete any event no stub
   covers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, insert, select
from sqlalchemy.orm import Session

from audit.chain import GENESIS, leaf_hash, link_hash
from audit.config import AuditConfig
from audit.errors import ArchiveError
from audit.guard import sealed_removal
from audit.locks import archive_lock
from audit.merkle import STRIDE, Tree
from audit.models import AuditEvent, Checkpoint, Segment
from audit.segments import SegmentReader, SegmentSeal, event_line, file_name, write_segment
from audit.signing import provider_for, trusted_keys
from audit.statements import SignedCheckpoint
from audit.store import DbSource, live_batches, row_canonical

MAX_SEGMENT_EVENTS = 1_000_000
_BLOCK = 1 << STRIDE


@dataclass(frozen=True)
class Archived:
    first: int
    end: int
    path: str


def archive_before(session: Session, settings: Any, before: datetime, *,
                   max_events: int = MAX_SEGMENT_EVENTS) -> list[Archived]:
    """Seal events older than ``before`` into segments; return what was archived."""
    config = AuditConfig.from_settings(settings)
    if max_events < _BLOCK:
        raise ArchiveError(detail=f"a segment must hold at least {_BLOCK} events")
    config.archive_dir.mkdir(parents=True, exist_ok=True)
    done: list[Archived] = []
    with archive_lock(config, exclusive=True):
        while True:
            span = _next_span(session, before, max_events)
            if span is None:
                return done
            done.append(_seal(session, config, *span))


def _next_span(session: Session, before: datetime, max_events: int,
               ) -> tuple[int, int, SignedCheckpoint, bytes] | None:
    """(first, end, covering checkpoint, hash before first) of the next segment, if any."""
    first = session.scalar(select(func.min(AuditEvent.seq)))
    newest = session.scalar(select(func.max(Checkpoint.tree_size)))
    if first is None or newest is None:
        session.rollback()
        return None
    younger = session.scalar(select(func.min(AuditEvent.seq)).where(AuditEvent.ts >= before))
    end = min(newest, first + max_events, younger if younger is not None else newest)
    end -= end % _BLOCK  # whole blocks of stored tree nodes: live proofs never open a segment
    if end <= first:
        session.rollback()
        return None
    covering = session.scalars(select(Checkpoint).where(Checkpoint.tree_size >= end)
                               .order_by(Checkpoint.tree_size).limit(1)).one()
    prev = GENESIS
    if first > 0:
        stub = session.scalar(select(Segment).where(Segment.end_seq == first))
        if stub is None:
            session.rollback()
            raise ArchiveError(detail=f"events before {first} are neither live nor archived; "
                               "run `appliance audit verify`")
        prev = stub.head_hash
    session.rollback()
    return first, end, SignedCheckpoint.from_row(covering), prev


def _seal(session: Session, config: AuditConfig, first: int, end: int,
          checkpoint: SignedCheckpoint, prev: bytes) -> Archived:
    keys = trusted_keys(config)
    if not checkpoint.verify(keys):
        raise ArchiveError(detail=f"the checkpoint at size {checkpoint.size} is not validly "
                           "signed; run `appliance audit verify`")
    lines, head_hash = _verified_lines(session, config, first, end, checkpoint, prev)
    signer = provider_for(config).signer()
    seal = SegmentSeal(first, end, prev, head_hash, hashlib.sha256(b"".join(lines)).digest(),
                       checkpoint.size, datetime.now(UTC), signer.key_id).signed(signer)
    path = config.archive_dir / file_name(first, end)
    digest = write_segment(path, seal, checkpoint, lines)
    _read_back(path, seal, keys)
    with sealed_removal(session):
        session.execute(insert(Segment), [{
            "first_seq": first, "end_seq": end, "prev_hash": prev, "head_hash": head_hash,
            "events_sha256": seal.events_sha256, "file_name": path.name, "file_sha256": digest,
            "checkpoint_size": checkpoint.size, "created": seal.created, "key_id": seal.key_id,
            "signature": seal.signature}])
        removed = cast(CursorResult[Any], session.execute(delete(AuditEvent).where(
            AuditEvent.seq >= first, AuditEvent.seq < end))).rowcount
        if removed != end - first:
            session.rollback()
            raise ArchiveError(detail=f"expected to remove {end - first} events, found {removed}")
        session.commit()
    return Archived(first, end, str(path))


def _verified_lines(session: Session, config: AuditConfig, first: int, end: int,
                    checkpoint: SignedCheckpoint, prev: bytes) -> tuple[list[bytes], bytes]:
    """Segment lines for [first, end), after checking events up to the checkpoint."""
    frontier = Tree(DbSource(session, config)).frontier(first)
    session.rollback()
    lines: list[bytes] = []
    expected, head_hash = first, prev
    for rows in live_batches(session, first, checkpoint.size):
        for row in rows:
            canonical = row_canonical(row)
            leaf = leaf_hash(canonical)
            if row.seq != expected or row.prev_hash != prev or link_hash(prev, leaf) != row.hash:
                raise ArchiveError(detail=f"event {expected} does not verify; run "
                                   "`appliance audit verify`")
            frontier.append(leaf)
            if row.seq < end:
                lines.append(event_line(row.seq, canonical, row.prev_hash, row.hash))
                head_hash = row.hash
            prev, expected = row.hash, expected + 1
    if expected != checkpoint.size or frontier.root() != checkpoint.root \
            or prev != checkpoint.head:
        raise ArchiveError(detail=f"events {first}..{checkpoint.size - 1} do not match the "
                           f"checkpoint at size {checkpoint.size}; run `appliance audit verify`")
    return lines, head_hash


def _read_back(path: Any, seal: SegmentSeal, keys: dict[str, Any]) -> None:
    with SegmentReader(path) as reader:
        count = sum(1 for _ in reader.events())
        ok = (reader.seal == seal and seal.verify(keys) and count == seal.end - seal.first
              and reader.events_digest == seal.events_sha256)
    if not ok:
        raise ArchiveError(detail=f"{path} did not read back as written; check the disk")

