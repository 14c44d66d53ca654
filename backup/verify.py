"""The verification drill: an archive counts only once it has been restored and compared.

The drill restores the archive into a scratch database and directory,
which reads every pack (hash, MAC, every chunk id) and checks every file's
SHA-256; reads any pack no file used; recomputes every table's row count and
digest (``backup.tabledigest``) and compares them with those taken from the
source snapshot; then runs extra checks given by the caller. The result is a
report signed with the appliance's backup signing key.

An extra check is a callable taking a ``DrillContext`` and returning
``True``/``None`` (passed), ``False`` (failed) or ``(ok, detail)``; raising
is a failure too. Give it a ``name`` attribute or pass ``(name, check)``.
"""

from __future__ import annotations

import base64
import errno
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from backup import scratch as scratch_dirs
from backup.archive import ArchiveReader
from backup.envelope import canonical_json, check_signature, sign
from backup.errors import (
    ArchiveDamaged,
    ArchiveNotFound,
    BackupError,
    BackupNotConfigured,
    PackDamaged,
    TargetUnavailable,
    WrongKey,
)
from backup.keys import BackupKeys
from backup.repository import Repository, utc_now
from backup.restore import _admin_engine, restore_archive
from backup.snapshot import SQLITE, sqlalchemy_url, sqlite_file_digests
from backup.tabledigest import table_digests


@dataclass
class DrillContext:
    """What an extra check can look at: the restored copy and the archive's manifest."""

    archive_id: str
    manifest: dict[str, Any]
    database_url: str
    engine: Engine
    files_dir: Path


CheckResult = bool | None | tuple[bool, str]
Check = Callable[[DrillContext], CheckResult]
NamedCheck = Check | tuple[str, Check]


def run_drill(
    repo: Repository,
    archive_id: str,
    *,
    scratch_url: str | None = None,
    checks: Iterable[NamedCheck] = (),
    workdir: Path | None = None,
    digest_workers: int = 2,
    source_snapshot: Path | None = None,
    source_tables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Restore ``archive_id`` into scratch space, compare, and return the signed report.

    ``scratch_url`` names the PostgreSQL server for a PostgreSQL archive (its
    database name is replaced by a fresh scratch one); SQLite archives are
    restored into a temporary file.

    The restored tables are compared with the source snapshot's digests: the
    manifest's (PostgreSQL), else those of ``source_snapshot`` (the SQLite
    snapshot file, hashed while the archive is restored), else
    ``source_tables`` (from an earlier drill's report). The report keeps them
    as ``source_tables`` for later drills.
    """
    started, clock = utc_now(), time.perf_counter()
    report: dict[str, Any] = {
        "archive_id": archive_id,
        "started": started,
        "ok": False,
        "tables": {},
        "checks": [],
        "error": None,
    }
    scratch_dir = Path(tempfile.mkdtemp(prefix=scratch_dirs.prefix("drill"), dir=workdir))
    database_url = None
    source_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-source-digest")
    try:
        reader = ArchiveReader(repo, archive_id)
        manifest = reader.manifest
        backend = manifest.get("database", {}).get("backend", SQLITE)
        database_url = _scratch_database(backend, scratch_dir, scratch_url)
        expected = _expected_tables(manifest, source_pool, source_snapshot, source_tables, digest_workers)
        restored = restore_archive(
            repo,
            archive_id,
            database_url,
            files_dir=scratch_dir / "files",
            reader=reader,
            durable=False,
        )
        report["restore_seconds"] = round(restored.seconds, 3)
        _read_unused_packs(reader)
        reader.check_index()
        report.update(
            packs=reader.stats.packs,
            chunks=reader.stats.chunks,
            bytes_read=reader.stats.bytes_stored,
            bytes_restored=reader.stats.bytes_out,
            files=len(reader.files()),
        )
        engine = create_engine(sqlalchemy_url(database_url))
        try:
            digest_started = time.perf_counter()
            actual = table_digests(engine, workers=digest_workers)
            report["digest_seconds"] = round(time.perf_counter() - digest_started, 3)
            report["source_tables"] = expected.result() if expected is not None else None
            tables_ok = _compare_tables(report, report["source_tables"], actual)
            context = DrillContext(archive_id, manifest, database_url, engine, scratch_dir / "files")
            checks_ok = all([_run_check(report, check, context) for check in checks])
        finally:
            engine.dispose()
        report["ok"] = tables_ok and checks_ok
    except BackupError as exc:
        report["error"] = exc.message
        report["could_not_verify"] = environmental(exc)
        if isinstance(exc, PackDamaged):
            report["bad_packs"] = [exc.pack]  # the next backup stores those chunks anew
    except Exception as exc:  # noqa: BLE001 - a drill reports every failure, it never crashes
        report["error"] = f"{type(exc).__name__}: {exc}"
        report["could_not_verify"] = environmental(exc)
    finally:
        source_pool.shutdown(wait=True, cancel_futures=True)
        _drop_scratch(database_url, scratch_url)
        shutil.rmtree(scratch_dir, ignore_errors=True)
    report["finished"] = utc_now()
    report["seconds"] = round(time.perf_counter() - clock, 3)
    return sign_report(repo.keys, report)


_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ENOMEM, errno.EMFILE,
                       errno.ENFILE, errno.EACCES, errno.EPERM}
_ENVIRONMENT_WORDS = ("no space left", "disk is full", "disk quota", "could not extend file",
                      "connection refused", "could not connect", "connection timed out")


def environmental(exc: BaseException) -> bool:
    """Whether a drill stopped because of where it ran, not because of the archive.

    A full scratch disk, an unreachable target or scratch server, or a lack of
    memory proves nothing against the archive: its run is "could not verify",
    never "failed". Anything the archive's own bytes caused (a bad tag, a missing
    pack, a wrong digest) is damage.
    """
    if isinstance(exc, ArchiveDamaged | ArchiveNotFound | WrongKey):
        return False
    if isinstance(exc, TargetUnavailable | BackupNotConfigured | MemoryError | ConnectionError | TimeoutError
                  | BrokenExecutor):
        return True  # the target, a setting or the machine (a worker process killed, say) failed
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        return exc.errno in _ENVIRONMENT_ERRNOS
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return True  # the scratch database could not be reached or written
    text = str(getattr(exc, "message", None) or exc).lower()
    return any(word in text for word in _ENVIRONMENT_WORDS)


def _scratch_database(backend: str, scratch_dir: Path, scratch_url: str | None) -> str:
    if backend == SQLITE:
        return f"sqlite:///{scratch_dir / 'drill.db'}"
    if not scratch_url:
        raise BackupNotConfigured(detail="a PostgreSQL drill needs a scratch server URL ([backup] scratch_url)")
    name = f"citadel_drill_{secrets.token_hex(6)}"
    return make_url(scratch_url).set(database=name).render_as_string(hide_password=False)


def _drop_scratch(database_url: str | None, scratch_url: str | None) -> None:
    if not database_url or make_url(database_url).get_backend_name() == SQLITE:
        return
    admin = _admin_engine(database_url)
    try:
        with admin.connect() as conn:
            quoted = admin.dialect.identifier_preparer.quote(make_url(database_url).database)
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        admin.dispose()


def _read_unused_packs(reader: ArchiveReader) -> None:
    used = {run[0] for entry in reader.files() for run in entry["runs"]}
    for index in range(len(reader.manifest["packs"])):
        if index not in used:
            reader.read_pack(index)


def _expected_tables(
    manifest: dict[str, Any],
    pool: ThreadPoolExecutor,
    source_snapshot: Path | None,
    source_tables: dict[str, Any] | None,
    workers: int,
) -> Future[dict[str, Any]] | None:
    """The source snapshot's table digests, being computed or already known."""
    known = manifest.get("database", {}).get("tables") or source_tables
    if known is not None:
        done: Future[dict[str, Any]] = Future()
        done.set_result(known)
        return done
    if source_snapshot is not None and source_snapshot.exists():
        return pool.submit(sqlite_file_digests, str(source_snapshot), workers)
    return None


