"""Fixtures for the audit trail: a data directory, a filled log, and the moves of an
attacker who owns the database (or the box) but not the signing key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

import audit
from audit.config import AuditConfig
from audit.verify import Report, verify

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path) -> AuditConfig:
    """Settings for a data directory of its own; syslog off unless a test turns it on."""
    return AuditConfig(tmp_path / "data", checkpoint_every=1000, checkpoint_seconds=300,
                       syslog_socket="")


def add_events(engine: Engine, count: int, *, start_index: int = 0, per_commit: int = 7,
               user: str | None = None) -> None:
    """Record ``count`` varied events, committing every ``per_commit``."""
    with Session(engine) as session:
        for i in range(start_index, start_index + count):
            audit.record(session, ("login", "record.view", "export", "record.update")[i % 4],
                         user=user or f"user{i % 5}", entity=None if i % 4 == 0 else "account",
                         entity_id=None if i % 4 == 0 else f"acc-{i}", count=i % 4,
                         ip=f"10.0.0.{i % 250}", meta={"i": i, "note": "é ünïcode"},
                         ts=T0 + timedelta(minutes=i))
            if (i + 1) % per_commit == 0:
                session.commit()
        session.commit()


def checkpoint(engine: Engine, config: AuditConfig) -> None:
    with Session(engine) as session:
        audit.checkpoint_now(session, config)


@pytest.fixture
def filled(engine: Engine, config: AuditConfig) -> Callable[..., None]:
    """Fill the log: events with checkpoints every ``every`` events, then an uncovered tail."""

    def fill(events: int = 100, every: int = 25, tail: int = 5) -> None:
        done = 0
        while done < events:
            step = min(every, events - done)
            add_events(engine, step, start_index=done)
            checkpoint(engine, config)
            done += step
        if tail:
            add_events(engine, tail, start_index=done)

    return fill


def run_verify(engine: Engine, config: AuditConfig, **kwargs: object) -> Report:
    with Session(engine) as session:
        return verify(session, config, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def verified(engine: Engine, config: AuditConfig) -> Callable[..., Report]:
    return lambda **kwargs: run_verify(engine, config, **kwargs)


AUDIT_TABLES = ("audit_events", "audit_checkpoints", "audit_tree_nodes", "audit_segments")


def drop_guards(engine: Engine) -> None:
    """What an owner of the database does first: switch the append-only triggers off."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for table in AUDIT_TABLES:
                conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            return
        names = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        for (name,) in list(names):
            conn.execute(text(f'DROP TRIGGER "{name}"'))


@pytest.fixture
def attacker(engine: Engine) -> Iterator[Engine]:
    """The engine, with the database's own guards removed."""
    drop_guards(engine)
    yield engine


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def rows(engine: Engine, statement: str, **params: object) -> list:
    with engine.connect() as conn:
        return list(conn.execute(text(statement), params))

