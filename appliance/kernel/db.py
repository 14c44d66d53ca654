"""Database engine and the one SQLAlchemy session per request.

SQLite runs in WAL mode. Transactions begin ``IMMEDIATE`` (holding the write
lock), so a change can never fail halfway because another writer committed in
between; only code that declares it reads first (``reads_first``: the web app
does for GET requests) begins ``DEFERRED``, and such a transaction is turned
into a writing one (``begin_write``) before its first write: the reads before
that point are finished, the write lock taken, and whatever must be read for
the write (the audit chain's head) is read under it. Readers therefore run
side by side and only the short audit append is serialised. PostgreSQL uses
its default isolation; the audit log serialises its own appends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: object) -> Engine:
    """An engine for ``url`` with the pragmas and pool this appliance needs.

    Statement parameters are kept out of error messages: they may hold client
    data, and error messages end up in logs.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_DEFERRED = ContextVar("citadel_sqlite_deferred", default=False)
_DEFERRED_KEY = "citadel.deferred"


@contextmanager
def reads_first() -> Iterator[None]:
    """Within this block, SQLite transactions begin without the write lock."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def _sqlite_begin(connection) -> None:
    deferred = _DEFERRED.get()
    connection.exec_driver_sql("BEGIN DEFERRED" if deferred else "BEGIN IMMEDIATE")
    connection.info[_DEFERRED_KEY] = deferred


def begin_write(session: Session) -> None:
    """Hold the write lock from here on (SQLite; a no-op elsewhere or if already held).

    A deferred transaction has only read: it is committed and a new one begun
    ``IMMEDIATE``, so no read that a write depends on can be stale.
    """
    if session.get_bind().dialect.name != "sqlite" or session.get_nested_transaction():
        return
    connection = session.connection()
    if connection.info.get(_DEFERRED_KEY):
        connection.exec_driver_sql("COMMIT")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        connection.info[_DEFERRED_KEY] = False


@event.listens_for(Session, "before_flush")
def _write_lock_before_flush(session: Session, _context, _instances) -> None:
    begin_write(session)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def get_db() -> Session:
    """The request's session, opened on first use and closed at teardown."""
    if "db" not in g:
        g.db = current_app.extensions["citadel.sessions"]()
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for work outside a request (CLI, worker): commit or roll back."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def init_app(app: Flask, engine: Engine) -> None:
    app.extensions["citadel.engine"] = engine
    app.extensions["citadel.sessions"] = make_session_factory(engine)
    app.teardown_appcontext(close_db)


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"