def _compare_tables(report: dict[str, Any], expected: dict[str, Any] | None, actual: dict[str, Any]) -> bool:
    if expected is None:
        # Only for a SQLite archive never drilled while its snapshot existed: its restored
        # file already matched the snapshot's SHA-256 byte for byte, so the digests are recorded.
        report["tables"] = {n: {**d, "expected_rows": None, "ok": True} for n, d in actual.items()}
        report["tables_compared"] = False
        return True
    report["tables_compared"] = True
    ok = True
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        same = want is not None and got is not None and want == got
        ok &= same
        report["tables"][name] = {
            "rows": got["rows"] if got else None,
            "expected_rows": want["rows"] if want else None,
            "sha256": got["sha256"] if got else None,
            "ok": same,
        }
    return ok


def _run_check(report: dict[str, Any], check: NamedCheck, context: DrillContext) -> bool:
    name, func = (
        check
        if isinstance(check, tuple)
        else (getattr(check, "name", None) or getattr(check, "__name__", "check"), check)
    )
    try:
        result = func(context)
    except Exception as exc:  # noqa: BLE001 - a failing check is a finding, not a crash
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    else:
        ok, detail = result if isinstance(result, tuple) else (result is not False, "")
    report["checks"].append({"name": name, "ok": bool(ok), "detail": detail})
    return bool(ok)


def sign_report(keys: BackupKeys, report: dict[str, Any]) -> dict[str, Any]:
    """The report with its Ed25519 signature (domain ``report``) and key version."""
    body = {k: v for k, v in report.items() if k != "signature"}
    body["key_version"] = keys.key_version
    signature = sign(keys.require_signing(), "report", canonical_json(body))
    return {**body, "signature": base64.b64encode(signature).decode()}


def report_is_authentic(keys: BackupKeys, report: dict[str, Any]) -> bool:
    """Whether a report is unchanged since the drill signed it."""
    body = {k: v for k, v in report.items() if k != "signature"}
    try:
        signature = base64.b64decode(report["signature"], validate=True)
        public = keys.verify_key_for(int(report["key_version"]))
    except (KeyError, ValueError, TypeError, WrongKey):
        return False
    return check_signature(public, signature, "report", canonical_json(body))
