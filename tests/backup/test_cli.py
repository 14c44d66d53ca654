"""`appliance backup run|list|verify|restore|prune` on a demo-unsealed appliance."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.kernel.config import Settings, dump_toml
from appliance.keys import init_keys, state
from backup.checks import register_check, unregister_check
from backup.cli import backup
from tests.backup.conftest import add_rows

main.add_command(backup)


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def box(tmp_path):
    data = tmp_path / "box"
    url = f"sqlite:///{data / 'citadel.db'}"
    assert run("init", "--data-dir", str(data), "--database-url", url).exit_code == 0
    init_keys(data, threshold=0, holders=[], demo=True)
    values = Settings.load(data).values
    values["demo"] = True
    (data / "citadel.toml").write_text(
        dump_toml(values)
        + f"""
[backup]
files = ["citadel.toml", "keys/keyring.json"]

[backup.keep]
daily = 3
weekly = 0
monthly = 0

[backup.targets.usb]
type = "local"
path = "{tmp_path / "target"}"
"""
    )
    add_rows(url, 1, 50)
    yield data, url
    state.clear()


def test_run_list_verify_restore(box, tmp_path):
    data, url = box
    result = run("backup", "run", "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert ": verified;" in result.output
    listed = json.loads(run("backup", "list", "--json", "--data-dir", str(data)).stdout)
    assert [r["status"] for r in listed] == ["verified"]
    archive = listed[0]["archive_id"]

    verified = run("backup", "verify", archive[:20], "--data-dir", str(data))
    assert verified.exit_code == 0, verified.output
    assert "verified" in verified.output and "tables match" in verified.output

    new = tmp_path / "restored.db"
    restored = run(
        "backup",
        "restore",
        "latest",
        "--to",
        f"sqlite:///{new}",
        "--files-dir",
        str(tmp_path / "files"),
        "--data-dir",
        str(data),
    )
    assert restored.exit_code == 0, restored.output
    assert "RTO:" in restored.output
    assert sqlite3.connect(new).execute("SELECT count(*) FROM bk_accounts").fetchone() == (50,)
    assert (tmp_path / "files" / "keys" / "keyring.json").exists()

    refused = run("backup", "restore", archive, "--to", url, "--data-dir", str(data))
    assert refused.exit_code == 2 and "--force" in refused.output

    add_rows(url, 100, 5)
    forced = run("backup", "restore", archive, "--to", url, "--force", "--data-dir", str(data))
    assert forced.exit_code == 0, forced.output
    assert "before replacing it" in forced.output
    assert sqlite3.connect(data / "citadel.db").execute("SELECT count(*) FROM bk_accounts").fetchone() == (50,)
    listed = json.loads(run("backup", "list", "--json", "--data-dir", str(data)).stdout)
    assert [r["status"] for r in listed] == ["verified", "verified"]


def test_failed_drill_exits_non_zero_and_is_listed_failed(box):
    data, _url = box
    register_check("always-fails", lambda ctx: (False, "planted failure"))
    try:
        result = run("backup", "run", "--data-dir", str(data))
    finally:
        unregister_check("always-fails")
    assert result.exit_code == 1
    assert "failed its drill" in result.output
    listed = json.loads(run("backup", "list", "--json", "--data-dir", str(data)).stdout)
    assert [r["status"] for r in listed] == ["failed"]
    assert run("backup", "restore", "latest", "--to", "sqlite:////tmp/x.db", "--data-dir", str(data)).exit_code != 0


def test_missing_configuration_says_what_to_add(box):
    data, _url = box
    values = {k: v for k, v in Settings.load(data).values.items() if k != "backup"}
    (data / "citadel.toml").write_text(dump_toml(values) + "\n[backup]\nfiles = []\n")
    result = run("backup", "list", "--data-dir", str(data))
    assert result.exit_code == 2
    assert "[backup.targets.<name>]" in result.output


def test_an_empty_target_says_to_run_a_backup_first(box):
    data, _url = box
    listed = run("backup", "list", "--data-dir", str(data))
    assert listed.exit_code == 0 and "No archives yet: run `appliance backup run`" in listed.output
    assert json.loads(run("backup", "list", "--json", "--data-dir", str(data)).stdout) == []
    result = run("backup", "verify", "latest", "--data-dir", str(data))
    assert result.exit_code == 4
    assert "no backups on" in result.output and "appliance backup run" in result.output


def test_the_backup_commands_import_on_their_own():
    """The web views import ``backup.cli``; a worker process that has not loaded
    ``appliance.cli`` first must still get it (no import cycle)."""
    done = subprocess.run([sys.executable, "-c", "import backup.cli"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr[-300:]


def test_archives_made_in_one_second_are_listed_in_the_order_made():
    from backup.cli import _in_order_made

    later = {"archive_id": "20261204T191635Z-06158eaa", "created": "2026-12-04T19:16:35.900000Z"}
    earlier = {"archive_id": "20261204T191635Z-8b2ce4c5", "created": "2026-12-04T19:16:35.100000Z"}
    before = {"archive_id": "20261204T191634Z-ffffffff", "created": "2026-12-04T19:16:34.999999Z"}
    assert sorted([later, earlier, before], key=_in_order_made) == [before, earlier, later]
