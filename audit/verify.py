"""Verification: replay the whole log and say exactly where it was tampered with.

In one pass over archived segments and then live events, in seq order:

* each event's seq follows the previous one (a gap: events were deleted);
* its stored hash equals SHA-256(tag || stored prev_hash || leaf(canonical));
* its prev_hash equals the previous event's hash;
* its leaf extends the Merkle tree; at each checkpoint's size the tree root
  and chain head must equal the signed ones; stored tree nodes must match.

Before the pass every checkpoint's signature is checked against the trusted
public keys, and the anchor file is compared with the checkpoint table: each
checkpoint must be in the anchor, and anchor lines the table lacks are checked
against the events like any checkpoint, which is how a truncated or rewritten
database is caught after its checkpoints were deleted too. After the pass, a
signed size larger than the log means the log was truncated.

When an event fails, a diagnosis tells modified, inserted, reordered and
deleted-and-renumbered apart by finding where the event's content really
belongs (the seq its own hash was made with).
"""

from __future__ import annotations

import gc
import hashlib
import time
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any, NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from audit.anchor import read_anchor
from audit.chain import CHAIN_TAG, GENESIS, TEMPLATE, format_ts
from audit.config import AuditConfig
from audit.errors import AuditUnavailable
from audit.guard import missing_triggers
from audit.merkle import STRIDE, Frontier, Tree
from audit.models import AuditEvent, Segment, TreeNode
from audit.segments import SegmentReader, SegmentSeal, file_sha256
from audit.signing import trusted_keys
from audit.statements import SignedCheckpoint
from audit.store import (
    BATCH,
    TS_SQLITE_TEXT,
    DbSource,
    checkpoints,
    fast_batches,
    live_rows,
    row_canonical,
    segment_path,
    segments,
)

MODIFIED = "modified"
DELETED = "deleted"
INSERTED = "inserted"
REORDERED = "reordered"
TRUNCATED = "truncated"
BAD_SIGNATURE = "bad checkpoint signature"
ANCHOR_MISMATCH = "anchor mismatch"
BAD_SEGMENT = "bad segment"
KINDS = (MODIFIED, DELETED, INSERTED, REORDERED, TRUNCATED, BAD_SIGNATURE, ANCHOR_MISMATCH,
         BAD_SEGMENT)

WINDOW = 1000  #: how far from a failing event the diagnosis looks for where it belongs
_sha256 = hashlib.sha256


@dataclass(frozen=True)
class Finding:
    """One piece of tampering: its kind, the first bad seq, and what exactly is wrong."""

    kind: str
    seq: int | None
    detail: str
    checkpoint: int | None = None

    @property
    def position(self) -> int:
        return self.seq if self.seq is not None else (self.checkpoint or 0)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "checkpoint": self.checkpoint,
                "detail": self.detail}


@dataclass
class Report:
    start: int = 0
    end: int = 0  #: one past the last event checked
    archived_events: int = 0
    segments: int = 0
    checkpoints: int = 0
    anchor_lines: int = 0
    latest: SignedCheckpoint | None = None
    key_ids: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return min(self.findings, key=lambda f: f.position) if self.findings else None

    @property
    def events(self) -> int:
        return self.end - self.start

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        first = self.first
        return {
            "ok": self.ok,
            "first": first.to_json() if first else None,
            "findings": [f.to_json() for f in sorted(self.findings, key=lambda f: f.position)],
            "warnings": self.warnings,
            "from": self.start, "events": self.events, "archived_events": self.archived_events,
            "segments": self.segments, "checkpoints": self.checkpoints,
            "anchor_lines": self.anchor_lines,
            "latest_checkpoint": self.latest.to_json() if self.latest else None,
            "trusted_keys": self.key_ids,
            "seconds": round(self.seconds, 3), "events_per_second": round(self.rate),
        }


def _span(first: int, last: int) -> str:
    return f"event {first}" if first == last else f"events {first}..{last}"


