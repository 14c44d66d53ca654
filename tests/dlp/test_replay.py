"""``appliance dlp replay`` and ``simulate``: the exact alert format, errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from dlp.cli import dlp
from dlp.events import iso, parse_time

ALERT_KEYS = {"user", "ts", "score", "severity", "scenario", "reasons", "events"}


def test_alert_lines_have_exactly_the_design_shape(org) -> None:
    alerts = [orjson.loads(x) for x in (org.events.parent / "alerts.jsonl").read_bytes()
              .splitlines()]
    assert alerts == org.result.alerts and alerts
    for alert in alerts:
        assert set(alert) == ALERT_KEYS
        assert isinstance(alert["user"], str)
        assert alert["ts"].endswith("Z") and iso(parse_time(alert["ts"])) == alert["ts"]
        assert parse_time(alert["ts"]) >= org.cut  # alerts only after --train-until
        assert 0.0 <= alert["score"] <= 1.0 and round(alert["score"], 2) == alert["score"]
        assert alert["severity"] in ("low", "medium", "high")
        assert alert["reasons"] and all(isinstance(r, str) and r for r in alert["reasons"])
        assert alert["events"] == sorted(set(alert["events"]))
        for line in alert["events"]:  # 0-based line numbers of the replayed file
            event = orjson.loads(org.lines[line])
            assert event["user"] == alert["user"]


def test_cli_simulate_then_replay(tmp_path: Path) -> None:
    runner = CliRunner()
    events, labels, out = tmp_path / "e.jsonl", tmp_path / "l.jsonl", tmp_path / "a.jsonl"
    result = runner.invoke(dlp, ["simulate", "--users", "16", "--days", "40", "--seed", "2",
                                 "--out", str(events), "--labels", str(labels)])
    assert result.exit_code == 0, result.output
    assert labels.read_bytes().count(b"\n") >= 11
    result = runner.invoke(dlp, ["replay", str(events), "--train-until", "2026-01-30",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "learned from" in result.output and out.exists()
    for raw in out.read_bytes().splitlines():
        assert set(orjson.loads(raw)) == ALERT_KEYS


def test_cli_errors_say_what_to_do(tmp_path: Path) -> None:
    runner = CliRunner()
    events = tmp_path / "e.jsonl"
    events.write_bytes(b'{"ts": "2026-03-02T09:00:00Z", "user": "ann", "action": "login"}\n')
    out = str(tmp_path / "a.jsonl")
    bad_date = runner.invoke(dlp, ["replay", str(events), "--train-until", "soon", "--out", out])
    assert bad_date.exit_code == 5 and "not a date" in bad_date.output
    too_early = runner.invoke(dlp, ["replay", str(events), "--train-until", "2020-01-01",
                                    "--out", out])
    assert too_early.exit_code == 5 and "choose a later --train-until" in too_early.output
    missing = runner.invoke(dlp, ["replay", str(tmp_path / "nope.jsonl"), "--train-until",
                                  "2026-03-03", "--out", out])
    assert missing.exit_code != 0 and "nope.jsonl" in missing.output
    assert "Traceback" not in bad_date.output + too_early.output + missing.output


def test_replay_of_only_history_writes_no_alerts(tmp_path: Path) -> None:
    runner = CliRunner()
    events, out = tmp_path / "e.jsonl", tmp_path / "a.jsonl"
    events.write_bytes(b'{"ts": "2026-03-02T09:00:00Z", "user": "ann", "action": "login"}\n')
    result = runner.invoke(dlp, ["replay", str(events), "--train-until", "2026-04-01",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == b""
