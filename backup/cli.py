"""``appliance backup``: run, list, verify, restore and prune backups.

Every command needs the unsealed appliance: the backup data key and the
signing key come from its keyring (``appliance.keys``). Targets, files,
retention and the drill's scratch server come from ``[backup]`` in
citadel.toml (see ``backup.settings``).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from appliance.kernel.cli import pass_appliance
from appliance.kernel.errors import Sealed
from appliance.kernel.hooks import Hook
from appliance.kernel.runtime import Appliance
from backup.checks import registered_checks
from backup.disaster import backup_keys_of, store_key_document
from backup.errors import BackupError, BackupNotConfigured, DrillFailed, NoRepository, RepositoryRolledBack
from backup.jobs import BackupOutcome, run_backup
from backup.keys import BackupKeys
from backup.ledger import MissingArchive, missing_archives, report_missing, summary
from backup.repository import CONFIG, STATUS_UNVERIFIED, Repository
from backup.restore import restore_archive
from backup.retention import prune
from backup.scratch import remove_stale as remove_stale_scratch
from backup.settings import BackupSettings
from backup.snapshot import POSTGRESQL, backend_of, sqlite_path
from backup.targets import Target
from backup.verify import run_drill


def keys_from_appliance(app: Appliance) -> BackupKeys:
    """The backup keys of the unsealed appliance (``Sealed`` otherwise)."""
    from appliance import keys as appliance_keys

    keyring = appliance_keys.start(app.settings)
    if keyring is None:
        raise Sealed()
    return backup_keys_of(keyring)


def scratch_url_for(app: Appliance, settings: BackupSettings) -> str | None:
    """Where drills restore a PostgreSQL archive: ``[backup] scratch_url``, else the appliance's
    own server (its maintenance database; drills create and drop their own databases there)."""
    if settings.scratch_url or backend_of(app.settings.database_url) != POSTGRESQL:
        return settings.scratch_url
    return make_url(app.settings.database_url).set(database="postgres").render_as_string(hide_password=False)


def _audit(app: Appliance, action: str, meta: dict[str, Any]) -> None:
    """Record the backup operation in the audit log (after it happened)."""
    import audit

    try:
        with app.session() as session:
            audit.record(session, action, user=None, meta={"os_user": getpass.getuser(), **meta})
    except Exception as exc:  # noqa: BLE001 - the backup itself must not be lost over this
        click.secho(
            f"Warning: the audit event `{action}` could not be written ({exc}).",
            fg="yellow",
            err=True,
        )


@contextmanager
def _repository(
    app: Appliance, target_name: str | None, *, create: bool = False
) -> Iterator[tuple[BackupSettings, Repository]]:
    settings = BackupSettings.from_section(app.settings.section("backup"))
    keys = keys_from_appliance(app)
    target: Target = settings.open_target(target_name)
    try:
        if create and not target.exists(CONFIG):
            _refuse_to_start_over(app, target)
        yield settings, Repository.open(target, keys, create=create)
    finally:
        target.close()


def _refuse_to_start_over(app: Appliance, target: Target) -> None:
    """An empty target the audit log says held archives was wiped or swapped: never start over
    silently (the archives may come back; a new repository would hide that they are gone)."""
    missing = _missing(app, target)
    if missing:
        detail = summary(missing)
        _audit(app, "backup.missing", {"target": target.label, "archives": [m.archive_id for m in missing]})
        report_missing(app, f"backup target {target.label} lacks archives the audit log records: {detail}")
        raise RepositoryRolledBack(
            target=target.label,
            detail=f"{detail}; nothing was written: to start a new repository there anyway, run "
            "`appliance backup init-target --force`",
        )


@contextmanager
def _progress(label: str, length: int, *, shown: bool = True) -> Iterator[Callable[[int], None]]:
    if not shown:
        yield lambda _n: None
        return
    with click.progressbar(
        length=max(length, 1), label=label, file=sys.stderr, show_pos=False, show_percent=True
    ) as bar:
        yield bar.update


def _database_size(url: str) -> int:
    if backend_of(url) == POSTGRESQL:
        from sqlalchemy import create_engine, text

        from backup.snapshot import sqlalchemy_url

        engine = create_engine(sqlalchemy_url(url))
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
        finally:
            engine.dispose()
    path = sqlite_path(url)
    return path.stat().st_size if path.exists() else 0


target_option = click.option(
    "--target",
    "target_name",
    default=None,
    help="A target named in [backup.targets]; default [backup] target.",
)


@click.group("backup")
def backup() -> None:
    """Encrypted backups, each proven restorable before it counts."""


def _take_backup(
    app: Appliance, settings: BackupSettings, repo: Repository, *, progress_bar: bool = True
) -> BackupOutcome:
    url = app.settings.database_url
    # the wrapped keys go first: an archive on a target without them dies with the box
    store_key_document(repo.target, app.data_dir)
    with _progress("Backing up", _database_size(url), shown=progress_bar) as progress:
        outcome = run_backup(
            repo.target,
            repo.keys,
            url,
            data_dir=app.data_dir,
            files=settings.files,
            files_required=settings.files_required,
            scratch_url=scratch_url_for(app, settings),
            checks=registered_checks(),
            workers=settings.workers,
            progress=progress,
        )
    _audit(
        app,
        "backup.run",
        {
            "archive": outcome.archive_id,
            "status": outcome.record.status,
            "target": repo.target.label,
            **({"healed": outcome.healed, "reverified": outcome.reverified} if outcome.healed else {}),
        },
    )
    return outcome


def _describe(outcome: BackupOutcome) -> str:
    stats = outcome.manifest["stats"]
    text = (
        f"archive {outcome.archive_id}: {outcome.record.status}; "
        f"{stats['bytes_in'] / 1e6:.1f} MB read, {stats['bytes_stored'] / 1e6:.1f} MB stored; "
        f"drill {outcome.report['seconds']:.1f} s"
    )
    if outcome.healed:
        text += f"; healed {len(outcome.healed)} damaged pack(s), their chunks stored anew: {', '.join(outcome.healed)}"
    repacked = outcome.manifest.get("repacked") or []
    if repacked:
        text += f"; {len(repacked)} sparse pack(s) not reused, so prune can reclaim them"
    if outcome.reverified:
        text += "; drilled again: " + ", ".join(f"{a} {s}" for a, s in outcome.reverified.items())
    return text


@backup.command("run")
@target_option
@click.option("--no-prune", is_flag=True, help="Keep every archive (skip retention).")
@pass_appliance
def run_command(app: Appliance, target_name: str | None, no_prune: bool) -> None:
    """Back up the database and files, then restore it into scratch space and compare."""
    outcome = backup_appliance(app, target_name, prune_after=not no_prune, progress_bar=True)
    click.echo(_describe(outcome))


def backup_appliance(
    app: Appliance,
    target_name: str | None = None,
    *,
    prune_after: bool = True,
    progress_bar: bool = False,
) -> BackupOutcome:
    """One scheduled or manual backup of the appliance: back up, drill, record, prune.

    What ``appliance worker`` calls when ``[backup] schedule`` is due. Raises
    ``BackupError`` when the drill failed (the archive is recorded as failed).
    """
    with _repository(app, target_name, create=True) as (settings, repo):
        missing = _missing(app, repo.target)
        if missing:  # a new backup is still worth taking; the loss is reported all the same
            click.secho(f"Warning: {summary(missing)} on {repo.target.label}.", fg="red", err=True)
            _audit(app, "backup.missing", {"target": repo.target.label, "archives": [m.archive_id for m in missing]})
            report_missing(app, f"backup target {repo.target.label} lacks archives the audit log records: "
                           f"{summary(missing)}")
        outcome = _take_backup(app, settings, repo, progress_bar=progress_bar)
        if not outcome.good:
            differing = sorted(name for name, table in (outcome.report.get("tables") or {}).items()
                               if not table.get("ok", True))
            failed_checks = [str(c) for c in outcome.report.get("checks", []) if isinstance(c, dict)
                             and not c.get("ok", True)]
            detail = outcome.report.get("error") or (
                "restored data differs from the snapshot"
                + (f" in {', '.join(differing)}" if differing else "")
                + (f"; failed checks: {'; '.join(failed_checks)}" if failed_checks else ""))
            if outcome.record.status == STATUS_UNVERIFIED:
                raise BackupError(
                    detail=f"archive {outcome.archive_id} could not be verified ({detail}); it is kept, "
                    "unproven: fix that, then run `appliance backup verify "
                    f"{outcome.archive_id}`; the previous good archive is still the one to restore"
                )
            raise DrillFailed(
                detail=f"archive {outcome.archive_id} failed its drill: {detail}; "
                f"the previous good archive is still the one to restore"
            )
        if prune_after:
            plan = prune(repo, settings.keep)
            if plan.delete:
                _audit(app, "backup.prune", {"deleted": plan.delete})
    return outcome


def _rows(repo: Repository) -> list[dict[str, Any]]:
    records, bad = repo.catalogue()
    listed = {r.archive_id for r in records}
    present = set(repo.archive_ids())
    # a record whose manifest is gone describes an archive that can no longer be restored
    rows = [{**r.as_dict(), "good": r.good and r.archive_id in present,
             "status": r.status if r.archive_id in present else "manifest-missing",
             "drill_seconds": r.report.get("seconds")} for r in records]
    for row in rows:
        row.pop("report")
    for archive_id in repo.started_archive_ids():
        if archive_id not in listed:
            complete = archive_id in repo.archive_ids()
            rows.append(
                {
                    "archive_id": archive_id,
                    "status": "unverified" if complete else "incomplete",
                    "good": False,
                    "created": None,
                    "finished": None,
                    "size": None,
                    "drill_seconds": None,
                }
            )
    rows += [
        {
            "archive_id": name,
            "status": "bad-record",
            "good": False,
            "created": None,
            "finished": None,
            "size": None,
            "drill_seconds": None,
        }
        for name in bad
    ]
    return sorted(rows, key=_in_order_made)


def _in_order_made(row: dict[str, Any]) -> tuple[str, str]:
    """Oldest first: archive ids tell the second, the record's creation time (when known)
    the microsecond, so two archives made in one second are listed in the order made."""
    return row["archive_id"][:16], row.get("created") or ""


@backup.command("list")
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print the archives as JSON.")
@pass_appliance
def list_command(app: Appliance, target_name: str | None, as_json: bool) -> None:
    """List the archives on the target; only `verified` ones count as backups."""
    settings = BackupSettings.from_section(app.settings.section("backup"))
    keys = keys_from_appliance(app)
    with settings.open_target(target_name) as target:
        try:
            rows = _rows(Repository.open(target, keys))
        except NoRepository:
            rows = []
        missing = _missing(app, target)
    listed = {r["archive_id"] for r in rows}
    rows = sorted(rows + [_missing_row(m) for m in missing if m.archive_id not in listed], key=_in_order_made)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo("No archives yet: run `appliance backup run`.")
    else:
        click.echo(f"{'ARCHIVE':27} {'STATUS':16} {'STORED':>10} {'DRILL':>8}")
        for row in rows:
            size = f"{row['size'] / 1e6:.1f} MB" if row["size"] is not None else "-"
            drill = f"{row['drill_seconds']:.1f} s" if row["drill_seconds"] is not None else "-"
            color = "green" if row["good"] else "red"
            status = click.style(f"{row['status']:16}", fg=color)
            click.echo(f"{row['archive_id']:27} {status} {size:>10} {drill:>8}")
    _fail_if_missing(app, target.label, missing)


def _missing(app: Appliance, target: Target) -> list[MissingArchive]:
    """Archives the audit log records on ``target`` that it no longer holds."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with app.session() as session:
            return missing_archives(session, target)
    except SQLAlchemyError as exc:
        click.secho(f"Warning: the audit log could not be read to check the target ({exc.__class__.__name__}).",
                    fg="yellow", err=True)
        return []


