"""Restoring an archive into a new database and a directory of files.

A restore never writes over a database that holds tables unless forced: an
existing non-empty SQLite file or PostgreSQL database is refused. The SQLite
file is rebuilt next to its destination and renamed into place at the end;
PostgreSQL is restored by ``pg_restore`` in one transaction. The time taken
from start to a usable database (the RTO) is reported.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from backup.archive import ArchiveReader
from backup.errors import BackupError, RestoreRefused
from backup.repository import Repository
from backup.snapshot import POSTGRESQL, SQLITE, backend_of, libpq_args, sqlalchemy_url, sqlite_path

Progress = Callable[[int], None]


@dataclass
class RestoreResult:
    """What a restore did and how long it took (the RTO)."""

    archive_id: str
    database: str
    seconds: float
    bytes: int
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive_id": self.archive_id,
            "database": self.database,
            "rto_seconds": round(self.seconds, 3),
            "bytes": self.bytes,
            "files": self.files,
        }


def restore_archive(
    repo: Repository,
    archive_id: str,
    database_url: str,
    *,
    files_dir: Path | None = None,
    force: bool = False,
    progress: Progress | None = None,
    reader: ArchiveReader | None = None,
    durable: bool = True,
    skip_files: Collection[str] = (),
) -> RestoreResult:
    """Restore ``archive_id`` into ``database_url`` (and its files into ``files_dir``).

    ``durable=False`` skips the fsyncs, for scratch copies that are thrown away.
    ``skip_files`` names files (relative to the data directory) left out, e.g.
    key files a disaster recovery already took, newer, from the repository.
    """
    started = time.perf_counter()
    reader = reader or ArchiveReader(repo, archive_id)
    database = reader.files("database")
    if len(database) != 1:
        raise BackupError(detail=f"archive {archive_id} holds no database")
    entry = database[0]
    backend = backend_of(database_url)
    expected = reader.manifest.get("database", {}).get("backend")
    if expected and expected != backend:
        raise BackupError(detail=f"archive {archive_id} holds a {expected} database; restore it into a {expected} URL")
    if backend == SQLITE:
        restore_sqlite(
            reader,
            entry,
            sqlite_path(database_url),
            force=force,
            progress=progress,
            durable=durable,
        )
    else:
        restore_postgres(reader, entry, database_url, force=force, progress=progress)
    restored = []
    if files_dir is not None:
        for item in reader.files("file"):
            if item["path"].removeprefix("files/") in skip_files:
                continue
            path = restore_file(reader, item, files_dir, progress=progress, durable=durable)
            restored.append(str(path))
    return RestoreResult(
        archive_id,
        make_url(database_url).render_as_string(hide_password=True),
        time.perf_counter() - started,
        reader.stats.bytes_out,
        restored,
    )


def _sqlite_has_tables(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return True  # not a database we can read: treat as precious


def restore_sqlite(
    reader: ArchiveReader,
    entry: dict[str, Any],
    path: Path,
    *,
    force: bool,
    progress: Progress | None,
    durable: bool = True,
) -> None:
    """Rebuild the SQLite file next to ``path`` and rename it into place."""
    if _sqlite_has_tables(path) and not force:
        raise RestoreRefused(detail=f"SQLite database {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.restoring-{secrets.token_hex(4)}")
    try:
        with open(partial, "wb") as out:
            for piece in reader.iter_file(entry, progress):
                out.write(piece)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _admin_engine(url: str):
    return create_engine(sqlalchemy_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def prepare_postgres_database(url: str, *, force: bool) -> bool:
    """Create the target database; refuse (or, forced, recreate) one that has tables.

    Returns whether the database is new (did not exist before), so that a failed
    restore can drop what it created and leave nothing half-made behind.
    """
    name = make_url(url).database
    if not name:
        raise BackupError(detail="the PostgreSQL URL names no database")
    admin = _admin_engine(url)
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.connect() as conn:
            exists = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": name}).first()
            if exists:
                target = create_engine(sqlalchemy_url(url))
                try:
                    with target.connect() as tconn:
                        schemas = [
                            s
                            for s in inspect(tconn).get_schema_names()
                            if s not in ("information_schema",) and not s.startswith("pg_")
                        ]
                        has_tables = any(inspect(tconn).get_table_names(schema=s) for s in schemas)
                finally:
                    target.dispose()
                if has_tables and not force:
                    raise RestoreRefused(detail=f"PostgreSQL database {name}")
                conn.exec_driver_sql(f"DROP DATABASE {quoted} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
            return not exists
    finally:
        admin.dispose()


def drop_postgres_database(url: str) -> None:
    """Drop the database at ``url`` (one this restore created and could not finish)."""
    admin = _admin_engine(url)
    try:
        with admin.connect() as conn:
            quoted = admin.dialect.identifier_preparer.quote(make_url(url).database)
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        admin.dispose()


def restore_postgres(
    reader: ArchiveReader,
    entry: dict[str, Any],
    url: str,
    *,
    force: bool,
    progress: Progress | None,
) -> None:
    """Create the database and stream the dump into ``pg_restore``.

    If the restore fails, a database this call created is dropped again: a
    half-filled database at the destination could be mistaken for a restore.
    """
    program = shutil.which("pg_restore")
    if program is None:
        raise BackupError(detail="pg_restore is not installed (apt-get install postgresql-client)")
    created = prepare_postgres_database(url, force=force)
    try:
        _pg_restore(program, reader, entry, url, progress)
    except BaseException:
        if created:
            with contextlib.suppress(Exception):  # the restore's own error is the one to report
                drop_postgres_database(url)
        raise


def _pg_restore(program: str, reader: ArchiveReader, entry: dict[str, Any], url: str,
                progress: Progress | None) -> None:
    args, env = libpq_args(url)
    proc = subprocess.Popen(  # noqa: S603 - fixed program (on PATH), arguments from the URL
        [program, "--no-owner", "--exit-on-error", "--single-transaction", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    errors: list[bytes] = []
    drain = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    drain.start()
    try:
        for piece in reader.iter_file(entry, progress):
            proc.stdin.write(piece)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # pg_restore stopped early: its exit code and message say why
    except BaseException:
        proc.kill()
        raise
    finally:
        code = proc.wait()
        drain.join()
    if code != 0:
        detail = b"".join(errors).decode(errors="replace").strip()[-2000:]
        raise BackupError(detail=f"pg_restore failed: {detail or f'exit code {code}'}")


def restore_file(
    reader: ArchiveReader,
    entry: dict[str, Any],
    root: Path,
    *,
    progress: Progress | None = None,
    durable: bool = True,
) -> Path:
    """Write one archived file under ``root`` atomically, with its mode."""
    rel = entry["path"].removeprefix("files/")
    dest = (root / rel).resolve()
    if root.resolve() not in dest.parents:
        raise BackupError(detail=f"archive file {entry['path']} escapes the target directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.restoring-{secrets.token_hex(4)}")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            for piece in reader.iter_file(entry, progress):
                out.write(piece)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(partial, entry.get("mode", 0o600))
        os.replace(partial, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return dest


__all__ = ["POSTGRESQL", "SQLITE", "RestoreResult", "restore_archive"]
