"""Disaster recovery: rebuild an appliance from its backup target and its officers alone.

The archives are encrypted with the appliance's backup data key, which lives
wrapped by the master key in ``keys/keyring.json``; the master key itself is
wrapped, in ``keys/seal.json``, by the officers' unseal key (M of N shares) and
by the printed recovery key. Each backup (and each key rotation or reshare)
therefore copies those two documents, still wrapped, to the target as
``keys/<time>-<digest>.json``, as restic's ``keys/`` and Borg's repokey do.
Whoever holds the target alone learns no key: opening them needs the quorum
or the recovery key, exactly as on the box.

A recovery on a new machine: copy the newest key document into an empty data
directory, unseal it with the shares or the recovery key (the usual unseal
code), open the repository with the keyring it unwrapped, restore the newest
verified archive's database and files, point ``citadel.toml`` at the database
just restored, and verify the audit log, anchor included. The scheduled
recovery drill does the same into a scratch directory (``recovery_drill``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from appliance.kernel.config import CONFIG_FILE, write_initial
from appliance.kernel.errors import CitadelError
from appliance.kernel.hooks import Hook
from appliance.keys import files as key_files
from backup import scratch as scratch_dirs
from backup.errors import BackupError
from backup.keys import BackupKeys
from backup.repository import Repository, utc_now
from backup.restore import RestoreResult, drop_postgres_database, restore_archive
from backup.snapshot import POSTGRESQL, SQLITE
from backup.targets.base import Target

log = logging.getLogger(__name__)

KEY_FORMAT = "citadel-backup-keys/1"
KEYS_PREFIX = "keys/"
#: restored from the key document, never from the (older) copy inside an archive
KEY_FILES = ("keys/keyring.json", "keys/seal.json")
CARD_SHARES_DIR = "card-shares"

RecoveryCheck = Callable[[Path], tuple[bool, str]]
_RECOVERY_CHECKS: dict[str, RecoveryCheck] = {}


#: ``upgrade_schema(engine)``: bring a recovered database to the newest schema of every
#: package. Backups copy databases without knowing whose tables they hold, so the
#: composition root provides it (``appliance.schema.upgrade``, in ``appliance.backups``).
upgrade_schema = Hook("backup.upgrade_schema")


def register_recovery_check(name: str, check: RecoveryCheck) -> None:
    """Run ``check(data_dir)`` on every scratch appliance a recovery drill rebuilds."""
    _RECOVERY_CHECKS[name] = check


def registered_recovery_checks() -> list[tuple[str, RecoveryCheck]]:
    return list(_RECOVERY_CHECKS.items())


# -- key documents on the target -------------------------------------------------


def key_document(data_dir: Path) -> dict[str, Any]:
    """The wrapped key files of the appliance in ``data_dir``, as one document."""
    try:
        keyring = key_files.read_json(key_files.keyring_path(data_dir))
        seal = key_files.read_json(key_files.seal_path(data_dir))
    except (OSError, ValueError) as exc:
        raise BackupError(detail=f"the key files in {data_dir / 'keys'} cannot be read ({exc}); "
                          "a backup a new box could not open is not taken: check `appliance keys status`") from None
    cards = key_files.keys_dir(data_dir) / CARD_SHARES_DIR
    # shares sealed to officers' cards stay on the box; without them the cards open nothing
    card_shares = {p.name: key_files.read_json(p) for p in sorted(cards.glob("*.share"))} if cards.is_dir() else {}
    return {
        "format": KEY_FORMAT,
        "appliance_id": keyring.get("appliance_id"),
        "keyring": keyring,
        "seal": seal,
        "card_shares": card_shares,
    }


def _digest(document: dict[str, Any]) -> str:
    body = {k: v for k, v in document.items() if k != "written"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def store_key_document(target: Target, data_dir: Path) -> str | None:
    """Copy the wrapped key files to ``target`` unless an identical copy is there.

    Returns the name written, or None. Older documents are kept: an attacker who
    deletes the newest one makes recovery fail loudly (a key version is missing),
    never silently use a wrong key.
    """
    document = key_document(data_dir)
    digest = _digest(document)
    if any(name.endswith(f"-{digest}.json") for name in target.list(KEYS_PREFIX)):
        return None
    # microseconds: a rotation writes twice within a second, and names sort by time
    name = f"{KEYS_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{digest}.json"
    payload = {**document, "written": utc_now()}
    target.put(name, (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode())
    return name


def read_key_documents(target: Target) -> list[tuple[str, dict[str, Any]]]:
    """The key documents on ``target``, newest first; unreadable ones are skipped (and logged)."""
    found = []
    for name in sorted(target.list(KEYS_PREFIX), reverse=True):
        if not name.endswith(".json"):
            continue
        try:
            document = json.loads(target.get(name))
        except (FileNotFoundError, ValueError) as exc:
            log.warning("key document %s is unreadable: %s", name, exc)
            continue
        if not isinstance(document, dict) or document.get("format") != KEY_FORMAT:
            log.warning("key document %s has an unknown format", name)
            continue
        if not isinstance(document.get("keyring"), dict) or not isinstance(document.get("seal"), dict):
            log.warning("key document %s lacks the keyring or the seal", name)
            continue
        found.append((name, document))
    return found


def install_key_document(document: dict[str, Any], data_dir: Path) -> None:
    """Write the key files of ``document`` into ``data_dir/keys`` (the appliance stays sealed)."""
    key_files.write_json(key_files.keyring_path(data_dir), document["keyring"])
    key_files.write_json(key_files.seal_path(data_dir), document["seal"])
    shares = dict(document.get("card_shares") or {})
    for name, share in shares.items():
        if "/" in name or not name.endswith(".share"):
            raise BackupError(detail=f"the key document names an odd card share file {name!r}")
        key_files.write_json(key_files.keys_dir(data_dir) / CARD_SHARES_DIR / name, share)


# -- restoring a whole appliance --------------------------------------------------


def backup_keys_of(keyring: Any) -> BackupKeys:
    """The backup keys of an unsealed ``appliance.keys.Keyring``, every version included."""
    found = keyring.backup_keys()
    return BackupKeys(
        found.data_key,
        found.key_version,
        found.verify_key,
        found.signing_key,
        dict(found.previous),
        keyring.public_keys("backups"),
    )


def default_database_url(data_dir: Path) -> str:
    """Where an appliance keeps its database when ``database_url`` is empty."""
    return f"sqlite:///{Path(data_dir) / 'citadel.db'}"


@dataclass
class RestoredAppliance:
    """A rebuilt appliance: what was restored and whether its audit log verifies."""

    data_dir: Path
    archive_id: str
    database_url: str
    restore: RestoreResult
    audit_ok: bool
    audit_detail: str
    events: int = 0
    notes: list[str] = field(default_factory=list)


def restore_appliance(
    repo: Repository,
    archive_id: str,
    data_dir: Path,
    *,
    database_url: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> RestoredAppliance:
    """Restore ``archive_id`` as the appliance in ``data_dir`` (its keys already installed).

    The database goes to ``database_url`` (default: SQLite in ``data_dir``), the
    files into ``data_dir`` except the key files, which came newer from the key
    document. ``citadel.toml`` is rewritten to name the database just restored,
    the schema is brought up to date, the restore is recorded in the audit log
    and the log is verified against its restored anchor.
    """
    data_dir = Path(data_dir).resolve()
    url = database_url or default_database_url(data_dir)
    result = restore_archive(repo, archive_id, url, files_dir=data_dir, skip_files=KEY_FILES, progress=progress)
    notes = point_config_at(data_dir, url)
    audit_ok, detail, events = _finish(data_dir, archive_id, repo.target.label)
    return RestoredAppliance(data_dir, archive_id, url, result, audit_ok, detail, events, notes)


def point_config_at(data_dir: Path, database_url: str) -> list[str]:
    """Rewrite the restored ``citadel.toml`` to use ``database_url``; say what else changed."""
    path = data_dir / CONFIG_FILE
    values: dict[str, Any] = tomllib.loads(path.read_text()) if path.exists() else {}
    notes = []
    default = database_url == default_database_url(data_dir)
    values["database_url"] = "" if default else database_url
    if values.get("demo") and not key_files.demo_key_path(data_dir).exists():
        # a demo unseals from a key file that is never archived; the officers unseal this one
        values["demo"] = False
        notes.append("the original was a demo appliance; this one is unsealed by its key holders")
    write_initial(data_dir, values)  # also creates the session secret if the archive had none
    return notes


def _finish(data_dir: Path, archive_id: str, target_label: str) -> tuple[bool, str, int]:
    """Migrate, record the recovery in the audit log, and verify the log (anchor included)."""
    import audit
    from appliance.kernel.runtime import Appliance
    from audit.verify import verify

    appliance = Appliance.open(data_dir)
    try:
        upgrade_schema(appliance.engine)
        with appliance.session() as session:
            audit.record(session, "backup.restore", user=None,
                         meta={"archive": archive_id, "from": target_label, "recovery": "disaster"})
        with appliance.session() as session:
            report = verify(session, appliance.settings)
    finally:
        appliance.dispose()
    if report.ok:
        return True, f"audit log verifies ({report.end} events, {report.checkpoints} checkpoints)", report.end
    first = report.first
    return False, (f"audit log: {first.kind} at {first.position}: {first.detail}" if first
                   else "audit log does not verify"), report.end


# -- the scheduled recovery drill -------------------------------------------------


def recovery_drill(
    target: Target,
    unseal: Callable[[Path], Any],
    *,
    scratch_url: str | None = None,
    checks: Iterable[tuple[str, RecoveryCheck]] = (),
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Rebuild a scratch appliance from ``target`` alone, as a new machine would.

    ``unseal(data_dir)`` unseals the scratch data directory once the key
    document is in it and returns its keyring (officers' shares, the recovery
    key, or, scheduled, the master key already in memory). The newest verified
    archive is restored into it (a scratch SQLite file, or a fresh PostgreSQL
    database on ``scratch_url``), its audit log verified, then ``checks`` run
    on the scratch data directory (booting the appliance). Everything made is
    removed afterwards; the report says what passed.
    """
    from appliance.keys import sealing, state

    clock = time.perf_counter()
    report: dict[str, Any] = {"ok": False, "started": utc_now(), "archive_id": None, "key_document": None,
                              "audit": None, "checks": [], "error": None}
    scratch = Path(tempfile.mkdtemp(prefix=scratch_dirs.prefix("recovery-drill"), dir=workdir))
    data_dir = (scratch / "appliance").resolve()
    database_url = None
    try:
        previous = state.current()
    except CitadelError:
        previous = None
    try:
        documents = read_key_documents(target)
        if not documents:
            raise BackupError(detail=f"{target.label} holds no key document: a new box could not read it")
        report["key_document"], document = documents[0]
        install_key_document(document, data_dir)
        keyring = unseal(data_dir)
        repo = Repository.open(target, backup_keys_of(keyring))
        archive_id = report["archive_id"] = repo.resolve("latest")
        backend = repo.load_manifest(archive_id).get("database", {}).get("backend", SQLITE)
        database_url = _scratch_database(backend, scratch_url)
        restored = restore_appliance(repo, archive_id, data_dir, database_url=database_url)
        report["audit"] = {"ok": restored.audit_ok, "detail": restored.audit_detail}
        results = [_run(name, check, data_dir) for name, check in checks]
        report["checks"] = results
        report["ok"] = restored.audit_ok and all(r["ok"] for r in results)
    except CitadelError as exc:
        report["error"] = exc.message
    except Exception as exc:  # noqa: BLE001 - a drill reports every failure, it never crashes
        report["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            sealing.seal_now(data_dir)
        if previous is not None:
            state.install(previous)  # the live appliance keeps its keys
        if database_url and make_url(database_url).get_backend_name() != SQLITE:
            with contextlib.suppress(Exception):
                drop_postgres_database(database_url)
        shutil.rmtree(scratch, ignore_errors=True)
    report["finished"] = utc_now()
    report["seconds"] = round(time.perf_counter() - clock, 3)
    return report


def _scratch_database(backend: str, scratch_url: str | None) -> str | None:
    if backend != POSTGRESQL:
        return None  # SQLite in the scratch data directory
    if not scratch_url:
        raise BackupError(detail="a PostgreSQL recovery drill needs a scratch server ([backup] scratch_url)")
    import secrets

    name = f"citadel_recovery_{secrets.token_hex(6)}"
    return make_url(scratch_url).set(database=name).render_as_string(hide_password=False)


def _run(name: str, check: RecoveryCheck, data_dir: Path) -> dict[str, Any]:
    try:
        ok, detail = check(data_dir)
    except Exception as exc:  # noqa: BLE001 - a failing check is a finding
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return {"name": name, "ok": bool(ok), "detail": detail}