def _missing_row(missing: MissingArchive) -> dict[str, Any]:
    return {"archive_id": missing.archive_id, "status": "missing", "good": False, "created": missing.recorded,
            "finished": None, "size": None, "drill_seconds": None, "lacks": missing.lacks}


def _fail_if_missing(app: Appliance, label: str, missing: list[MissingArchive]) -> None:
    """Deleted or rolled-back archives: say which, alert officers and IT, exit 1."""
    if not missing:
        return
    detail = summary(missing)
    for item in missing:
        click.secho(f"MISSING: {item.describe()}", fg="red", err=True)
    click.secho(f"Backup target {label} lacks archives the audit log records: it was deleted from or "
                "rolled back to older contents. The officers are alerted.", fg="red", err=True)
    _audit(app, "backup.missing", {"target": label, "archives": [m.archive_id for m in missing]})
    report_missing(app, f"backup target {label} lacks archives the audit log records: {detail}")
    raise SystemExit(1)


@backup.command("verify")
@click.argument("archive")
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print the signed report as JSON.")
@pass_appliance
def verify_command(app: Appliance, archive: str, target_name: str | None, as_json: bool) -> None:
    """Run the verification drill on ARCHIVE (an id, a unique prefix, or `latest`)."""
    remove_stale_scratch()
    with _repository(app, target_name) as (settings, repo):
        missing = _missing(app, repo.target)
        if missing and archive == "latest":
            _fail_if_missing(app, repo.target.label, missing)  # "latest" on the target is not the latest
        archive_id = repo.resolve(archive)
        earlier = {r.archive_id: r for r in repo.catalogue()[0]}.get(archive_id)
        report = run_drill(
            repo,
            archive_id,
            scratch_url=scratch_url_for(app, settings),
            checks=registered_checks(),
            source_tables=earlier.report.get("source_tables") if earlier else None,
        )
        if report.get("could_not_verify"):
            # the environment failed, not the archive: its record (and retention) stay as they were
            _audit(app, "backup.verify", {"archive": archive_id, "ok": False, "could_not_verify": True})
            click.echo(f"archive {archive_id}: could not verify ({report['error']}); nothing is known "
                       "against the archive and its record is unchanged: fix that, then run this again")
            raise SystemExit(2)
        repo.record(
            archive_id,
            "verified" if report["ok"] else "failed",
            _created(repo, archive_id),
            _stored(repo, archive_id),
            report,
        )
    _audit(app, "backup.verify", {"archive": archive_id, "ok": report["ok"]})
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        tables = sum(1 for t in report["tables"].values() if t["ok"])
        click.echo(
            f"archive {archive_id}: {'verified' if report['ok'] else 'FAILED'}; "
            f"{report.get('packs', 0)} packs and {report.get('chunks', 0)} chunks "
            f"authenticated; {tables}/{len(report['tables'])} tables match; "
            f"{report['seconds']:.1f} s"
        )
        for check in report["checks"]:
            click.echo(f"  {'ok  ' if check['ok'] else 'FAIL'} {check['name']} {check['detail']}")
        if report.get("error"):
            click.echo(f"  error: {report['error']}")
    if not report["ok"]:
        raise SystemExit(1)
    _fail_if_missing(app, repo.target.label, missing)


