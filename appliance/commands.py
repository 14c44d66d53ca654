"""The appliance's own commands: init, db, serve, demo, user."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from appliance import auth, keys
from appliance.kernel.cli import CliContext, data_dir_option, pass_appliance
from appliance.kernel.config import write_initial
from appliance.kernel.errors import ConfigError
from appliance.kernel.runtime import Appliance
from appliance.key_commands import init_interactive
from appliance.schema import is_current, upgrade
from crm.identity import Team, User
from crm.people import add_user, find_user
from crm.roles import seed_roles


def _hasher(appliance: Appliance):
    return auth.password_hasher(appliance.settings)


#: Written last by ``init --demo``: a demo data directory without it was interrupted.
DEMO_READY = "demo.ready"


@click.command()
@data_dir_option
@click.option("--database-url", default=None,
              help="SQLAlchemy URL of the database [default: SQLite in the data directory].")
@click.option("--demo", is_flag=True,
              help="Fill the appliance with the demo company; its keys unseal from a local file.")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True,
              help="Seed for the demo data (same seed, same company).")
@click.option("--accounts", type=click.IntRange(0, 1_000_000), default=20_000, show_default=True,
              help="How many demo accounts to generate.")
@click.option("--threshold", "-m", type=click.IntRange(1, 16), default=None,
              help="Key shares needed to unseal (M); with --holder, creates the keys now.")
@click.option("--holder", "holders", multiple=True,
              help="A key holder (repeat: N holders); each types a passphrase for their share file.")
@click.option("--share-dir", type=click.Path(file_okay=False), default=None,
              help="Where to write the share files [default: DATA_DIR/keys/shares].")
@click.option("--restore-from", "restore_from", default=None, metavar="TARGET",
              help="Rebuild a lost appliance from its backups: a target directory, or a target "
                   "name in --target-config.")
@click.option("--target-config", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="With --restore-from: a TOML file with [backup.targets.<name>] tables.")
@click.option("--archive", default="latest", show_default=True, help="With --restore-from: the archive.")
@click.option("--recovery-key", "use_recovery", is_flag=True,
              help="With --restore-from: unseal with the printed recovery key (asked for).")
@click.option("--share", "share_files", multiple=True, type=click.Path(dir_okay=False),
              help="With --restore-from: a holder's share file (repeat); default: key cards.")
@click.pass_obj
def init(ctx: CliContext, database_url: str | None, demo: bool, seed_value: int, accounts: int,
         threshold: int | None, holders: tuple[str, ...], share_dir: str | None,
         restore_from: str | None = None, target_config: Path | None = None, archive: str = "latest",
         use_recovery: bool = False, share_files: tuple[str, ...] = ()) -> None:
    """Create an appliance: data directory, configuration, keys, database schema, built-in roles.

    With --restore-from, rebuild it instead from a backup target and its key holders alone.
    """
    data_dir = ctx.data_dir
    if restore_from:
        from backup.cli import init_from_target

        init_from_target(data_dir, restore_from, target_config=target_config, database_url=database_url,
                         archive=archive, use_recovery=use_recovery, share_files=share_files)
        return
    if (data_dir / "citadel.toml").exists():
        raise ConfigError(detail=f"{data_dir} already holds an appliance; choose another "
                                 "--data-dir or remove it first.")
    if bool(threshold) != bool(holders) and not demo:
        raise ConfigError(detail="give both --threshold M and --holder NAME (N times), or neither "
                                 "and run `appliance keys init` later")
    _require_writable(data_dir)
    values: dict[str, Any] = {"database_url": database_url or "", "demo": demo,
                              "audit": {"signer": "keyring"}}
    if demo:
        values |= demo_settings(data_dir)
    write_initial(data_dir, values)
    appliance = ctx.appliance
    started = time.perf_counter()
    upgrade(appliance.engine)
    with appliance.session() as db:
        seed_roles(db)
    click.echo(f"Appliance created in {data_dir} ({appliance.engine.dialect.name}).")
    if demo:
        keys.init_keys(data_dir, threshold=0, holders=[], demo=True)
        keys.auto_unseal_demo(data_dir)
        click.secho(keys.DEMO_WARNING, fg="yellow", err=True)
        _seed_demo(appliance, seed_value, accounts)
    elif holders:
        init_interactive(appliance, threshold, list(holders),
                         Path(share_dir) if share_dir else data_dir / "keys" / "shares")
    else:
        click.echo("Next: create the keys with `appliance keys init --threshold M --holder NAME "
                   "[--holder NAME ...] --share-dir DIR`; the appliance stays sealed until then.")
    click.echo(f"Done in {time.perf_counter() - started:.1f} s.")


def demo_settings(data_dir: Path) -> dict[str, Any]:
    """What a demo appliance runs with beyond the defaults: plain http, a local backup target."""
    return {
        "secure_cookies": False,  # the demo is served over plain http on localhost
        "backup": {"target": "local", "schedule": "02:30",
                   "targets": {"local": {"type": "local", "path": str(data_dir / "backups")}}},
    }


def _require_writable(data_dir: Path) -> None:
    """Fail before writing anything when the data directory cannot be written."""
    existing = next((p for p in (data_dir, *data_dir.parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(detail=f"{existing} is not writable by this user; choose a --data-dir "
                                 "you can write to, or fix its permissions.")


def _seed_demo(appliance: Appliance, seed_value: int, accounts: int) -> None:
    from appliance import demo, demo_history

    click.echo(f"Generating the demo company (seed {seed_value}, {accounts} accounts)...")
    started = time.perf_counter()
    with appliance.session() as db:
        summary = demo.seed(db, _hasher(appliance), seed=seed_value, accounts=accounts)
    from appliance.worker import refresh_statistics

    refresh_statistics(appliance)
    click.echo(f"  {summary.users} users, {summary.accounts} accounts, {summary.contacts} "
               f"contacts, {summary.deals} deals, {summary.activities} activities "
               f"in {time.perf_counter() - started:.1f} s.")
    started = time.perf_counter()
    day = demo_history.stage(appliance, seed=seed_value)
    click.echo(f"  {day.history_events} audit events of {demo_history.HISTORY_DAYS} working days "
               f"before today; today {day.exporter} exported {day.exported_rows} accounts and "
               f"{day.scraper} read {day.scraped_rows} contacts through the API: {day.alerts} "
               f"alert(s) for the officers, in {time.perf_counter() - started:.1f} s.")
    (appliance.data_dir / "backup-requested").touch()  # the worker's first job: a backup and its drill
    (appliance.data_dir / DEMO_READY).write_text(f"seed {seed_value}\n")


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_appliance
def db_upgrade(appliance: Appliance) -> None:
    """Bring the database schema up to date (safe to run again)."""
    upgrade(appliance.engine)
    click.echo("Schema is current.")


@db.command("status")
@pass_appliance
def db_status(appliance: Appliance) -> None:
    """Say whether the schema is current; exit 1 if it needs `appliance db upgrade`."""
    current = is_current(appliance.engine)
    click.echo("Schema is current." if current else "Schema is outdated: run `appliance db upgrade`.")
    sys.exit(0 if current else 1)


@click.command()
@pass_appliance
@click.option("--bind", default=None, help="HOST:PORT to listen on [default from settings].")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes [default: from the CPU count].")
def serve(appliance: Appliance, bind: str | None, workers: int | None) -> None:
    """Serve the web UI and the API with gunicorn."""
    from appliance.server import ensure_free, run

    bind = bind or appliance.settings["bind"]
    ensure_free(bind)
    if appliance.settings["demo"]:
        click.secho(keys.DEMO_WARNING, fg="yellow", err=True)
    run(appliance, bind, workers or default_workers(appliance))


def default_workers(appliance: Appliance) -> int:
    """Two per core plus one; SQLite serialises writers, so fewer there."""
    cores = multiprocessing.cpu_count()
    if appliance.engine.dialect.name == "sqlite":
        return min(cores + 1, 4)
    return min(2 * cores + 1, 16)


@click.command()
@pass_appliance
@click.option("--once", is_flag=True, help="Run every job once, then exit (for cron or a check).")
def worker(appliance: Appliance, once: bool) -> None:
    """Run the scheduled jobs: audit checkpoints, backups and their drills, leak scoring."""
    import logging

    from appliance.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    job_runner = Worker(appliance)
    if once:
        from appliance.sealed import start

        start(appliance.settings)
        for name in job_runner.run_due():
            click.echo(f"ran {name}")
        return
    job_runner.run_forever()


@click.command()
@data_dir_option
@click.option("--seed", "seed_value", type=int, default=42, show_default=True,
              help="Seed for a new demo company (same seed, same company).")
@click.option("--accounts", type=click.IntRange(0, 1_000_000), default=20_000, show_default=True,
              help="How many accounts a new demo company has.")
@click.option("--bind", default=None,
              help="HOST:PORT to listen on [default: the bind setting, env CITADEL_BIND, 127.0.0.1:8000].")
@click.option("--cards", is_flag=True,
              help="Also show the smart-card step: the officer signs in with a virtual PIV card.")
@click.pass_context
def demo(click_ctx: click.Context, seed_value: int, accounts: int, bind: str | None,
         cards: bool) -> None:
    """Create the demo appliance if needed, then run it whole: the web UI and the worker.

    The worker beside the web signs audit checkpoints, makes the first backup and
    its restore drill, and scores leaks; Ctrl-C stops both.
    """
    from appliance.demo import DEMO_PASSWORD, NAMED_USERS
    from appliance.server import ensure_free, run

    ctx: CliContext = click_ctx.obj
    if not (ctx.data_dir / "citadel.toml").exists():
        _require_writable(ctx.data_dir)
        if bind:  # a busy port is found before a minute of generating, not after
            ensure_free(bind, hint=DEMO_PORT_HINT)
        click_ctx.invoke(init, database_url=None, demo=True, seed_value=seed_value,
                         accounts=accounts, threshold=None, holders=(), share_dir=None)
    appliance = ctx.appliance
    _check_demo_dir(appliance)
    bind = bind or appliance.settings["bind"]
    ensure_free(bind, hint=DEMO_PORT_HINT)
    card_demo = None
    if cards:  # pyscard and pcscd are needed only here
        from appliance.card_demo import start as start_card_demo

        card_demo = start_card_demo(appliance, f"http://{bind}")
    click.secho("\n  DEMO APPLIANCE: demo data, demo passwords, not for real clients.\n",
                fg="yellow", bold=True)
    click.echo(f"  Open http://{bind}/ and sign in as one of these (password for everyone: "
               f"{DEMO_PASSWORD}):")
    for username, full_name, roles, _team in NAMED_USERS:
        click.echo(f"    {username:<8} {full_name:<14} {', '.join(roles)}")
    if card_demo is not None:
        click.echo(f"  {card_demo.user} signs in with the virtual card {card_demo.describe()}.")
    click.echo("  Ctrl-C stops the web server and the worker.\n")
    worker_process = _start_worker(appliance)
    try:
        run(appliance, bind, default_workers(appliance))
    finally:
        _stop(worker_process)
        if card_demo is not None:
            card_demo.stop()


DEMO_PORT_HINT = ("choose a free port: `make demo PORT=8080`, `appliance demo --bind 127.0.0.1:8080`, "
                  "or the bind setting (CITADEL_BIND)")


def _check_demo_dir(appliance: Appliance) -> None:
    """A demo directory that is whole, of this version, and a demo at all."""
    data_dir = appliance.data_dir
    if not appliance.settings["demo"]:
        raise ConfigError(detail=f"{data_dir} is not a demo appliance; use `appliance serve`.")
    if not (data_dir / DEMO_READY).exists():
        raise ConfigError(detail=f"{data_dir} holds a demo that was interrupted while it was being "
                                 f"made; remove it (`rm -rf {data_dir}`) and run the demo again.")
    if not is_current(appliance.engine):
        raise ConfigError(detail=f"{data_dir} was made by another version of Citadel; run "
                                 f"`appliance db upgrade --data-dir {data_dir}`, or remove it for a "
                                 "fresh demo.")


def _start_worker(appliance: Appliance) -> subprocess.Popen[bytes]:
    """``appliance worker`` for the same data directory, as a child that Ctrl-C also reaches."""
    return subprocess.Popen([sys.executable, "-m", "appliance", "--data-dir",  # noqa: S603
                             str(appliance.data_dir), "worker"])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ask the worker to stop between jobs; end it if it does not within the grace time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- users -----------------------------------------------------------------
@click.group()
def user() -> None:
    """People who sign in: add, list, issue API tokens."""


@user.command("add")
@pass_appliance
@click.argument("username")
@click.option("--name", "full_name", default="", help="Full name.")
@click.option("--role", "roles", multiple=True, required=True,
              help="Role name (repeat for several): staff, manager, director, security_officer, "
                   "it_admin, auditor.")
@click.option("--team", default=None, help="Team name (created if missing).")
@click.option("--email", default="")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Asked for if not given; never put it on a shared command line.")
def user_add(appliance: Appliance, username: str, full_name: str, roles: tuple[str, ...],
             team: str | None, email: str, password: str) -> None:
    """Add a user."""
    with appliance.session() as db:
        import audit

        created = add_user(db, _hasher(appliance), username=username, full_name=full_name,
                           password=password, roles=list(roles), team=team, email=email)
        audit.record(db, "user.create", user=None, meta={
            "username": created.username, "roles": created.role_names, "via": "cli"})
    click.echo(f"User {username} added with role(s) {', '.join(roles)}.")


@user.command("list")
@pass_appliance
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def user_list(appliance: Appliance, as_json: bool) -> None:
    """List users with their roles, team and status."""
    with appliance.session() as db:
        teams = {t.id: t.name for t in db.scalars(select(Team))}
        rows = [{"username": u.username, "full_name": u.full_name, "roles": u.role_names,
                 "team": teams.get(u.team_id) if u.team_id else None, "status": _status(u)}
                for u in db.scalars(select(User).order_by(User.username))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['username']:<24} {r['status']:<10} {','.join(r['roles']):<20} "
                   f"{r['team'] or '-':<18} {r['full_name']}")


def _status(user: User) -> str:
    if user.offboarded_at:
        return "offboarded"
    if user.frozen_at:
        return "frozen"
    if user.notice_at:
        return "notice"
    return "active" if user.active else "disabled"


@user.command("token")
@pass_appliance
@click.argument("username")
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
def user_token(appliance: Appliance, username: str, name: str) -> None:
    """Print a new API bearer token for USERNAME, and nothing else."""
    import audit

    with appliance.session() as db:
        found = find_user(db, username)
        token = auth.issue_token(db, found, name)
        audit.record(db, "token.issue", user=found.username, meta={"name": name, "via": "cli"})
    click.echo(token)


def _restrictions(db, officer: str):  # noqa: ANN001, ANN202 - small local helper
    from crm.access import Policy
    from crm.restrictions import Restrictions

    return Restrictions(db, Policy(db, find_user(db, officer)), "cli")


@user.command("freeze")
@pass_appliance
@click.argument("username")
@click.option("--by", "officer", required=True, help="The security officer acting (their rights are checked).")
@click.option("--reason", required=True, help="Why; kept in the audit trail.")
@click.option("--release", is_flag=True, help="Lift the freeze instead.")
def user_freeze(appliance: Appliance, username: str, officer: str, reason: str, release: bool) -> None:
    """Make USERNAME read-only at once (no change, export or print), or --release them."""
    with appliance.session() as db:
        target = find_user(db, username)
        restrictions = _restrictions(db, officer)
        (restrictions.unfreeze if release else restrictions.freeze)(target.id, reason)
    click.echo(f"{username} is {'released' if release else 'frozen'}.")


@user.command("notice")
@pass_appliance
@click.argument("username")
@click.option("--by", "officer", required=True, help="The security officer acting.")
@click.option("--reason", required=True, help="E.g. resigned, last day 31 March.")
def user_notice(appliance: Appliance, username: str, officer: str, reason: str) -> None:
    """Start USERNAME's notice period: tighter export caps and closer monitoring."""
    with appliance.session() as db:
        _restrictions(db, officer).notice(find_user(db, username).id, reason)
    click.echo(f"{username} is in a notice period.")


@user.command("offboard")
@pass_appliance
@click.argument("username")
@click.option("--to", "successor", required=True, help="Who receives every record USERNAME owns.")
@click.option("--by", "officer", required=True, help="The security officer acting.")
@click.option("--reason", required=True)
def user_offboard(appliance: Appliance, username: str, successor: str, officer: str, reason: str) -> None:
    """Revoke USERNAME's sessions, tokens and cards now and give their records to --to."""
    with appliance.session() as db:
        moved = _restrictions(db, officer).offboard(find_user(db, username).id,
                                                    find_user(db, successor).id, reason)
    click.echo(f"{username} offboarded; reassigned to {successor}: "
               + ", ".join(f"{n} {kind}s" for kind, n in moved.items()) + ".")


#: The appliance's own commands, for the ``appliance`` group.
COMMANDS = (init, db, serve, worker, demo, user)
