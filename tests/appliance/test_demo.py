"""The demo appliance: a believable past, two insiders the officer finds, and a first run
whose every mistake is one line that says what to do."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from appliance.cli import main
from appliance.commands import DEMO_READY
from appliance.kernel.runtime import Appliance
from audit.models import AuditEvent
from dlp.alerts import Alert


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """One small demo company (SQLite), made once for the module."""
    path = tmp_path_factory.mktemp("demo") / "citadel-data"
    result = run("init", "--demo", "--accounts", "2000", "--data-dir", str(path))
    assert result.exit_code == 0, result.output
    return path, result.output


def test_init_prints_the_demo_warning_once(demo_dir):
    _path, output = demo_dir
    assert output.count("DEMO MODE") == 1


def test_history_precedes_today_and_insiders_raise_alerts_with_their_events(demo_dir):
    path, _ = demo_dir
    appliance = Appliance.open(path)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    with appliance.session() as db:
        past = db.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.ts < today))
        days = {ts.date() for ts in db.scalars(select(AuditEvent.ts).where(AuditEvent.ts < today))}
        alerts = {a.user: a for a in db.scalars(select(Alert))}
        assert past > 10_000 and len(days) >= 20, "weeks of work before today"
        assert "bob" in alerts, alerts
        evidence = db.scalars(select(AuditEvent).where(AuditEvent.seq.in_(alerts["bob"].event_seqs))).all()
        assert {e.action for e in evidence} == {"export"}
        assert all(e.ts_utc >= today for e in evidence)
        scraper = next(u for u in alerts if u != "bob")
        scraped = db.scalars(select(AuditEvent).where(AuditEvent.seq.in_(alerts[scraper].event_seqs))).all()
        assert {e.action for e in scraped} == {"api.read"}
    appliance.dispose()


def test_demo_is_set_up_to_back_up_and_is_marked_whole(demo_dir):
    path, _ = demo_dir
    settings = Appliance.open(path).settings
    assert settings.section("backup")["targets"]["local"]["path"] == str(path / "backups")
    assert (path / "backup-requested").exists() and (path / DEMO_READY).exists()


def test_a_busy_port_is_one_line_that_says_what_to_do(demo_dir):
    path, _ = demo_dir
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("demo", "--data-dir", str(path), "--bind", f"127.0.0.1:{port}")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0, result.output
    assert f"port {port}" in result.output and "make demo PORT=" in result.output


@pytest.mark.parametrize("bind", ["8000", "localhost:", "127.0.0.1:99999"])
def test_a_malformed_bind_is_refused(demo_dir, bind):
    path, _ = demo_dir
    result = run("demo", "--data-dir", str(path), "--bind", bind)
    assert result.exit_code == 2 and "HOST:PORT" in result.output


def test_an_interrupted_demo_is_named_and_nothing_is_deleted(tmp_path):
    path = tmp_path / "half"
    path.mkdir()
    (path / "citadel.toml").write_text('demo = true\nsecure_cookies = false\n')
    result = run("demo", "--data-dir", str(path), "--bind", "127.0.0.1:1")
    assert result.exit_code == 2 and "interrupted" in result.output and "rm -rf" in result.output
    assert (path / "citadel.toml").exists()


def test_a_real_appliance_is_not_served_as_a_demo(tmp_path):
    path = tmp_path / "real"
    assert run("init", "--data-dir", str(path)).exit_code == 0
    result = run("demo", "--data-dir", str(path))
    assert result.exit_code == 2 and "not a demo appliance" in result.output


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody may write to: a read-only mount for root, else a mode of 0500."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o500)
        yield path
        path.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_data_dir_is_refused_before_anything_is_written(read_only_dir):
    result = run("init", "--demo", "--data-dir", str(read_only_dir / "citadel-data"))
    assert result.exit_code == 2 and "not writable" in result.output, result.output
    assert list(read_only_dir.iterdir()) == []


def test_unknown_flags_are_one_line(demo_dir):
    result = run("demo", "--no-such-flag")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "demo --help`" in result.output


def test_an_aborted_prompt_never_exits_with_the_code_for_a_found_problem(demo_dir):
    path, _ = demo_dir
    result = CliRunner().invoke(main, ["user", "add", "zoe", "--role", "staff", "--data-dir", str(path)],
                                input="")  # end of input at the password prompt
    assert result.exit_code == 2 and "Aborted" in result.output
