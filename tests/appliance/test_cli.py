"""The `appliance` command line: init, users, tokens, schema, errors that say what to do."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from appliance.cli import main


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def fresh_dir(tmp_path, database_url):
    """An empty data directory whose appliance will use the test database."""
    return tmp_path / "fresh", database_url


def test_init_then_users_and_tokens(fresh_dir):
    path, url = fresh_dir
    result = run("init", "--data-dir", str(path), "--database-url", url)
    assert result.exit_code == 0, result.output
    assert (path / "citadel.toml").exists()
    assert oct((path / "secret_key").stat().st_mode)[-3:] == "600"
    result = run("--data-dir", str(path), "user", "add", "carol", "--name", "Carol Diaz",
                 "--role", "manager", "--team", "Sales", "--password", "long enough secret")
    assert result.exit_code == 0, result.output
    listed = json.loads(run("user", "list", "--json", "--data-dir", str(path)).output)
    assert listed == [{"username": "carol", "full_name": "Carol Diaz", "roles": ["manager"],
                       "team": "Sales", "status": "active"}]
    token = run("user", "token", "carol", "--data-dir", str(path)).output
    assert token.startswith("ctl_") and len(token.strip().split()) == 1
    assert run("db", "status", "--data-dir", str(path)).exit_code == 0


def test_errors_say_what_to_do(tmp_path, fresh_dir):
    path, url = fresh_dir
    missing = run("user", "list", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "appliance init --data-dir" in missing.output
    run("init", "--data-dir", str(path), "--database-url", url)
    again = run("init", "--data-dir", str(path))
    assert again.exit_code == 2 and "already holds an appliance" in again.output
    bad = run("user", "add", "X y", "--role", "wizard", "--password", "short",
              "--data-dir", str(path))
    assert bad.exit_code == 5
    assert "username" in bad.output and "unknown role(s) wizard" in bad.output
    assert "at least 10 characters" in bad.output
    nobody = run("user", "token", "ghost", "--data-dir", str(path))
    assert nobody.exit_code == 4 and "appliance user list" in nobody.output


def test_every_command_has_help():
    def walk(command, path):
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(main, [])


def test_console_script_is_installed():
    bin_dir = __import__("pathlib").Path(sys.executable).parent
    result = subprocess.run([bin_dir / "appliance", "--help"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "init" in result.stdout


def test_officer_restrictions_from_the_command_line(appliance, make, data_dir, db):
    from crm.identity import User

    alice = make.user("alice")
    make.user("bob")
    make.user("sofia", roles=("security_officer",), team=None)
    make.account(alice)
    base = ["--data-dir", str(data_dir)]
    assert run("user", "freeze", "alice", "--by", "sofia", "--reason", "leak suspected", *base).exit_code == 0
    assert run("user", "notice", "alice", "--by", "sofia", "--reason", "resigned", *base).exit_code == 0
    refused = run("user", "freeze", "bob", "--by", "alice", "--reason", "x", *base)
    assert refused.exit_code == 2 and "right" in refused.output
    result = run("user", "offboard", "alice", "--to", "bob", "--by", "sofia", "--reason", "left", *base)
    assert result.exit_code == 0 and "1 accounts" in result.output
    db.expire_all()
    gone = db.query(User).filter_by(username="alice").one()
    assert gone.offboarded_at is not None and gone.frozen_at is not None


def test_settings_files_round_trip_nested_tables(tmp_path):
    import tomllib

    from appliance.kernel.config import Settings, write_initial

    values = {"database_url": "", "demo": False, "audit": {"signer": "keyring"},
              "backup": {"target": "usb", "targets": {"usb": {"type": "local", "path": "/mnt/usb"}},
                         "keep": {"daily": 7, "weekly": 4}}}
    path = write_initial(tmp_path / "box", values)
    assert tomllib.loads(path.read_text()) == values
    assert Settings.load(tmp_path / "box").section("backup")["targets"]["usb"]["path"] == "/mnt/usb"


def test_an_unreachable_database_is_one_line_not_a_traceback(data_dir, monkeypatch):
    monkeypatch.setenv("CITADEL_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(main, ["user", "list", "--data-dir", str(data_dir)])
    assert result.exit_code == 7
    assert "cannot be reached" in result.output and "Traceback" not in result.output
