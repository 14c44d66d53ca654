"""Deleted archives, a rolled-back target and a lost repository config are loud: the audit log's
record of every backup run is compared with the target."""

from __future__ import annotations

import json
import shutil

from click.testing import CliRunner
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from appliance.cli import main
from tests.backup.test_cli import box  # noqa: F401 - the CLI appliance fixture


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _two_backups(data):
    for _ in range(2):
        assert run("backup", "run", "--data-dir", str(data)).exit_code == 0
    return [r["archive_id"] for r in json.loads(run("backup", "list", "--json", "--data-dir", str(data)).stdout)]


def _target(data):
    return data.parent / "target"


def _alerts(url):
    from dlp.alerts import Alert

    engine = create_engine(url)
    with Session(engine) as db:
        found = [a.reasons for a in db.scalars(select(Alert).where(Alert.scenario == "backup-failed"))]
    engine.dispose()
    return found


def test_a_deleted_newest_archive_is_named_and_alerted(box):  # noqa: F811
    data, url = box
    first, newest = _two_backups(data)
    shutil.rmtree(_target(data) / "archives" / newest)
    (_target(data) / "catalogue" / f"{newest}.json").unlink()
    listed = run("backup", "list", "--data-dir", str(data))
    assert listed.exit_code == 1
    assert f"MISSING: archive {newest}" in listed.output and "rolled back" in listed.output
    verified = run("backup", "verify", "latest", "--data-dir", str(data))
    assert verified.exit_code == 1 and newest in verified.output
    assert any(newest in str(reasons) for reasons in _alerts(url))
    rows = json.loads(run("backup", "list", "--json", "--data-dir", str(data)).stdout)
    assert {r["archive_id"]: r["status"] for r in rows} == {first: "verified", newest: "missing"}


def test_a_target_rolled_back_to_yesterdays_copy_is_caught(box, tmp_path):  # noqa: F811
    data, _url = box
    assert run("backup", "run", "--data-dir", str(data)).exit_code == 0
    yesterday = tmp_path / "yesterday"
    shutil.copytree(_target(data), yesterday)
    newest = _two_backups(data)[-1]
    shutil.rmtree(_target(data))
    shutil.copytree(yesterday, _target(data))
    listed = run("backup", "list", "--data-dir", str(data))
    assert listed.exit_code == 1 and newest in listed.output
    # an explicitly named older archive still verifies, but the run says the newest is gone
    verified = run("backup", "verify", json.loads(run("backup", "list", "--json", "--data-dir", str(data)).stdout)[0]
                   ["archive_id"], "--data-dir", str(data))
    assert verified.exit_code == 1 and "verified" in verified.output and newest in verified.output


def test_a_deleted_manifest_is_not_listed_good(box):  # noqa: F811
    data, _url = box
    newest = _two_backups(data)[-1]
    (_target(data) / "archives" / newest / "manifest").unlink()
    listed = run("backup", "list", "--json", "--data-dir", str(data))
    assert listed.exit_code == 1
    row = next(r for r in json.loads(listed.stdout) if r["archive_id"] == newest)
    assert not row["good"] and row["status"] != "verified"


def test_a_lost_config_never_starts_a_new_repository(box):  # noqa: F811
    data, _url = box
    archives = _two_backups(data)
    (_target(data) / "config").unlink()
    refused = run("backup", "run", "--data-dir", str(data))
    assert refused.exit_code == 2
    assert "no repository config" in refused.output and "appliance backup init-target --force" in refused.output
    assert not (_target(data) / "config").exists()
    assert sorted(p.name for p in (_target(data) / "archives").iterdir()) == sorted(archives)
    assert run("backup", "init-target", "--data-dir", str(data)).exit_code != 0
    assert not (_target(data) / "config").exists()
    started = run("backup", "init-target", "--force", "--data-dir", str(data))
    assert started.exit_code == 0, started.output
    # the old repository's archives stay, unreadable, until prune removes them after the grace period
    assert run("backup", "run", "--no-prune", "--data-dir", str(data)).exit_code == 0
    assert run("backup", "list", "--data-dir", str(data)).exit_code == 0  # the old ones were written off


def test_a_wiped_target_is_not_silently_reused(box):  # noqa: F811
    data, _url = box
    newest = _two_backups(data)[-1]
    shutil.rmtree(_target(data))
    _target(data).mkdir()
    refused = run("backup", "run", "--data-dir", str(data))
    assert refused.exit_code == 2 and newest in refused.output and "init-target --force" in refused.output
    assert not (_target(data) / "config").exists()
    listed = run("backup", "list", "--data-dir", str(data))
    assert listed.exit_code == 1 and newest in listed.output


def test_an_intact_target_lists_cleanly(box):  # noqa: F811
    data, _url = box
    _two_backups(data)
    assert run("backup", "list", "--data-dir", str(data)).exit_code == 0
    assert run("backup", "verify", "latest", "--data-dir", str(data)).exit_code == 0