def _created(repo: Repository, archive_id: str) -> str:
    try:
        return repo.load_manifest(archive_id)["created"]
    except BackupError:
        return "1970-01-01T00:00:00.000000Z"


def _stored(repo: Repository, archive_id: str) -> int:
    try:
        manifest = repo.load_manifest(archive_id)
    except BackupError:
        return 0
    return sum(p["size"] for p in manifest["packs"] if p["archive"] == archive_id)


@backup.command("restore")
@click.argument("archive")
@click.option("--to", "to_url", required=True, help="The database URL to restore into (a new one).")
@click.option(
    "--files-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also restore the archived files (attachments, config, wrapped keys) here.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace a non-empty database (over the live one, a fresh backup is taken first).",
)
@target_option
@pass_appliance
def restore_command(
    app: Appliance,
    archive: str,
    to_url: str,
    files_dir: Path | None,
    force: bool,
    target_name: str | None,
) -> None:
    """Restore ARCHIVE into the database at --to and print the time it took (RTO)."""
    backend_of(to_url)
    with _repository(app, target_name) as (settings, repo):
        archive_id = repo.resolve(archive)
        status = {r.archive_id: r.status for r in repo.catalogue()[0]}.get(archive_id, "unverified")
        if status != "verified":
            click.secho(
                f"Warning: archive {archive_id} is {status}, not verified; its data is still "
                "authenticated while it is restored.",
                fg="yellow",
                err=True,
            )
        if force and _same_database(to_url, app.settings.database_url):
            click.echo("Taking a backup of the live database before replacing it ...")
            before = _take_backup(app, settings, repo)
            click.echo(_describe(before))
            if not before.good:
                raise DrillFailed(detail="the safety backup failed its drill; nothing was replaced")
        length = repo.load_manifest(archive_id)["stats"]["bytes_in"]
        with _progress("Restoring", length) as progress:
            result = restore_archive(repo, archive_id, to_url, files_dir=files_dir, force=force, progress=progress)
    _audit(
        app,
        "backup.restore",
        {"archive": archive_id, "to": result.database, "rto_seconds": round(result.seconds, 3)},
    )
    click.echo(
        f"Restored archive {archive_id} into {result.database} "
        f"({result.bytes / 1e6:.1f} MB{f', {len(result.files)} files' if result.files else ''})."
    )
    click.echo(f"RTO: {result.seconds:.2f} s")


