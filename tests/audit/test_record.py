"""audit.record: events are chained and written with the change, or not at all."""

from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from audit.chain import GENESIS, canonical_bytes, entry_hash
from audit.models import AuditEvent


def test_events_are_written_at_commit_and_chained(engine):
    with Session(engine) as session:
        audit.record(session, "login", user="alice", ip="10.0.0.5")
        audit.record(session, "export", user="alice", entity="account", count=412,
                     meta={"format": "csv"})
        assert session.scalar(select(AuditEvent.seq).limit(1)) is None
        session.commit()
    with Session(engine) as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [r.seq for r in rows] == [0, 1]
    assert rows[0].prev_hash == GENESIS
    assert rows[1].prev_hash == rows[0].hash
    for row in rows:
        fields = {c: getattr(row, c) for c in ("seq", "ts", "user", "action", "entity",
                                               "entity_id", "count", "ip", "meta")}
        assert row.hash == entry_hash(row.prev_hash, canonical_bytes(fields))


def test_rolled_back_change_leaves_no_event(engine):
    with Session(engine) as session:
        audit.record(session, "record.delete", user="bob", entity="account", count=1)
        session.rollback()
        session.commit()
    with Session(engine) as session:
        assert session.scalars(select(AuditEvent)).all() == []


def test_savepoint_rollback_drops_only_its_own_events(engine):
    with Session(engine) as session:
        audit.record(session, "login", user="alice")
        with session.begin_nested() as attempt:
            audit.record(session, "record.create", user="alice", entity="account", count=1)
            attempt.rollback()
        audit.record(session, "logout", user="alice")
        session.commit()
    with Session(engine) as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert actions == ["login", "logout"]


def test_an_event_the_log_cannot_hold_fails_at_once(engine):
    import pytest

    from audit.errors import InvalidEvent

    with Session(engine) as session:
        for bad in ({"meta": {"x": float("nan")}}, {"meta": {"x": "\ud800"}}, {"meta": [1]},
                    {"user": "u" * 65}, {"count": 1.5}, {"ip": "1\x002"}, {"entity": 3}):
            with pytest.raises(InvalidEvent):
                audit.record(session, "export", **{"user": "alice", **bad})
        with pytest.raises(InvalidEvent):
            audit.record(session, "", user="alice")
        audit.record(session, "some.new.action", user="alice", meta={"kept": True})
        session.commit()
        rows = session.scalars(select(AuditEvent)).all()
    assert [(r.action, r.meta) for r in rows] == [("some.new.action", '{"kept":true}')]


def test_the_application_cannot_update_or_delete_audit_rows(engine, config):
    import pytest
    from sqlalchemy import delete, text, update
    from sqlalchemy.exc import DBAPIError

    from audit.errors import AuditImmutable

    with Session(engine) as session:
        for _ in range(16):
            audit.record(session, "login", user="alice")
        session.commit()
        audit.checkpoint_now(session, config)  # rows in every audit table
        row = session.scalars(select(AuditEvent).limit(1)).one()
        row.user = "mallory"
        with pytest.raises(AuditImmutable):
            session.flush()
        session.rollback()
        session.delete(session.scalars(select(AuditEvent).limit(1)).one())
        with pytest.raises(AuditImmutable):
            session.flush()
        session.rollback()
        for statement in (update(AuditEvent).values(user="mallory"), delete(AuditEvent)):
            with pytest.raises(AuditImmutable):
                session.execute(statement)
            session.rollback()
    # Raw SQL goes around the ORM; the database's triggers refuse it.
    for statement in ("UPDATE audit_events SET \"user\" = 'mallory'", "DELETE FROM audit_events",
                      "DELETE FROM audit_checkpoints", "UPDATE audit_tree_nodes SET level = 1"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_events"))
    with Session(engine) as session:
        assert set(session.scalars(select(AuditEvent.user)).all()) == {"alice"}


def test_events_continue_the_chain_across_sessions_and_transactions(engine):
    with Session(engine) as first, Session(engine) as second:
        audit.record(first, "login", user="a")
        first.commit()
        audit.record(second, "login", user="b")
        audit.record(second, "logout", user="b")
        second.commit()
        audit.record(first, "logout", user="a")
        first.commit()
    with Session(engine) as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [(r.seq, r.user) for r in rows] == [(0, "a"), (1, "b"), (2, "b"), (3, "a")]
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, 4))
