"""A failure of the environment never condemns a good archive; killed runs and failed restores
leave nothing behind; retention keeps the last N and everything within a time."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url

from appliance.cli import main
from appliance.kernel.db import make_engine
from backup import scratch
from backup.errors import ArchiveDamaged, BackupError, TargetFull, TargetUnavailable
from backup.jobs import run_backup
from backup.repository import STATUS_UNVERIFIED, STATUS_VERIFIED, Repository
from backup.restore import restore_archive
from backup.retention import Policy, keep, plan_prune
from backup.verify import environmental, run_drill
from tests.backup.conftest import add_rows
from tests.backup.test_cli import box  # noqa: F401 - the CLI appliance fixture
from tests.backup.test_roundtrip import new_database_url


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_environmental_failures_are_told_from_damage():
    assert environmental(OSError(errno.ENOSPC, "No space left on device"))
    assert environmental(TargetUnavailable(target="usb", detail="unreachable"))
    assert environmental(TargetFull(target="usb", detail="full"))
    assert environmental(ConnectionRefusedError())
    assert environmental(BrokenProcessPool("a digest worker was killed"))
    assert environmental(BackupError(detail="pg_restore failed: could not extend file: No space left on device"))
    assert not environmental(ArchiveDamaged(archive="a", detail="pack 3 is missing"))
    assert not environmental(FileNotFoundError(errno.ENOENT, "gone"))
    assert not environmental(BackupError(detail="restored data differs"))


def _full_disk(monkeypatch):
    """Every restore the drill starts runs out of scratch space."""
    def no_space(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("backup.verify.restore_archive", no_space)


def test_verify_on_a_full_disk_could_not_verify_and_keeps_the_archive(box, monkeypatch):  # noqa: F811
    data, _url = box
    assert run("backup", "run", "--data-dir", str(data)).exit_code == 0
    _full_disk(monkeypatch)
    result = run("backup", "verify", "latest", "--data-dir", str(data))
    assert result.exit_code == 2
    assert "could not verify" in result.output and "No space left" in result.output
    listed = json.loads(run("backup", "list", "--json", "--data-dir", str(data)).stdout)
    assert [r["status"] for r in listed] == [STATUS_VERIFIED]
    planned = json.loads(run("backup", "prune", "--dry-run", "--grace-hours", "0", "--data-dir", str(data)).stdout)
    assert planned["delete"] == []


def test_a_backup_whose_drill_hits_a_full_disk_is_kept_unproven(populated, target, keys, scratch_url, tmp_path,
                                                                 monkeypatch):
    good = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    _full_disk(monkeypatch)
    unproven = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    assert unproven.record.status == STATUS_UNVERIFIED and not unproven.good
    repo = Repository.open(target, keys)
    plan = plan_prune(repo, Policy(daily=1, weekly=0, monthly=0), grace=timedelta(0),
                      now=datetime.now(UTC) + timedelta(days=30))
    assert unproven.archive_id in plan.keep and good.archive_id in plan.keep
    assert plan.delete == []


def test_a_real_full_scratch_disk_does_not_condemn_the_archive(tiny_tmpfs, target, keys, tmp_path):
    url = f"sqlite:///{tmp_path / 'big.db'}"
    add_rows(url, 1, 300, blob_bytes=10_000)  # ~3 MB: more than the 2 MiB scratch disk
    outcome = run_backup(target, keys, url, workdir=tmp_path)
    assert outcome.good
    report = run_drill(Repository.open(target, keys), outcome.archive_id, workdir=tiny_tmpfs)
    assert not report["ok"] and report["could_not_verify"], report


def test_keep_last_and_keep_within():
    newest = datetime(2026, 3, 10, 12, tzinfo=UTC)
    stamps = [newest - timedelta(hours=6 * i) for i in range(20)]
    none = {"daily": 0, "weekly": 0, "monthly": 0, "yearly": 0}
    assert keep(stamps, Policy(**none, last=3)) == set(stamps[:3])
    assert keep(stamps, Policy(**none, within=timedelta(days=2))) == set(stamps[:9])
    assert keep(stamps, Policy(**none)) == {newest}
    policy = Policy.from_config({"last": 2, "within": "1w2d", "daily": 1})
    assert policy.last == 2 and policy.within == timedelta(days=9)
    for bad in ({"within": "7 days"}, {"within": "7m"}, {"last": -1}, {"last": "3"}):
        with pytest.raises(BackupError):
            Policy.from_config(bad)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_scratch_copies_of_killed_runs_are_removed_at_the_next_run(populated, target, keys, scratch_url, tmp_path):
    stale = tmp_path / f"citadel-snapshot-{_dead_pid()}-abcd1234"
    (stale / "inner").mkdir(parents=True)
    (stale / "inner" / "citadel.db").write_bytes(os.urandom(1000))
    stale_drill = tmp_path / f"citadel-drill-{_dead_pid()}-x"
    stale_drill.mkdir()
    mine = tempfile.mkdtemp(prefix=scratch.prefix("drill"), dir=tmp_path)  # a run in progress
    unrelated = tmp_path / "citadel-notes"
    unrelated.mkdir()
    assert run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path).good
    assert not stale.exists() and not stale_drill.exists()
    assert os.path.isdir(mine) and unrelated.exists()


def test_a_failed_postgresql_restore_leaves_no_database(populated, target, keys, scratch_url, tmp_path):
    if not populated.startswith("postgresql"):
        pytest.skip("a PostgreSQL restore")
    outcome = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    assert outcome.good
    repo = Repository.open(target, keys)
    pack = sorted((target.root / "archives" / outcome.archive_id / "packs").iterdir())[-1]
    damaged = bytearray(pack.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    pack.write_bytes(bytes(damaged))
    url = new_database_url(populated, tmp_path)
    with pytest.raises(ArchiveDamaged):
        restore_archive(repo, outcome.archive_id, url)
    admin = make_engine(make_url(url).set(database="postgres").render_as_string(False), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        left = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": make_url(url).database}).first()
    admin.dispose()
    assert left is None
