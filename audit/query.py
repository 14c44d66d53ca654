"""Reading the audit log for people: search, per-user timelines, field history.

Pure functions over a session, for the officer and auditor pages and the
``/api/v1/audit/events`` resource. They read the live table (archived events
are reached through ``appliance audit export`` and evidence bundles). Items
come in the public event shape (see ``audit.events``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Date, Select, cast, func, select
from sqlalchemy.orm import Session

from appliance.kernel.errors import BadRequest
from audit.events import public_event, public_ts
from audit.models import AuditEvent
from audit.statements import as_utc

MAX_PER_PAGE = 500
FIELD_HISTORY_ACTIONS = ("record.create", "record.update")


@dataclass(frozen=True)
class Page:
    """One page of results, shaped like every list the API returns."""

    items: list[dict[str, Any]]
    total: int
    page: int
    per_page: int

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "total": self.total, "page": self.page,
                "per_page": self.per_page}


@dataclass(frozen=True)
class Search:
    """What to look for; every criterion is optional and they combine with AND.

    ``since`` is inclusive and ``until`` exclusive; ``newest_first`` orders by
    seq descending (the default for people), else ascending.
    """

    user: str | None = None
    action: str | None = None
    actions: tuple[str, ...] = field(default=())
    entity: str | None = None
    entity_id: str | None = None
    ip: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    newest_first: bool = True

    def apply(self, stmt: Select[Any]) -> Select[Any]:
        criteria = {AuditEvent.user: self.user, AuditEvent.action: self.action,
                    AuditEvent.entity: self.entity, AuditEvent.ip: self.ip,
                    AuditEvent.entity_id: None if self.entity_id is None else str(self.entity_id)}
        for column, value in criteria.items():
            if value is not None:
                stmt = stmt.where(column == value)
        if self.actions:
            stmt = stmt.where(AuditEvent.action.in_(self.actions))
        if self.since is not None:  # a naive time means UTC, as everywhere in the log
            stmt = stmt.where(AuditEvent.ts >= as_utc(self.since))
        if self.until is not None:
            stmt = stmt.where(AuditEvent.ts < as_utc(self.until))
        return stmt


def _page_numbers(page: int, per_page: int) -> None:
    if page < 1:
        raise BadRequest(detail="page must be 1 or more")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise BadRequest(detail=f"per_page must be between 1 and {MAX_PER_PAGE}")


def search(session: Session, criteria: Search = Search(), *, page: int = 1,
           per_page: int = 50) -> Page:
    """Matching events, one page at a time, with the total count."""
    _page_numbers(page, per_page)
    total = session.scalar(criteria.apply(select(func.count()).select_from(AuditEvent))) or 0
    order = AuditEvent.seq.desc() if criteria.newest_first else AuditEvent.seq.asc()
    rows = session.scalars(criteria.apply(select(AuditEvent)).order_by(order)
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return Page([public_event(row) for row in rows], total, page, per_page)


def get_event(session: Session, seq: int) -> dict[str, Any] | None:
    row = session.get(AuditEvent, seq)
    return public_event(row) if row is not None else None


def _day(session: Session) -> Any:
    """The UTC calendar day of an event's ts, as SQL for this backend."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", AuditEvent.ts), Date)
    return func.substr(AuditEvent.ts, 1, 10)  # SQLite stores UTC 'YYYY-MM-DD HH:MM:SS...'


def user_timeline(session: Session, user: str, *, since: datetime | None = None,
                  until: datetime | None = None) -> list[dict[str, Any]]:
    """Events per UTC day per action for ``user``: [{"day", "action", "count"}], by day."""
    day = _day(session).label("day")
    stmt = Search(user=user, since=since, until=until).apply(
        select(day, AuditEvent.action, func.count().label("n")).select_from(AuditEvent))
    rows = session.execute(stmt.group_by(day, AuditEvent.action)
                           .order_by(day, AuditEvent.action)).all()
    return [{"day": str(row.day), "action": row.action, "count": row.n} for row in rows]


def field_history(session: Session, entity: str, entity_id: object, *,
                  field_name: str | None = None) -> list[dict[str, Any]]:
    """Every recorded change to a record's fields, oldest first.

    Reads ``record.create`` / ``record.update`` events whose ``meta.changes``
    is ``{field: [old, new]}``; one item per field change:
    ``{"seq", "ts", "user", "action", "field", "old", "new"}``.
    """
    criteria = Search(entity=entity, entity_id=str(entity_id), actions=FIELD_HISTORY_ACTIONS,
                      newest_first=False)
    stmt = criteria.apply(select(AuditEvent)).order_by(AuditEvent.seq)
    history = []
    for row in session.scalars(stmt):
        event = public_event(row)
        changes = event["meta"].get("changes") if isinstance(event["meta"], dict) else None
        if not isinstance(changes, dict):
            continue
        for name in sorted(changes):
            if field_name is not None and name != field_name:
                continue
            old, new = _old_new(changes[name])
            history.append({"seq": row.seq, "ts": public_ts(row.ts), "user": row.user,
                            "action": row.action, "field": name, "old": old, "new": new})
    return history


def _old_new(change: Any) -> tuple[Any, Any]:
    if isinstance(change, list | tuple) and len(change) == 2:
        return change[0], change[1]
    return None, change  # a create may record only the new value
