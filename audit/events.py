"""Events in their public shape, read across archived segments and the live table.

The public shape is DESIGN.md's event plus its position in the log::

    {"seq": 1841, "ts": "2026-03-02T09:14:03Z", "user": "alice", "action": "export",
     "entity": "account", "entity_id": null, "count": 412, "ip": "10.0.0.5",
     "meta": {"format": "csv"}}

``ts`` is given to the second, as in DESIGN.md; the exact microsecond value
is in the canonical bytes (evidence bundles carry both).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.chain import parse_ts
from audit.config import AuditConfig
from audit.locks import archive_lock
from audit.models import AuditEvent
from audit.segments import SegmentReader
from audit.statements import as_utc
from audit.store import BATCH, row_canonical, segment_path, segments


def public_ts(ts: datetime) -> str:
    return as_utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def public_event(row: Any) -> dict[str, Any]:
    """The public shape of a stored row (an ``AuditEvent`` or a selected row)."""
    return {"seq": row.seq, "ts": public_ts(row.ts), "user": row.user, "action": row.action,
            "entity": row.entity, "entity_id": row.entity_id, "count": row.count, "ip": row.ip,
            "meta": _meta(row.meta)}


def _meta(text: str) -> Any:
    """Stored meta, parsed; text edited into non-JSON is shown, not fatal (verify reports it)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return {"unreadable": str(text)}


def public_from_canonical(canonical: bytes | str) -> dict[str, Any]:
    """The public shape of an event from its canonical bytes (archived events, bundles)."""
    body = json.loads(canonical)
    return {"seq": body["seq"], "ts": public_ts(parse_ts(body["ts"])), "user": body["user"],
            "action": body["action"], "entity": body["entity"], "entity_id": body["entity_id"],
            "count": body["count"], "ip": body["ip"], "meta": body["meta"]}


@dataclass(frozen=True)
class StoredEvent:
    """One event wherever it lives, with what evidence needs."""

    seq: int
    canonical: bytes
    public: dict[str, Any]


@dataclass(frozen=True)
class EventFilter:
    since: datetime | None = None
    until: datetime | None = None
    user: str | None = None
    first_seq: int = 0

    def matches(self, event: dict[str, Any], ts: datetime) -> bool:
        return ((self.user is None or event["user"] == self.user)
                and (self.since is None or ts >= self.since)
                and (self.until is None or ts < self.until))


def iter_events(session: Session, settings: Any, selection: EventFilter = EventFilter(),
                ) -> Iterator[StoredEvent]:
    """Matching events in seq order: archived segments first, then the live table.

    Holds the archive lock (shared) throughout, so no events move between the
    two while they are read.
    """
    config = AuditConfig.from_settings(settings)
    with archive_lock(config, exclusive=False):
        yield from _all(session, config, selection)


def _all(session: Session, config: AuditConfig, selection: EventFilter,
         ) -> Iterator[StoredEvent]:
    stubs = segments(session)
    session.rollback()
    for stub in stubs:
        if stub.end_seq <= selection.first_seq:
            continue
        with SegmentReader(segment_path(config, stub)) as reader:
            for seq, canonical, _prev, _hash in reader.events():
                if seq < selection.first_seq:
                    continue
                event = public_from_canonical(canonical)
                if selection.matches(event, parse_ts(json.loads(canonical)["ts"])):
                    yield StoredEvent(seq, canonical, event)
    yield from _live(session, selection)


def _live(session: Session, selection: EventFilter) -> Iterator[StoredEvent]:
    position = selection.first_seq
    while True:
        stmt = select(AuditEvent).where(AuditEvent.seq >= position)
        if selection.user is not None:
            stmt = stmt.where(AuditEvent.user == selection.user)
        if selection.since is not None:
            stmt = stmt.where(AuditEvent.ts >= selection.since)
        if selection.until is not None:
            stmt = stmt.where(AuditEvent.ts < selection.until)
        rows = session.scalars(stmt.order_by(AuditEvent.seq).limit(BATCH)).all()
        session.rollback()
        if not rows:
            return
        for row in rows:
            yield StoredEvent(row.seq, row_canonical(row), public_event(row))
        position = rows[-1].seq + 1


def find_events(session: Session, settings: Any, seqs: list[int]) -> list[StoredEvent]:
    """The events at ``seqs`` (sorted, each once); LookupError names any that do not exist."""
    wanted = sorted(set(seqs))
    found = {}
    live = session.scalars(select(AuditEvent).where(AuditEvent.seq.in_(wanted))).all()
    for row in live:
        found[row.seq] = StoredEvent(row.seq, row_canonical(row), public_event(row))
    missing = [seq for seq in wanted if seq not in found]
    if missing:
        config = AuditConfig.from_settings(settings)
        for stub in segments(session):
            inside = {seq for seq in missing if stub.first_seq <= seq < stub.end_seq}
            if not inside:
                continue
            with SegmentReader(segment_path(config, stub)) as reader:
                for seq, canonical, _p, _h in reader.events():
                    if seq in inside:
                        found[seq] = StoredEvent(seq, canonical, public_from_canonical(canonical))
    session.rollback()
    absent = [seq for seq in wanted if seq not in found]
    if absent:
        raise LookupError(absent)
    return [found[seq] for seq in wanted]