def _same_database(a: str, b: str) -> bool:
    ua, ub = make_url(a), make_url(b)
    if ua.get_backend_name() != ub.get_backend_name():
        return False
    if ua.get_backend_name() == "sqlite":
        return sqlite_path(ua).resolve() == sqlite_path(ub).resolve()
    return (ua.host, ua.port or 5432, ua.database) == (ub.host, ub.port or 5432, ub.database)


@backup.command("prune")
@target_option
@click.option("--dry-run", is_flag=True, help="Only show what would be deleted.")
@click.option(
    "--grace-hours",
    type=float,
    default=6.0,
    show_default=True,
    help="Leave archives younger than this alone (they may still be uploading).",
)
@pass_appliance
def prune_command(app: Appliance, target_name: str | None, dry_run: bool, grace_hours: float) -> None:
    """Apply the retention policy ([backup.keep]) and remove interrupted uploads."""
    from backup.retention import plan_prune

    with _repository(app, target_name) as (settings, repo):
        grace = timedelta(hours=grace_hours)
        plan = (plan_prune if dry_run else prune)(repo, settings.keep, grace=grace)
    if not dry_run:
        _audit(app, "backup.prune", {"deleted": plan.delete})
    click.echo(json.dumps(plan.as_dict(), indent=2))


# -- disaster recovery: a new appliance from the target alone -----------------------


