"""The application never updates or deletes audit rows.

Two layers refuse it. In the ORM, a flush that changes or deletes an audit
object, and any UPDATE or DELETE statement aimed at an audit table, raise
``AuditImmutable`` before reaching the database. In the database, triggers
(created by the audit migrations) refuse UPDATE, DELETE and TRUNCATE on the
audit tables, except deleting events already sealed in an archive segment;
they also stop raw SQL. Neither stops an owner of the database who drops the
triggers: that is what verification is for.

The one sanctioned removal is ``audit.archive``, which marks its session with
``sealed_removal`` and deletes only rows the triggers accept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session

from audit.errors import AuditImmutable
from audit.models import AUDIT_TABLES, AuditEvent, Checkpoint, Segment, TreeNode

IMMUTABLE = (AuditEvent, Checkpoint, TreeNode, Segment)
SEALED_REMOVAL = "citadel.audit.sealed_removal"

#: Trigger names each backend should have (see the audit migrations).
EXPECTED_TRIGGERS = {
    "postgresql": {f"{t}_{s}" for t in AUDIT_TABLES for s in ("append_only", "no_truncate")},
    "sqlite": {f"{t}_{s}" for t in AUDIT_TABLES for s in ("no_update", "no_delete")},
}


@event.listens_for(Session, "before_flush")
def _refuse_changed_objects(session: Session, _context: Any, _instances: Any) -> None:
    for obj in session.deleted:
        if isinstance(obj, IMMUTABLE):
            raise AuditImmutable(detail=f"deleting a {type(obj).__name__} was refused")
    for obj in session.dirty:
        if isinstance(obj, IMMUTABLE) and session.is_modified(obj):
            raise AuditImmutable(detail=f"changing a {type(obj).__name__} was refused")


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_changes(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    name = getattr(table, "name", None)
    if name not in AUDIT_TABLES:
        return
    if state.is_delete and name == "audit_events" and state.session.info.get(SEALED_REMOVAL):
        return
    verb = "UPDATE" if state.is_update else "DELETE"
    raise AuditImmutable(detail=f"{verb} on {name} was refused")


@contextmanager
def sealed_removal(session: Session) -> Iterator[None]:
    """Allow ``audit.archive`` to delete events it has sealed, for one block."""
    session.info[SEALED_REMOVAL] = True
    try:
        yield
    finally:
        session.info.pop(SEALED_REMOVAL, None)


def missing_triggers(connection: Connection) -> set[str]:
    """Append-only triggers the database should have but does not."""
    dialect = connection.dialect.name
    expected = EXPECTED_TRIGGERS.get(dialect, set())
    if dialect == "postgresql":
        sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D'"
    elif dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    else:
        return set()
    present = {row[0] for row in connection.execute(text(sql))}
    return expected - present