class _Stop(Exception):
    """Ends the pass at the first tampered event (later ones would only echo it)."""


def verify(session: Session, settings: Any, *, start: int = 0,
           extra_keys: dict[str, Ed25519PublicKey] | None = None, with_anchor: bool = True) -> Report:
    """Verify the log from ``start`` (default: everything). Raises ``AuditUnavailable``
    when it cannot run at all (no database, no public key).

    ``with_anchor=False`` leaves the anchor file out: for a restored copy of the
    database, whose anchor was copied at another moment (a backup drill).
    """
    config = AuditConfig.from_settings(settings)
    try:
        return _Verifier(session, config, start, extra_keys or {}, with_anchor).run()
    except SQLAlchemyError as exc:
        raise AuditUnavailable(detail=f"the database cannot be read ({exc.__class__.__name__}: "
                               f"{str(exc).splitlines()[0]}); check database_url and that "
                               "the appliance is migrated") from None


class _Verifier:
    """One verification pass; ``run`` returns its report."""

    def __init__(self, session: Session, config: AuditConfig, start: int,
                 extra_keys: dict[str, Ed25519PublicKey], with_anchor: bool = True) -> None:
        self.session = session
        self.config = config
        self.with_anchor = with_anchor
        self.report = Report(start=start, end=start)
        self.keys = {**trusted_keys(config), **extra_keys}
        self.targets: dict[int, list[tuple[SignedCheckpoint, str]]] = {}
        self.sizes: list[int] = []
        self.next_target = -1
        self.target_index = 0  #: position of next_target in sizes
        self.nodes_covered = 0  #: stored tree nodes exist below the newest stored checkpoint
        self.nodes_missing = 0
        self.last_good_size = start
        self.expected = start
        self.prev = GENESIS
        self.frontier = Frontier()
        self.emitted: list[tuple[int, int, bytes]] = []

    # -- the pass ---------------------------------------------------------------

    def run(self) -> Report:
        began = time.perf_counter()
        report = self.report
        report.key_ids = sorted(self.keys)
        self._check_statements()
        self._check_triggers()
        self._position_at_start()
        try:
            self._archived()
            self._live()
            self._check_truncation()
        except _Stop:
            pass
        report.seconds = time.perf_counter() - began
        self._warn_uncovered()
        if self.nodes_missing:
            report.warnings.append(f"{self.nodes_missing} tree nodes are not stored (proofs over "
                                   "those events are slower)")
        return report

    def _add(self, kind: str, seq: int | None, detail: str, checkpoint: int | None = None) -> None:
        self.report.findings.append(Finding(kind, seq, detail, checkpoint))

    def _stop(self, kind: str, seq: int | None, detail: str, checkpoint: int | None = None) -> NoReturn:
        self._add(kind, seq, detail, checkpoint)
        raise _Stop

    # -- checkpoints and the anchor --------------------------------------------

    def _check_statements(self) -> None:
        stored = checkpoints(self.session)
        anchor = read_anchor(self.config.anchor_path)
        self.session.rollback()
        report = self.report
        report.checkpoints = len(stored)
        self.nodes_covered = stored[-1].size if stored else 0
        report.anchor_lines = len(anchor.checkpoints)
        if (stored or anchor.checkpoints) and not self.keys:
            raise AuditUnavailable(detail=f"no trusted public key in {self.config.directory}: "
                                   "restore audit/signing.pub or pass --key FILE")
        valid: list[tuple[SignedCheckpoint, str]] = []
        for cp in stored:
            if cp.verify(self.keys):
                valid.append((cp, "database"))
                continue
            why = ("is signed by an untrusted key " + cp.key_id if cp.key_id not in self.keys
                   else "has a signature that does not match its contents")
            self._add(BAD_SIGNATURE, None, f"the checkpoint at size {cp.size} {why}", cp.size)
        if self.with_anchor:
            self._check_anchor(stored, anchor, valid)
        else:
            report.warnings.append("the anchor file was not compared")
        for cp, source in valid:
            self.targets.setdefault(cp.size, []).append((cp, source))
        self.sizes = sorted(size for size in self.targets if size > self.report.start)
        self.next_target = self.sizes[0] if self.sizes else -1
        newest = [cp for cp, _ in valid]
        report.latest = max(newest, key=lambda cp: (cp.size, cp.ts)) if newest else None

    def _check_anchor(self, stored: list[SignedCheckpoint], anchor: Any,
                      valid: list[tuple[SignedCheckpoint, str]]) -> None:
        path = self.config.anchor_path
        if not anchor.exists:
            if stored:
                self._add(ANCHOR_MISMATCH, None, f"the anchor file {path} is missing although "
                          f"{len(stored)} checkpoints were made", stored[0].size)
            return
        for number, reason in anchor.unreadable:
            self.report.warnings.append(f"anchor line {number} is not a checkpoint ({reason})")
        lines = {cp.line() for _n, cp in anchor.checkpoints}
        in_db = {cp.line() for cp in stored}
        last_stored = max((i for i, (_n, cp) in enumerate(anchor.checkpoints)
                           if cp.line() in in_db), default=-1)
        previous = 0
        for position, (number, cp) in enumerate(anchor.checkpoints):
            if not cp.verify(self.keys):
                self._add(ANCHOR_MISMATCH, None, f"anchor line {number} (size {cp.size}) is not "
                          "signed by a trusted key: the anchor file was edited", cp.size)
                continue
            if cp.size < previous:
                self._add(ANCHOR_MISMATCH, None, f"anchor line {number} (size {cp.size}) comes "
                          f"after size {previous}: the anchor file was reordered", cp.size)
            previous = max(previous, cp.size)
            if cp.line() in in_db:
                continue
            if position < last_stored:  # only a crash's last line may be missing from the table
                self._add(ANCHOR_MISMATCH, None, f"the checkpoint at size {cp.size} (anchor line "
                          f"{number}) was removed from the database", cp.size)
            valid.append((cp, f"anchor line {number}"))
        for cp in stored:
            if cp.line() not in lines:
                self._add(ANCHOR_MISMATCH, None, f"the checkpoint at size {cp.size} is not in the "
                          "anchor file: the anchor was truncated or replaced, or the checkpoint "
                          "was forged", cp.size)

    def _check_triggers(self) -> None:
        missing = missing_triggers(self.session.connection())
        self.session.rollback()
        if missing:
            self.report.warnings.append("append-only triggers are missing or disabled: "
                                        + ", ".join(sorted(missing)))

    def _warn_uncovered(self) -> None:
        report = self.report
        covered = report.latest.size if report.latest else 0
        if report.ok and report.end > covered:
            report.warnings.append(f"{_span(covered, report.end - 1)} not covered by a signed "
                                   "checkpoint yet (`appliance audit checkpoint`)")

    def _at_checkpoint(self, size: int) -> None:
        """Compare the tree and chain at ``size`` with every statement signed for it."""
        root = self.frontier.root()
        for cp, source in self.targets[size]:
            if cp.root != root or cp.head != self.prev:
                self._stop(MODIFIED, self.last_good_size,
                           f"events {self.last_good_size}..{size - 1} no longer match the "
                           f"checkpoint signed at {format_ts(cp.ts)} for size {size} ({source}): "
                           "history in that range was rewritten", size)
        self.last_good_size = size
        self.target_index += 1
        self.next_target = (self.sizes[self.target_index]
                            if self.target_index < len(self.sizes) else -1)

    def _check_truncation(self) -> None:
        beyond = [size for size in self.sizes if size > self.expected]
        if beyond:
            size = max(beyond)
            cp, source = self.targets[size][0]
            self._add(TRUNCATED, self.expected,
                      f"the log ends after {self.expected} events but the checkpoint signed at "
                      f"{format_ts(cp.ts)} ({source}) covers {size}", size)

    # -- where the pass starts ---------------------------------------------------

    def _position_at_start(self) -> None:
        start = self.report.start
        nodes = self.emitted
        if start == 0:
            self.frontier = Frontier(on_node=lambda lv, ix, h: nodes.append((lv, ix, h)))
            return
        source = DbSource(self.session, self.config)
        try:
            self.prev = self._hash_before(start)
            self.frontier = Tree(source).frontier(
                start, on_node=lambda lv, ix, h: nodes.append((lv, ix, h)))
        except (LookupError, OSError, ValueError) as exc:
            raise AuditUnavailable(detail=f"cannot start at {start} ({exc}); verify from 0",
                                   ) from None
        finally:
            self.session.rollback()

    def _hash_before(self, start: int) -> bytes:
        rows = live_rows(self.session, start - 1, start - 1)
        if rows:
            return rows[0].hash
        stub = self.session.scalar(select(Segment).where(Segment.end_seq == start))
        if stub is not None:
            return stub.head_hash
        for stub in segments(self.session):
            if stub.first_seq < start < stub.end_seq:
                with SegmentReader(segment_path(self.config, stub)) as reader:
                    for seq, _c, _p, entry in reader.events():
                        if seq == start - 1:
                            return entry
        raise LookupError(f"event {start - 1} is not in the log")

    # -- archived segments -----------------------------------------------------

    def _archived(self) -> None:
        stubs = segments(self.session)
        self.session.rollback()
        self.report.segments = len(stubs)
        for stub in stubs:
            if stub.end_seq <= self.expected:
                continue
            if stub.first_seq > self.expected:
                self._stop(DELETED, self.expected, f"events {self.expected}..{stub.first_seq - 1}"
                           " are neither in the log nor in an archive segment")
            self._segment(stub)

    def _segment(self, stub: Segment) -> None:
        seal = SegmentSeal.from_row(stub)
        first = stub.first_seq
        if not seal.verify(self.keys):
            self._stop(BAD_SEGMENT, first, f"the archive stub for events {first}.."
                       f"{stub.end_seq - 1} is not signed by a trusted key: it was edited")
        path = segment_path(self.config, stub)
        if not path.exists():
            self._stop(DELETED, first, f"archive segment {path} is missing: events {first}.."
                       f"{stub.end_seq - 1} are gone")
        if file_sha256(path) != stub.file_sha256:
            self._stop(BAD_SEGMENT, first, f"archive segment {path.name} was changed since it was "
                       "sealed (its SHA-256 differs from the stub's)")
        try:
            with SegmentReader(path) as reader:
                if reader.seal != seal:
                    self._stop(BAD_SEGMENT, first, f"{path.name} does not describe the same "
                               "events as its stub")
                self._segment_events(reader, path.name)
                if reader.events_digest != seal.events_sha256:
                    self._stop(BAD_SEGMENT, first, f"{path.name}: its events differ from the sealed"
                               " ones")
        except ValueError as exc:
            self._stop(BAD_SEGMENT, first, f"{path.name} cannot be read: {exc}")
        if self.expected != stub.end_seq:
            self._stop(DELETED, self.expected, f"{path.name} ends at {self.expected}, its stub "
                       f"at {stub.end_seq}")
        self.report.archived_events += stub.end_seq - max(first, self.report.start)

    def _segment_events(self, reader: SegmentReader, name: str) -> None:
        for seq, canonical, prev_hash, entry in reader.events():
            if seq < self.expected:
                continue
            if seq != self.expected:
                self._stop(DELETED, self.expected, f"{name} lacks events {self.expected}.."
                           f"{seq - 1}")
            leaf = _sha256(b"\x00" + canonical).digest()
            if _sha256(CHAIN_TAG + prev_hash + leaf).digest() != entry:
                self._stop(MODIFIED, seq, f"archived event {seq} in {name} does not match its "
                           "hash")
            if prev_hash != self.prev:
                self._stop(MODIFIED, seq, f"archived event {seq} in {name} does not link to "
                           f"event {seq - 1}")
            self._accept(leaf, entry)
        self._check_nodes()

    def _accept(self, leaf: bytes, entry: bytes) -> None:
        self.frontier.append(leaf)
        self.prev = entry
        self.expected += 1
        self.report.end = self.expected
        if self.expected == self.next_target:
            self._at_checkpoint(self.expected)

    # -- live events -----------------------------------------------------------

    def _live(self) -> None:
        first = self.session.scalar(select(func.min(AuditEvent.seq)))
        self.session.rollback()
        if first is not None and first < self.expected and self.report.segments:
            stray = self.session.scalar(select(func.count()).select_from(AuditEvent)
                                        .where(AuditEvent.seq < self.expected))
            self.session.rollback()
            if stray:
                self._stop(INSERTED, first, f"{stray} events sit in the table inside the archived "
                           f"range, from {first}: they were inserted after archiving")
        gc_was_on = gc.isenabled()
        gc.disable()  # the batches make no reference cycles; collecting them is pure cost
        try:
            for ts_kind, rows in fast_batches(self.session, self.expected, batch=BATCH):
                self._live_batch(rows, ts_kind)
                self._check_nodes()
        except TypeError:
            self._stop(MODIFIED, self.expected, f"an event after {self.expected - 1} has a "
                       "non-numeric seq: it was edited directly in the database")
        finally:
            if gc_was_on:
                gc.enable()

    def _live_batch(self, rows: Any, ts_kind: int) -> None:
        """The hot loop: canonical bytes, chain link and tree, inlined for speed."""
        expected, prev = self.expected, self.prev
        stack, emit = self.frontier.stack, self.emitted.append
        target = self.next_target
        template, enc, sha, tag = TEMPLATE, encode_basestring, _sha256, CHAIN_TAG
        for row in rows:
            try:
                seq, ts, user, action, entity, entity_id, count, ip, meta, prev_hash, entry = row
                if ts_kind == TS_SQLITE_TEXT:
                    ts = ts[:10] + "T" + ts[11:] + "Z"
                else:  # an aware datetime in UTC: "YYYY-MM-DDTHH:MM:SS.ffffff+00:00"
                    ts = ts.isoformat(timespec="microseconds")[:26] + "Z"
                if seq != expected:
                    self._sync(expected, prev)
                    self._stop(DELETED, expected, f"{_span(expected, seq - 1)} deleted "
                               f"(the log jumps from {expected - 1} to {seq})")
                canonical = (template % (
                    enc(action), count, "null" if entity is None else enc(entity),
                    "null" if entity_id is None else enc(entity_id),
                    "null" if ip is None else enc(ip), meta, seq, ts,
                    "null" if user is None else enc(user))).encode()
                leaf = sha(b"\x00" + canonical).digest()
                if sha(tag + prev_hash + leaf).digest() != entry:
                    self._sync(expected, prev)
                    self._diagnose(self._row(seq))
                if prev_hash != prev:
                    self._sync(expected, prev)
                    self._stop(MODIFIED, seq - 1, f"event {seq} does not link to event {seq - 1}: "
                               f"event {seq - 1} was replaced by a forged event (or event {seq} by "
                               "one linking elsewhere)")
                # Frontier.append, inlined: merge while the size's low bit is set.
                h, size, level = leaf, expected, 0
                while size & 1:
                    h = sha(b"\x01" + stack.pop() + h).digest()
                    level += 1
                    size >>= 1
                    if level % STRIDE == 0:
                        emit((level, expected >> level, h))
                stack.append(h)
                prev = entry
                expected += 1
                if expected == target:
                    self._sync(expected, prev)
                    self._at_checkpoint(expected)
                    target = self.next_target
            except (TypeError, ValueError, AttributeError):
                self._sync(expected, prev)
                self._stop(MODIFIED, expected, f"event {expected} holds values of impossible "
                           "types: it was edited directly in the database")
        self._sync(expected, prev)

    def _sync(self, expected: int, prev: bytes) -> None:
        self.expected = self.frontier.size = self.report.end = expected
        self.prev = prev

    # -- stored tree nodes -------------------------------------------------------

    def _check_nodes(self) -> None:
        """Stored nodes must equal the ones the events produce (missing ones are a warning)."""
        emitted, self.emitted[:] = list(self.emitted), []
        covered = self.nodes_covered
        by_level: dict[int, list[tuple[int, bytes]]] = {}
        for level, index, h in emitted:
            if (index + 1) << level <= covered:
                by_level.setdefault(level, []).append((index, h))
        for level, items in by_level.items():
            query = select(TreeNode.idx, TreeNode.hash).where(
                TreeNode.level == level, TreeNode.idx.between(items[0][0], items[-1][0]))
            stored = {row.idx: row.hash for row in self.session.execute(query)}
            self.session.rollback()
            for index, h in items:
                if index not in stored:
                    self.nodes_missing += 1
                elif stored[index] != h:
                    first, last = index << level, ((index + 1) << level) - 1
                    self._stop(MODIFIED, first, f"the stored tree node at level {level}, index "
                               f"{index} (events {first}..{last}) was changed; the events "
                               "themselves are intact")

    # -- diagnosis of a failing event ----------------------------------------------

    def _diagnose(self, row: Any) -> None:
        j = row.seq
        origin = self._origin(row)
        if origin is None:
            following = self._row(j + 1)
            if following is not None and self._origin(following) == j:
                self._stop(INSERTED, j, f"event {j} is not part of the log: it was inserted and "
                           "the later events were shifted")
            self._stop(MODIFIED, j, f"event {j} was changed: its stored hash does not match its "
                       "content and prev_hash")
        if origin == j:
            self._stop(MODIFIED, j, f"event {j} was rewritten in the database: a stored value is "
                       "spelled differently from what was hashed")
        other = self._row(origin)
        if other is not None and other.hash == row.hash:
            self._stop(INSERTED, j, f"event {j} is a copy of event {origin}, inserted")
        if origin < j:
            self._stop(INSERTED, origin, f"{_span(origin, j - 1)} inserted: event {j} holds the "
                       f"event that belonged at {origin}")
        if other is not None and self._origin(other) == j:
            self._stop(REORDERED, j, f"events {j} and {origin} were swapped")
        following = self._row(j + 1)
        if following is not None and self._origin(following) == origin + 1:
            self._stop(DELETED, j, f"{_span(j, origin - 1)} deleted and the later events "
                       "renumbered")
        self._stop(REORDERED, j, f"event {j} holds the event that belonged at {origin}")

    def _row(self, seq: int) -> Any:
        rows = live_rows(self.session, seq, seq)
        self.session.rollback()
        return rows[0] if rows else None

    def _origin(self, row: Any) -> int | None:
        """The seq this row's content was hashed at, if its hash is genuine anywhere nearby."""
        candidates = [0] if row.prev_hash == GENESIS else []
        for distance in range(1, WINDOW + 1):
            candidates += [row.seq - distance, row.seq + distance]
        found = self._genuine_at(row, candidates)
        if found is not None or row.prev_hash == GENESIS:
            return found
        # Farther away: the predecessor's current position, then once more around it.
        holder = self.session.scalar(select(AuditEvent.seq)
                                     .where(AuditEvent.hash == row.prev_hash).limit(1))
        self.session.rollback()
        return None if holder is None else self._genuine_at(row, [holder + 1, holder])

    @staticmethod
    def _genuine_at(row: Any, candidates: list[int]) -> int | None:
        for seq in candidates:
            if seq >= 0 and _sha256(CHAIN_TAG + row.prev_hash + _sha256(
                    b"\x00" + row_canonical(row, seq)).digest()).digest() == row.hash:
                return seq
        return None