def recovery_target(spec: str, target_config: Path | None) -> Target:
    """The target to recover from: a directory, or a target named in ``target_config``.

    ``target_config`` is a TOML file with ``[backup.targets.<name>]`` tables, as
    in citadel.toml (keep a copy of that section with the recovery key).
    """
    from backup.targets import open_target
    from backup.targets.local import LocalTarget

    if target_config is not None:
        import tomllib

        try:
            document = tomllib.loads(target_config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BackupNotConfigured(detail=f"cannot read {target_config}: {exc}") from None
        targets = dict((document.get("backup") or {}).get("targets") or {})
        if spec not in targets:
            raise BackupNotConfigured(
                detail=f"{target_config} has no [backup.targets.{spec}] "
                f"(it has: {', '.join(sorted(targets)) or 'none'})"
            )
        return open_target(spec, targets[spec])
    if "://" in spec or not Path(spec).is_dir():
        raise BackupNotConfigured(
            detail=f"{spec!r} is not a directory; for SFTP or S3 give the target's name and "
            "--target-config FILE holding its [backup.targets.<name>] table"
        )
    return LocalTarget(spec, create=False)


#: How `appliance keys unseal` asks the officers: ``unseal_with_cards(app, unsealer)`` and
#: ``add_share(unsealer, path)``. A new box rebuilt from a target unseals the same way; the
#: composition root provides them (``appliance.key_commands``, in ``appliance.backups``).
unseal_prompts = Hook("backup.unseal_prompts")


def _unseal_new_box(data_dir: Path, documents: list[tuple[str, dict[str, Any]]], use_recovery: bool,
                    share_files: tuple[str, ...]) -> Any:
    """Unseal the key files copied from the target, as `appliance keys unseal` does."""
    from types import SimpleNamespace

    from appliance.keys import sealing
    from appliance.keys.errors import WrongMasterKey
    from backup.disaster import install_key_document

    if use_recovery:
        text = click.prompt("Recovery key", hide_input=True, err=True)
        for _name, document in documents:  # newest first; an older one may predate a reshare
            install_key_document(document, data_dir)
            try:
                return sealing.unseal_with_recovery(data_dir, text)
            except WrongMasterKey:
                continue
        raise WrongMasterKey(source="recovery key")
    install_key_document(_document_for_shares(documents, share_files), data_dir)
    unsealer = sealing.Unsealer(data_dir)
    click.echo(f"{unsealer.threshold} share holders are needed; holders: {', '.join(unsealer.remaining_holders())}.")
    if not share_files:
        unseal_prompts.unseal_with_cards(SimpleNamespace(data_dir=data_dir), unsealer)
    queue = [Path(p) for p in share_files]
    while unsealer.missing:
        path = queue.pop(0) if queue else Path(click.prompt(
            f"Share file ({unsealer.missing} more needed)", type=click.Path(dir_okay=False), err=True))
        if unseal_prompts.add_share(unsealer, path):
            click.echo(f"Share accepted ({len(unsealer.given)} of {unsealer.threshold}).")
    return unsealer.finish()


def _document_for_shares(documents: list[tuple[str, dict[str, Any]]], share_files: tuple[str, ...]) -> dict[str, Any]:
    """The newest key document of the appliance the share files belong to (the newest of all
    without share files): a document planted by someone else is passed over."""
    from appliance.keys.sealing import ShareEnvelope

    owners = {ShareEnvelope.load(Path(p)).appliance_id for p in share_files}
    for _name, document in documents:
        if not owners or document.get("appliance_id") in owners:
            return document
    raise BackupError(detail="no key document on the target belongs to the appliance of these share files")


def init_from_target(
    data_dir: Path,
    spec: str,
    *,
    target_config: Path | None = None,
    database_url: str | None = None,
    archive: str = "latest",
    use_recovery: bool = False,
    share_files: tuple[str, ...] = (),
) -> None:
    """`appliance init --restore-from TARGET`: rebuild the appliance into an empty data directory.

    On any failure everything this made in ``data_dir`` is removed again, so the
    command can simply be run again.
    """
    import shutil

    from appliance.keys import sealing
    from backup.disaster import read_key_documents, restore_appliance

    data_dir = Path(data_dir).resolve()
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(detail=f"{data_dir} is not empty; restore into a new, empty --data-dir")
    if database_url:
        backend_of(database_url)
    target = recovery_target(spec, target_config)
    created = not data_dir.exists()
    try:
        documents = read_key_documents(target)
        if not documents:
            raise BackupError(
                detail=f"{target.label} holds no key document (keys/): it was written before backups "
                "copied the wrapped keys; copy keys/keyring.json and keys/seal.json from the old box"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        keyring = _unseal_new_box(data_dir, documents, use_recovery, share_files)
        repo = Repository.open(target, backup_keys_of(keyring))
        archive_id = repo.resolve(archive)
        status = {r.archive_id: r.status for r in repo.catalogue()[0]}.get(archive_id, "unverified")
        if status != "verified":
            click.secho(f"Warning: archive {archive_id} is {status}, not verified.", fg="yellow", err=True)
        length = repo.load_manifest(archive_id)["stats"]["bytes_in"]
        with _progress("Restoring", length) as progress:
            restored = restore_appliance(repo, archive_id, data_dir, database_url=database_url, progress=progress)
    except BaseException:
        with contextlib.suppress(Exception):  # cleaning up must not hide the error reported
            sealing.seal_now(data_dir)
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            for child in data_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        raise
    finally:
        target.close()
    click.echo(
        f"Restored archive {archive_id} from {target.label} into {data_dir} "
        f"(database {restored.restore.database}, {len(restored.restore.files)} files, "
        f"{restored.restore.seconds:.1f} s)."
    )
    for note in restored.notes:
        click.echo(f"Note: {note}.")
    if not restored.audit_ok:
        click.secho(f"The restored {restored.audit_detail}: do not trust this copy; "
                    "try an older archive with --archive ID.", fg="red", err=True)
        raise SystemExit(1)
    click.echo(f"The restored {restored.audit_detail}. The appliance is unsealed; check [backup.targets] "
               "in citadel.toml before the next backup.")


def recovery_drill_appliance(app: Appliance, target_name: str | None = None) -> dict[str, Any]:
    """Rebuild this appliance from the target alone into scratch space, boot it, verify its log.

    The unseal step uses the master key already in memory: the officers' shares
    and the recovery key open the same seal document, which the drill checks is
    the one on the target.
    """
    from appliance import keys as appliance_keys
    from backup.disaster import recovery_drill, registered_recovery_checks

    keyring = appliance_keys.start(app.settings)
    if keyring is None:
        raise Sealed()
    settings = BackupSettings.from_section(app.settings.section("backup"))
    target = settings.open_target(target_name)
    try:
        store_key_document(target, app.data_dir)  # the drill proves what the target holds now
        report = recovery_drill(
            target,
            lambda data_dir: appliance_keys.unseal_copy(keyring, data_dir),
            scratch_url=scratch_url_for(app, settings),
            checks=registered_recovery_checks(),
        )
    finally:
        target.close()
    _audit(app, "backup.recovery_drill",
           {"archive": report["archive_id"], "ok": report["ok"], "error": report["error"], "target": target.label})
    return report


@backup.command("recovery-drill")
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print the drill's report as JSON.")
@pass_appliance
def recovery_drill_command(app: Appliance, target_name: str | None, as_json: bool) -> None:
    """Rebuild the appliance from the target alone in scratch space, boot it and verify its audit log."""
    report = recovery_drill_appliance(app, target_name)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        word = "passed" if report["ok"] else "FAILED"
        click.echo(f"recovery drill {word}: archive {report['archive_id']}, {report['seconds']:.1f} s")
        if report["audit"]:
            click.echo(f"  {'ok  ' if report['audit']['ok'] else 'FAIL'} audit {report['audit']['detail']}")
        for check in report["checks"]:
            click.echo(f"  {'ok  ' if check['ok'] else 'FAIL'} {check['name']} {check['detail']}")
        if report["error"]:
            click.echo(f"  error: {report['error']}")
    if not report["ok"]:
        raise SystemExit(1)


@backup.command("init-target")
@target_option
@click.option("--force", is_flag=True,
              help="Start a new repository even over archives or a lost config (they become unreadable).")
@pass_appliance
def init_target_command(app: Appliance, target_name: str | None, force: bool) -> None:
    """Start a new, empty repository on the target (only explicitly: a lost config is no reason).

    Archives of an earlier repository there stay, unreadable with the new config,
    and are written off in the audit log; prune removes them once they are older
    than its grace period.
    """
    from backup.repository import holds_repository_objects

    settings = BackupSettings.from_section(app.settings.section("backup"))
    keys = keys_from_appliance(app)
    with settings.open_target(target_name) as target:
        existing = target.exists(CONFIG) or holds_repository_objects(target) or bool(_missing(app, target))
        if existing and not force:
            raise BackupError(
                detail=f"{target.label} already holds a repository, archives, or archives the audit log "
                "records; a new repository makes them unreadable: pass --force to start one anyway"
            )
        repo = Repository.initialise(target, keys)
        store_key_document(target, app.data_dir)
    _audit(app, "backup.init_target", {"target": target.label, "repo_id": repo.repo_id.hex(), "forced": force})
    click.echo(f"New repository {repo.repo_id.hex()} on {target.label}; the next `appliance backup run` fills it.")
