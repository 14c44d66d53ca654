"""``appliance backup``: run, list, verify, restore and prune backups.

Every command needs the unsealed appliance: the backup data key and the
signing key come from its keyring (``appliance.keys``). Targets, files,
retention and the drill's scratch server come from ``[backup]`` in
citadel.toml (see ``backup.settings``).
"""

from __future__ import annotations

import getpass
import json
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
from appliance.kernel.runtime import Appliance
from backup.checks import registered_checks
from backup.errors import BackupError, DrillFailed, NoRepository
from backup.jobs import BackupOutcome, run_backup
from backup.keys import BackupKeys
from backup.repository import Repository
from backup.restore import restore_archive
from backup.retention import prune
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
    found = keyring.backup_keys()
    return BackupKeys(
        found.data_key,
        found.key_version,
        found.verify_key,
        found.signing_key,
        dict(found.previous),
        appliance_keys.read_public_keys(app.data_dir, "backups"),
    )


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
        yield settings, Repository.open(target, keys, create=create)
    finally:
        target.close()


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
        },
    )
    return outcome


def _describe(outcome: BackupOutcome) -> str:
    stats = outcome.manifest["stats"]
    return (
        f"archive {outcome.archive_id}: {outcome.record.status}; "
        f"{stats['bytes_in'] / 1e6:.1f} MB read, {stats['bytes_stored'] / 1e6:.1f} MB stored; "
        f"drill {outcome.report['seconds']:.1f} s"
    )


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
    rows = [{**r.as_dict(), "good": r.good, "drill_seconds": r.report.get("seconds")} for r in records]
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
    return sorted(rows, key=lambda r: r["archive_id"])


@backup.command("list")
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print the archives as JSON.")
@pass_appliance
def list_command(app: Appliance, target_name: str | None, as_json: bool) -> None:
    """List the archives on the target; only `verified` ones count as backups."""
    try:
        with _repository(app, target_name) as (_settings, repo):
            rows = _rows(repo)
    except NoRepository:
        rows = []
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No archives yet: run `appliance backup run`.")
        return
    click.echo(f"{'ARCHIVE':27} {'STATUS':11} {'STORED':>10} {'DRILL':>8}")
    for row in rows:
        size = f"{row['size'] / 1e6:.1f} MB" if row["size"] is not None else "-"
        drill = f"{row['drill_seconds']:.1f} s" if row["drill_seconds"] is not None else "-"
        color = "green" if row["good"] else "red"
        status = click.style(f"{row['status']:11}", fg=color)
        click.echo(f"{row['archive_id']:27} {status} {size:>10} {drill:>8}")


@backup.command("verify")
@click.argument("archive")
@target_option
@click.option("--json", "as_json", is_flag=True, help="Print the signed report as JSON.")
@pass_appliance
def verify_command(app: Appliance, archive: str, target_name: str | None, as_json: bool) -> None:
    """Run the verification drill on ARCHIVE (an id, a unique prefix, or `latest`)."""
    with _repository(app, target_name) as (settings, repo):
        archive_id = repo.resolve(archive)
        earlier = {r.archive_id: r for r in repo.catalogue()[0]}.get(archive_id)
        report = run_drill(
            repo,
            archive_id,
            scratch_url=scratch_url_for(app, settings),
            checks=registered_checks(),
            source_tables=earlier.report.get("source_tables") if earlier else None,
        )
        manifest_created = _created(repo, archive_id)
        repo.record(
            archive_id,
            "verified" if report["ok"] else "failed",
            manifest_created,
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
