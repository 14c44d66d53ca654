"""Reading the audit log: live events in batches, archived segments, checkpoints,
and the Merkle tree's hashes over both.

Reads run in short transactions (one per batch) so that a long scan never
holds SQLite's write lock or a PostgreSQL snapshot for minutes; the log only
grows, so batches read at different moments still form one consistent prefix.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, select
from sqlalchemy.orm import Session

from audit.chain import canonical_row, leaf_hash
from audit.config import AuditConfig
from audit.models import AuditEvent, Checkpoint, Segment, TreeNode
from audit.segments import SegmentReader
from audit.statements import SignedCheckpoint

BATCH = 10_000

EVENT_COLUMNS = (AuditEvent.seq, AuditEvent.ts, AuditEvent.user, AuditEvent.action,
                 AuditEvent.entity, AuditEvent.entity_id, AuditEvent.count, AuditEvent.ip,
                 AuditEvent.meta, AuditEvent.prev_hash, AuditEvent.hash)


def row_canonical(row: Any, seq: int | None = None) -> bytes:
    """Canonical bytes of a stored row, optionally as if it sat at ``seq``."""
    return canonical_row(row.seq if seq is None else seq, row.ts, row.user, row.action,
                         row.entity, row.entity_id, row.count, row.ip, row.meta)


def live_batches(session: Session, start: int, end: int | None = None, *, batch: int = BATCH,
                 release: bool = True) -> Iterator[Sequence[Row[*tuple[Any, ...]]]]:
    """Live events with ``start <= seq < end`` in seq order, ``batch`` rows at a time.

    With ``release``, the session's transaction ends after each batch.
    """
    position = start
    while end is None or position < end:
        stmt = select(*EVENT_COLUMNS).where(AuditEvent.seq >= position)
        if end is not None:
            stmt = stmt.where(AuditEvent.seq < end)
        rows = session.execute(stmt.order_by(AuditEvent.seq).limit(batch)).all()
        if release:
            session.rollback()
        if not rows:
            return
        yield rows
        position = rows[-1].seq + 1


_FAST_SQL = {
    # Read in a transaction whose time zone is UTC, so timestamps arrive as UTC datetimes.
    "postgresql": """SELECT seq, ts, "user", action, entity, entity_id, count, ip, meta,
        prev_hash, hash FROM audit_events WHERE seq >= %s ORDER BY seq LIMIT %s""",
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text, read as it is stored.
    "sqlite": """SELECT seq, CAST(ts AS TEXT), "user", action, entity, entity_id, count, ip, meta,
        prev_hash, hash FROM audit_events WHERE seq >= ? ORDER BY seq LIMIT ?""",
}
_UTC_TRANSACTION = "SET LOCAL TIME ZONE 'UTC'"

#: How ``fast_batches`` hands out ``ts``: SQLite's stored text, or a UTC datetime.
TS_SQLITE_TEXT, TS_UTC_DATETIME = 1, 2


def fast_batches(session: Session, start: int, *, batch: int = BATCH,
                 ) -> Iterator[tuple[int, list[tuple[Any, ...]]]]:
    """Live events from ``start`` as plain DB-API tuples, for verification's hot loop.

    Yields ``(ts_kind, rows)``; each row is (seq, ts, user, action, entity,
    entity_id, count, ip, meta, prev_hash, hash). With ``TS_SQLITE_TEXT``, ts
    is SQLite's stored text ``YYYY-MM-DD HH:MM:SS.ffffff``, canonical as
    ``ts[:10] + "T" + ts[11:] + "Z"``; any other stored spelling yields other
    bytes and so a hash mismatch, which is right: the stored value changed.
    With ``TS_UTC_DATETIME`` it is an aware datetime in UTC.

    The driver is used directly because building SQLAlchemy rows would cost
    more than hashing them, and a reader thread with its own connection
    fetches the next batch while the caller hashes this one (drivers release
    the GIL while they wait for the database).
    """
    bind = session.get_bind()
    dialect = bind.dialect.name
    if dialect not in _FAST_SQL:
        raise LookupError(f"no fast reader for {dialect}")
    sqlite = dialect == "sqlite"
    kind = TS_SQLITE_TEXT if sqlite else TS_UTC_DATETIME
    if not isinstance(bind, Engine) or (sqlite and (bind.url.database or ":memory:")
                                        == ":memory:"):  # no second connection: read in line
        for rows in _batches_on(session, _FAST_SQL[dialect], start, batch):
            yield kind, rows
        return
    with _Prefetch(bind, _FAST_SQL[dialect], start, batch) as batches:
        for rows in batches:
            yield kind, rows


def _fetch(connection: Any, sql: str, position: int, batch: int) -> list[tuple[Any, ...]]:
    """One batch through the driver's own cursor on ``connection``."""
    postgres = "%s" in sql
    # PostgreSQL: binary results (bytea and timestamps need no text round trip).
    cursor = connection.cursor(binary=True) if postgres else connection.cursor()
    try:
        if postgres:
            cursor.execute(_UTC_TRANSACTION)
        cursor.execute(sql, (position, batch))
        return cursor.fetchall()
    finally:
        cursor.close()


def _batches_on(session: Session, sql: str, start: int, batch: int,
                ) -> Iterator[list[tuple[Any, ...]]]:
    position = start
    while True:
        rows = _fetch(session.connection().connection, sql, position, batch)
        session.rollback()
        if not rows:
            return
        yield rows
        position = rows[-1][0] + 1


