"""``appliance audit ...`` end to end on an initialised data directory."""

from __future__ import annotations

import json
import socket

import pytest
from click.testing import CliRunner

from appliance.cli import main
from appliance.kernel.config import write_initial
from appliance.kernel.runtime import Appliance
from appliance.schema import upgrade
from audit.cli import audit_group
from tests.audit.conftest import add_events, drop_guards, sql

if "audit" not in main.commands:  # the appliance registers it; these tests need it either way
    main.add_command(audit_group)


@pytest.fixture
def appliance(tmp_path, database_url):
    data_dir = tmp_path / "appliance"
    write_initial(data_dir, {"database_url": database_url,
                             "audit": {"syslog_socket": "", "checkpoint_every": 20}})
    app = Appliance.open(data_dir)
    upgrade(app.engine)
    add_events(app.engine, 45)
    yield app
    app.dispose()


def cli(app, *args):
    result = CliRunner().invoke(main, ["--data-dir", str(app.data_dir), "audit", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_verify_exit_codes(appliance, tmp_path):
    assert cli(appliance, "checkpoint").exit_code == 0
    result = cli(appliance, "verify")
    assert result.exit_code == 0 and "Audit trail intact: 45 events" in result.output
    report = json.loads(cli(appliance, "verify", "--json").output)
    assert report["ok"] and report["events"] == 45 and report["checkpoints"] == 1
    drop_guards(appliance.engine)
    sql(appliance.engine, "DELETE FROM audit_events WHERE seq = 17")
    result = cli(appliance, "verify")
    assert result.exit_code == 1
    assert "TAMPERED: first bad position is event 17: deleted" in result.output
    report = json.loads(cli(appliance, "verify", "--json").output)
    assert report["first"] == {"kind": "deleted", "seq": 17, "checkpoint": None,
                               "detail": report["first"]["detail"]}
    missing = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "nowhere"), "audit",
                                        "verify"])
    assert missing.exit_code == 2 and "appliance init" in missing.output


def test_verify_cannot_run_without_its_public_key(appliance):
    cli(appliance, "checkpoint")
    (appliance.data_dir / "audit" / "signing.pub").unlink()
    result = cli(appliance, "verify")
    assert result.exit_code == 2 and "signing.pub" in result.output


def test_prove_consistency_bundle_export(appliance, tmp_path):
    cli(appliance, "checkpoint")
    proof = json.loads(cli(appliance, "prove", "7").output)
    assert proof["seq"] == 7 and proof["tree_size"] == 45
    add_events(appliance.engine, 5, start_index=45)
    cli(appliance, "checkpoint")
    result = cli(appliance, "consistency", "45", "50")
    assert result.exit_code == 0 and json.loads(result.output)["valid"]
    assert cli(appliance, "consistency", "44", "50").exit_code == 2
    assert cli(appliance, "prove", "999").exit_code == 4
    out = tmp_path / "b.json"
    result = cli(appliance, "bundle", "--events", "1,2,40", "--out", str(out))
    assert result.exit_code == 0 and "verify_evidence.py" in result.output
    assert [e["seq"] for e in json.loads(out.read_text())["events"]] == [1, 2, 40]
    assert cli(appliance, "bundle", "--events", "1,x", "--out", str(out)).exit_code == 2
    assert cli(appliance, "bundle", "--out", str(out)).exit_code == 2
    lines = cli(appliance, "export", "--user", "user3", "--since", "2026-03-02").output
    events = [json.loads(line) for line in lines.splitlines()]
    assert [e["seq"] for e in events] == list(range(3, 50, 5))
    assert set(events[0]) == {"seq", "ts", "user", "action", "entity", "entity_id", "count",
                              "ip", "meta"}
    bad = cli(appliance, "export", "--since", "last tuesday")
    assert bad.exit_code == 2 and "not a date" in bad.output


def test_archive_and_forward(appliance):
    cli(appliance, "checkpoint")
    result = cli(appliance, "archive", "--before", "2030-01-01", "--max-events", "16")
    assert result.exit_code == 0 and result.output.count("Archived events") == 2
    assert "32 archived in 2 segments" in cli(appliance, "verify").output
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        result = cli(appliance, "forward", "--format", "syslog", "--to",
                     f"127.0.0.1:{udp.getsockname()[1]}")
    assert result.exit_code == 0 and "Forwarded 45 events" in result.output


def test_key_shows_the_public_key(appliance):
    result = cli(appliance, "key")
    assert result.exit_code == 0 and "BEGIN PUBLIC KEY" in result.output
    assert result.output.split()[2] in cli(appliance, "checkpoint", "--json").output
