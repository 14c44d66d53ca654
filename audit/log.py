"""The one event path: ``record`` queues an event on the session; the events
are chained and written just before that session commits, in the same
transaction as the change they describe.

Appends are serialised so the chain never forks: PostgreSQL takes a
transaction-scoped advisory lock (``audit_lock_head``, which then reads the head
on a fresh snapshot); SQLite transactions already hold the write lock
(``BEGIN IMMEDIATE``, see ``appliance.kernel.db``). The lock is held only from the
moment the queued events are written, at commit, until the commit ends.

Sessions made with ``info=audit.session_info(settings)`` also sign a
checkpoint right after a commit that carries the log past a multiple of
``[audit] checkpoint_every``; the worker's ``maybe_checkpoint`` covers the
time limit and any process that cannot sign.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, event, select, text
from sqlalchemy.orm import Session, SessionTransaction

from appliance.kernel.db import begin_write
from audit.chain import GENESIS, canonical_json, canonical_row, entry_hash
from audit.config import AuditConfig
from audit.errors import InvalidEvent
from audit.models import AuditEvent, Segment

PENDING = "citadel.audit.pending"
SETTINGS = "citadel.audit.settings"
CHECKPOINT_DUE = "citadel.audit.checkpoint_due"
ADVISORY_LOCK = 0x43_49_54_41_44_45_4C  # "CITADEL"

#: The actions DESIGN.md names; any other action is kept as given.
KNOWN_ACTIONS = frozenset({
    "login", "login.failed", "logout", "record.view", "record.search", "record.create",
    "record.update", "record.delete", "record.reassign", "report.run", "export", "print",
    "copy", "api.read", "file.external", "user.notice", "card.removed",
})

#: Longest value each text column holds.
LIMITS = {"action": 32, "user": 64, "entity": 32, "entity_id": 64, "ip": 45}
INT32 = 2**31

log = logging.getLogger(__name__)


def record(
    session: Session,
    action: str,
    *,
    user: str | None,
    entity: str | None = None,
    entity_id: object | None = None,
    count: int = 0,
    ip: str | None = None,
    meta: dict[str, Any] | None = None,
    ts: datetime | None = None,
) -> dict[str, Any]:
    """Queue one audit event; it is written when ``session`` commits, or never.

    Raises ``InvalidEvent`` at once (not at commit) for a value the log cannot
    hold, so the caller's change fails with a clear reason.
    """
    entry = {
        "ts": (ts or datetime.now(UTC)).astimezone(UTC),
        "user": user,
        "action": action,
        "entity": entity,
        "entity_id": None if entity_id is None else str(entity_id),
        "count": count,
        "ip": ip,
        "meta": _meta_text(meta),
    }
    _validate(entry)
    if not session.in_transaction():
        session.begin()  # so that a rollback, even before any SQL, drops the event
    scope = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(PENDING, []).append((scope, entry))
    return entry


def _meta_text(meta: dict[str, Any] | None) -> str:
    if meta is not None and not isinstance(meta, dict):
        raise InvalidEvent(detail="meta must be a JSON object (a dict)")
    try:
        text = canonical_json(meta or {})
        text.encode()
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidEvent(detail=f"meta must be JSON without NaN or lone surrogates ({exc})",
                           ) from None
    return text


def _validate(entry: dict[str, Any]) -> None:
    if not isinstance(entry["action"], str) or not entry["action"]:
        raise InvalidEvent(detail="action must be a non-empty string")
    for name, limit in LIMITS.items():
        value = entry[name]
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidEvent(detail=f"{name} must be a string or None")
        if len(value) > limit or "\x00" in value:
            raise InvalidEvent(detail=f"{name} must be at most {limit} characters, without NUL")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidEvent(detail=f"{name} is not valid Unicode text") from None
    count = entry["count"]
    if not isinstance(count, int) or isinstance(count, bool) or not -INT32 <= count < INT32:
        raise InvalidEvent(detail="count must be a whole number of records")


def pending(session: Session) -> list[dict[str, Any]]:
    return [entry for _scope, entry in session.info.get(PENDING, ())]


def session_info(settings: Any) -> dict[str, Any]:
    """``info`` for a sessionmaker whose commits should trigger checkpoints by count."""
    return {SETTINGS: AuditConfig.from_settings(settings)}


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    queued = session.info.pop(PENDING, None)
    if not queued:
        return
    first, size = append(session, [entry for _scope, entry in queued])
    config = session.info.get(SETTINGS)
    if config is not None and first // config.checkpoint_every != size // config.checkpoint_every:
        session.info[CHECKPOINT_DUE] = True


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, rolled_back: SessionTransaction) -> None:
    """Forget events queued inside the transaction (or savepoint) that was rolled back."""
    queued = session.info.get(PENDING)
    if queued:
        session.info[PENDING] = [(s, e) for s, e in queued if not _within(s, rolled_back)]
    if rolled_back.parent is None:
        session.info.pop(CHECKPOINT_DUE, None)


def _within(scope: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while scope is not None:
        if scope is outer:
            return True
        scope = scope.parent
    return False


@event.listens_for(Session, "after_commit")
def _checkpoint_if_due(session: Session) -> None:
    if not session.info.pop(CHECKPOINT_DUE, False):
        return
    from audit.checkpoint import checkpoint_now

    try:
        with Session(bind=session.get_bind()) as own:
            checkpoint_now(own, session.info[SETTINGS])
    except Exception:  # the events are committed; the worker will checkpoint them later
        log.exception("audit checkpoint after commit failed; the worker will retry")


_EVENTS = cast(Table, AuditEvent.__table__)
_LOCK_AND_HEAD = text("SELECT head_seq, head_hash FROM audit_lock_head(:k)")
_HEAD = select(_EVENTS.c.seq, _EVENTS.c.hash).order_by(_EVENTS.c.seq.desc()).limit(1)
_HEAD_AFTER_ARCHIVE = (select(Segment.__table__.c.end_seq - 1, Segment.__table__.c.head_hash)
                       .order_by(Segment.__table__.c.end_seq.desc()).limit(1))


def append(session: Session, entries: list[dict[str, Any]]) -> tuple[int, int]:
    """Chain ``entries`` after the current head and insert them (caller commits).

    Returns (seq of the first new event, log size after them).
    """
    begin_write(session)
    conn = session.connection()  # Core on the session's transaction: the ORM adds only cost
    if conn.dialect.name == "postgresql":  # lock, then read the head: one round trip
        head = conn.execute(_LOCK_AND_HEAD, {"k": ADVISORY_LOCK}).first()
    else:
        head = conn.execute(_HEAD).first()
        if head is None:  # empty table: the log may continue after archived segments
            head = conn.execute(_HEAD_AFTER_ARCHIVE).first()
    first, prev = (head[0] + 1, head[1]) if head and head[0] is not None else (0, GENESIS)
    seq = first
    rows = []
    for entry in entries:
        row = dict(entry, seq=seq, prev_hash=prev)
        row["hash"] = entry_hash(prev, canonical_row(
            seq, row["ts"], row["user"], row["action"], row["entity"], row["entity_id"],
            row["count"], row["ip"], row["meta"]))
        rows.append(row)
        seq, prev = seq + 1, row["hash"]
    conn.execute(_EVENTS.insert(), rows)
    return first, seq
