"""Consistent snapshots of the database and of files from the data directory.

* SQLite: the online backup API copies every page inside one read
  transaction into a scratch file; writers keep working (WAL). The archive
  then streams that file; the drill takes its table digests from it.
* PostgreSQL: one ``REPEATABLE READ`` transaction exports its snapshot;
  ``pg_dump --format=custom --compress=0 --snapshot=...`` streams the dump
  (uncompressed, because the archive compresses and deduplicates better than
  pg_dump's zlib, see docs/backup-format.md) and the table digests are read
  through connections that import the very same snapshot.
* Files: paths or globs relative to the data directory, streamed from disk.

Nothing is read whole into memory.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url

from backup.chunker import sqlite_page_size
from backup.errors import BackupNotConfigured, SnapshotFailed
from backup.tabledigest import table_digests

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


def backend_of(url: str | URL) -> str:
    """``sqlite`` or ``postgresql`` for a database URL; other databases are refused."""
    name = make_url(url).get_backend_name()
    if name not in (SQLITE, POSTGRESQL):
        raise BackupNotConfigured(detail=f"cannot back up a {name} database (SQLite or PostgreSQL)")
    return name


def sqlite_path(url: str | URL) -> Path:
    """The file of a SQLite URL."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupNotConfigured(detail="an in-memory SQLite database cannot be backed up")
    return Path(database)


def libpq_args(url: str | URL) -> tuple[list[str], dict[str, str]]:
    """Connection options for pg_dump/pg_restore, the password kept out of ``ps``."""
    u = make_url(url)
    args = [f"--dbname={u.database}"]
    if u.host:
        args.append(f"--host={u.host}")
    if u.port:
        args.append(f"--port={u.port}")
    if u.username:
        args.append(f"--username={u.username}")
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return args, env


def sqlalchemy_url(url: str | URL) -> URL:
    """The URL with the psycopg 3 driver for PostgreSQL."""
    u = make_url(url)
    return u.set(drivername="postgresql+psycopg") if u.get_backend_name() == POSTGRESQL else u


@dataclass
class DatabaseSnapshot:
    """A database snapshot being streamed: where it goes in the archive and its digests."""

    backend: str
    archive_path: str
    stream: IO[bytes]
    page_size: int | None
    digests: Future[dict[str, dict[str, Any]]] | None
    snapshot_file: Path | None = None


@contextmanager
def snapshot_database(url: str, scratch: Path, *, digest_workers: int | None = None) -> Iterator[DatabaseSnapshot]:
    """Take the snapshot; the caller reads ``stream`` to its end inside the block."""
    if backend_of(url) == SQLITE:
        with _sqlite_snapshot(url, scratch) as snap:
            yield snap
    else:
        with _postgres_snapshot(url, digest_workers or 2) as snap:
            yield snap


@contextmanager
def _sqlite_snapshot(url: str, scratch: Path) -> Iterator[DatabaseSnapshot]:
    source = sqlite_path(url)
    if not source.exists():
        raise SnapshotFailed(detail=f"{source} does not exist")
    copy = scratch / "snapshot.db"
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # all pages in one step: one consistent read transaction
        finally:
            dst.close()
            src.close()
    except sqlite3.Error as exc:
        raise SnapshotFailed(detail=f"SQLite backup of {source} failed: {exc}") from exc
    # The table digests of this copy are taken by the drill, while it restores: the archive
    # reaches the target sooner, and the copy stays in ``scratch`` until then.
    with open(copy, "rb") as stream:
        page_size = sqlite_page_size(stream.read(100))
        stream.seek(0)
        yield DatabaseSnapshot(SQLITE, "database/citadel.db", stream, page_size, None, copy)


def sqlite_file_digests(path: str, workers: int = 2) -> dict[str, dict[str, Any]]:
    """Table digests of a SQLite file, opened read-only."""
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        return table_digests(engine, workers=workers)
    finally:
        engine.dispose()


@contextmanager
def _postgres_snapshot(url: str, workers: int) -> Iterator[DatabaseSnapshot]:
    program = shutil.which("pg_dump")
    if program is None:
        raise SnapshotFailed(detail="pg_dump is not installed (apt-get install postgresql-client)")
    engine = create_engine(sqlalchemy_url(url), pool_size=workers + 1).execution_options(
        isolation_level="REPEATABLE READ", postgresql_readonly=True
    )
    try:
        holder = engine.connect()
    except Exception as exc:  # noqa: BLE001 - any driver error means: cannot connect
        engine.dispose()
        raise SnapshotFailed(detail=f"cannot connect to the database: {exc}") from exc
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-digest")
    proc = None
    try:
        snapshot_id = holder.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
        if not re.fullmatch(r"[0-9A-F-]+", snapshot_id):
            raise SnapshotFailed(detail=f"unexpected snapshot id {snapshot_id!r}")

        @contextmanager
        def connect_to_snapshot() -> Iterator[Any]:
            with engine.connect() as conn:
                # The first statement of the transaction: from here it sees the dump's snapshot.
                conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")
                try:
                    yield conn
                finally:
                    conn.rollback()

        args, env = libpq_args(url)
        proc = subprocess.Popen(  # noqa: S603 - fixed program (on PATH), arguments from the URL
            [program, "--format=custom", "--compress=0", f"--snapshot={snapshot_id}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        errors: list[bytes] = []
        reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
        reader.start()
        digests = pool.submit(table_digests, engine, workers=workers, connect=connect_to_snapshot)
        yield DatabaseSnapshot(POSTGRESQL, "database/citadel.pgdump", proc.stdout, None, digests)
        code = proc.wait()
        reader.join()
        if code != 0:
            detail = b"".join(errors).decode(errors="replace").strip() or f"exit code {code}"
            raise SnapshotFailed(detail=f"pg_dump failed: {detail}")
        digests.result()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        pool.shutdown(wait=True)
        holder.rollback()
        holder.close()
        engine.dispose()


@dataclass(frozen=True)
class FileItem:
    """A file to archive: its name in the archive, where it is, its mode."""

    archive_path: str
    source: Path
    mode: int


def collect_files(data_dir: Path, patterns: list[str], *, required: bool = True) -> list[FileItem]:
    """The files matched by ``patterns`` (paths or globs relative to the data directory).

    A pattern naming a directory takes everything under it. With ``required``,
    a pattern that matches nothing is an error: a backup silently missing the
    wrapped keys would be worse than no backup.
    """
    root = data_dir.resolve()
    found: dict[str, FileItem] = {}
    for pattern in patterns:
        if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise BackupNotConfigured(detail=f"file pattern {pattern!r} must be relative to the data directory")
        matches = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
        matches = [m for m in matches if m.exists()]
        if not matches and required:
            raise BackupNotConfigured(detail=f"nothing in {root} matches {pattern!r}")
        for match in matches:
            paths = sorted(p for p in match.rglob("*") if p.is_file()) if match.is_dir() else [match]
            for path in paths:
                try:
                    rel = path.resolve().relative_to(root).as_posix()
                except ValueError:
                    raise BackupNotConfigured(
                        detail=f"{path} leads outside the data directory; back it up another way"
                    ) from None
                found[rel] = FileItem(f"files/{rel}", path, path.stat().st_mode & 0o7777)
    return [found[k] for k in sorted(found)]
