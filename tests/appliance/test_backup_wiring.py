"""Backups of the appliance: every drill also checks schema, audit log and decryption;
the worker runs them on schedule; a failure raises an alert."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from appliance.backups import scheduled_backup
from appliance.cli import main
from backup.errors import BackupError
from crm.models import Account
from dlp.alerts import Alert


def _configure(appliance, tmp_path, **extra):
    appliance.settings.values["backup"] = {
        "target": "usb", "targets": {"usb": {"type": "local", "path": str(tmp_path / "usb")}}, **extra}


def _run(appliance, *args):
    runner = CliRunner()
    # the command reads its settings from the data dir; pass the backup table by environment
    env = {"CITADEL_BACKUP__TARGET": "usb",
           "CITADEL_BACKUP__TARGETS__USB__TYPE": "local",
           "CITADEL_BACKUP__TARGETS__USB__PATH": str(appliance.settings["backup"]["targets"]["usb"]["path"])}
    return runner.invoke(main, [*args, "--data-dir", str(appliance.data_dir)], env=env)


def test_backup_run_proves_schema_audit_and_keys_then_restores(appliance, make, db, tmp_path, database_url):
    alice = make.user("alice")
    for _ in range(5):
        make.account(alice, email="secret@client.example")
    _configure(appliance, tmp_path)
    result = _run(appliance, "backup", "run")
    assert result.exit_code == 0, result.output
    listed = json.loads(_run(appliance, "backup", "list", "--json").output)
    assert [row["status"] for row in listed] == ["verified"]
    report = json.loads(_run(appliance, "backup", "verify", listed[0]["archive_id"], "--json").output)
    checks = json.dumps(report)
    for name in ("schema-current", "audit-log", "fields-decrypt"):
        assert name in checks
    if database_url.startswith("postgresql"):
        target = make_url(database_url).set(database=f"restored_{uuid.uuid4().hex[:8]}").render_as_string(
            hide_password=False)
    else:
        target = f"sqlite:///{tmp_path / 'restored.db'}"
    restored = _run(appliance, "backup", "restore", listed[0]["archive_id"], "--to", target)
    assert restored.exit_code == 0, restored.output
    engine = create_engine(target.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Account.__table__)) == 5
    engine.dispose()
    if database_url.startswith("postgresql"):
        admin = create_engine(make_url(database_url).set(drivername="postgresql+psycopg", database="postgres"),
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(target).database}" WITH (FORCE)'))
        admin.dispose()


def test_the_worker_backs_up_when_due_and_alerts_when_it_fails(appliance, make, db, tmp_path):
    make.user("alice")
    _configure(appliance, tmp_path, schedule="00:00")
    (appliance.data_dir / "backup-last-run").write_text((datetime.now(UTC) - timedelta(days=2)).isoformat())
    assert scheduled_backup(appliance) is not None
    assert scheduled_backup(appliance) is None  # not due again today
    blocker = tmp_path / "not-a-disk"
    blocker.write_text("a file where the backup disk should be mounted")
    appliance.settings.values["backup"]["targets"]["usb"]["path"] = str(blocker / "usb")
    (appliance.data_dir / "backup-last-run").write_text((datetime.now(UTC) - timedelta(days=2)).isoformat())
    with pytest.raises(BackupError):
        scheduled_backup(appliance)
    alert = db.scalars(select(Alert).where(Alert.scenario == "backup-failed")).one()
    assert alert.severity == "high" and alert.user == "appliance"


def test_it_sees_backups_and_can_ask_for_one(appliance, app, make, login, tmp_path):
    make.user("ian", roles=("it_admin",), team=None)
    make.user("alice")
    _configure(appliance, tmp_path)
    ian = login("ian")
    page = ian.get("/backups").get_data(as_text=True)
    assert "No archives yet" in page or "No archives" in page
    assert ian.post("/backups/run", data={"csrf_token": ian.csrf}).status_code == 302
    assert (appliance.data_dir / "backup-requested").exists()
    assert scheduled_backup(appliance) is not None
    page = ian.get("/backups").get_data(as_text=True)
    assert "verified" in page
    assert login("alice").get("/backups").status_code == 403


def test_the_drill_checks_a_log_with_checkpoints_newer_than_the_snapshot(appliance, make, tmp_path):
    """Under load the anchor file, copied after the database, holds newer checkpoints."""
    import audit
    from audit.checkpoint import checkpoint_now

    make.user("alice")
    for n in range(3):
        with appliance.session() as db:
            audit.record(db, "login", user="alice", meta={"n": n})
        with appliance.session() as db:
            checkpoint_now(db, appliance.settings)
    _configure(appliance, tmp_path)
    assert _run(appliance, "backup", "run").exit_code == 0


def test_the_scheduled_recovery_drill_rebuilds_the_appliance_and_alerts_when_it_cannot(
        appliance, make, db, tmp_path, monkeypatch):
    import audit.query

    make.user("alice")
    _configure(appliance, tmp_path, schedule="00:00", recovery_drill_days=7)
    (appliance.data_dir / "backup-last-run").write_text((datetime.now(UTC) - timedelta(days=2)).isoformat())
    assert scheduled_backup(appliance) is not None
    assert (appliance.data_dir / "backup-last-recovery-drill").exists()
    drills = audit.query.search(db, audit.query.Search(action="backup.recovery_drill")).items
    assert [e["meta"]["ok"] for e in drills] == [True], drills
    assert not db.scalars(select(Alert).where(Alert.scenario == "backup-failed")).all()

    monkeypatch.setattr("backup.disaster.read_key_documents", lambda target: [])  # a target without keys
    (appliance.data_dir / "backup-last-recovery-drill").write_text(
        (datetime.now(UTC) - timedelta(days=8)).isoformat())
    (appliance.data_dir / "backup-last-run").write_text((datetime.now(UTC) - timedelta(days=2)).isoformat())
    assert scheduled_backup(appliance) is not None  # the backup itself is good
    alert = db.scalars(select(Alert).where(Alert.scenario == "backup-failed")).one()
    assert "recovery drill" in str(alert.reasons) and "no key document" in str(alert.reasons)