class _Prefetch:
    """Reads batches on a thread of its own, at most two ahead of the consumer."""

    def __init__(self, engine: Engine, sql: str, start: int, batch: int) -> None:
        self.engine, self.sql, self.start, self.batch = engine, sql, start, batch
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, name="audit-reader", daemon=True)

    def __enter__(self) -> Iterator[list[tuple[Any, ...]]]:
        self.thread.start()
        return self._consume()

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _consume(self) -> Iterator[list[tuple[Any, ...]]]:
        while True:
            item = self.queue.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item

    def _put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read(self) -> None:
        try:
            if self.engine.dialect.name == "sqlite":
                self._read_sqlite()
                return
            with self.engine.connect() as conn:
                self._loop(lambda: _begin_on(conn))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def _read_sqlite(self) -> None:
        """A plain reader: each SELECT is its own read transaction, so writers never wait.

        The appliance's SQLite connections begin every transaction IMMEDIATE
        (the write lock); a verification that only reads needs no such lock.
        """
        connection = sqlite3.connect(self.engine.url.database or "", isolation_level=None,
                                     timeout=30)
        try:
            connection.execute("PRAGMA query_only = ON")
            self._loop(lambda: nullcontext(connection))
        finally:
            connection.close()

    def _loop(self, transaction: Any) -> None:
        position = self.start
        while not self.stop.is_set():
            with transaction() as conn:
                rows = _fetch(conn, self.sql, position, self.batch)
            self._put(rows)
            if not rows:
                return
            position = rows[-1][0] + 1


@contextmanager
def _begin_on(conn: Any) -> Iterator[Any]:
    """One short transaction per batch on an SQLAlchemy connection; yields the driver's."""
    with conn.begin():
        yield conn.connection


def live_rows(session: Session, first: int, last: int) -> list[Row[*tuple[Any, ...]]]:
    """Live events with ``first <= seq <= last``."""
    stmt = select(*EVENT_COLUMNS).where(AuditEvent.seq.between(first, last))
    return list(session.execute(stmt.order_by(AuditEvent.seq)).all())


def head(session: Session) -> tuple[int, bytes] | None:
    """(size, hash of the newest event) of the committed log, or None when empty."""
    row = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    if row is not None:
        return row.seq + 1, row.hash
    stub = session.execute(select(Segment).order_by(Segment.end_seq.desc()).limit(1)).scalar()
    return (stub.end_seq, stub.head_hash) if stub is not None else None


def checkpoints(session: Session) -> list[SignedCheckpoint]:
    rows = session.scalars(select(Checkpoint).order_by(Checkpoint.tree_size)).all()
    return [SignedCheckpoint.from_row(row) for row in rows]


def latest_checkpoint(session: Session) -> SignedCheckpoint | None:
    row = session.scalars(select(Checkpoint).order_by(Checkpoint.tree_size.desc()).limit(1)).first()
    return SignedCheckpoint.from_row(row) if row is not None else None


def checkpoint_at(session: Session, size: int) -> SignedCheckpoint | None:
    row = session.get(Checkpoint, size)
    return SignedCheckpoint.from_row(row) if row is not None else None


def segments(session: Session) -> list[Segment]:
    return list(session.scalars(select(Segment).order_by(Segment.first_seq)).all())


def segment_path(config: AuditConfig, stub: Segment) -> Path:
    return config.archive_dir / stub.file_name


class DbSource:
    """Leaf and node hashes from the database, and from segment files for archived events."""

    def __init__(self, session: Session, config: AuditConfig) -> None:
        self.session = session
        self.config = config
        self._stubs: list[Segment] | None = None
        self._cached: tuple[int, list[bytes]] | None = None  # (first seq, leaves) of one segment

    def _segments(self) -> list[Segment]:
        if self._stubs is None:
            self._stubs = segments(self.session)
        return self._stubs

    def leaves(self, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        position = start
        for stub in self._segments():
            if stub.end_seq <= position or stub.first_seq >= end:
                continue
            if stub.first_seq > position:
                out += self._live(position, stub.first_seq)
                position = stub.first_seq
            upto = min(end, stub.end_seq)
            out += self._archived(stub)[position - stub.first_seq:upto - stub.first_seq]
            position = upto
        if position < end:
            out += self._live(position, end)
        return out

    def _live(self, start: int, end: int) -> list[bytes]:
        rows = live_rows(self.session, start, end - 1)
        if [row.seq for row in rows] != list(range(start, end)):
            raise LookupError(f"events {start}..{end - 1} are not all in the log")
        return [leaf_hash(row_canonical(row)) for row in rows]

    def _archived(self, stub: Segment) -> list[bytes]:
        if self._cached is None or self._cached[0] != stub.first_seq:
            with SegmentReader(segment_path(self.config, stub)) as reader:
                leaves = [leaf_hash(canonical) for _seq, canonical, _p, _h in reader.events()]
            self._cached = (stub.first_seq, leaves)
        return self._cached[1]

    def nodes(self, level: int, first: int, last: int) -> list[bytes] | None:
        rows = self.session.execute(
            select(TreeNode.idx, TreeNode.hash)
            .where(TreeNode.level == level, TreeNode.idx.between(first, last))
            .order_by(TreeNode.idx)).all()
        if len(rows) != last - first + 1:
            return None
        return [row.hash for row in rows]
