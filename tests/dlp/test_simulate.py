"""The simulator: DESIGN.md's event shape, labelled cases, one seed one file."""

from __future__ import annotations

from pathlib import Path

import orjson

from dlp.events import ACTIONS, parse_time
from dlp.scenarios import BENIGN, INSIDER
from dlp.simulate import SimConfig, write

KEYS = {"ts", "user", "action", "entity", "count", "ip", "meta"}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    paths = [tmp_path / f"{n}.jsonl" for n in range(3)]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        write(SimConfig(users=12, days=20, seed=seed), path, path.with_suffix(".labels"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].with_suffix(".labels").read_bytes() == \
        paths[1].with_suffix(".labels").read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_events_have_the_design_shape_in_time_order(org) -> None:
    last = 0
    for raw in org.lines:
        event = orjson.loads(raw)
        assert set(event) == KEYS
        assert event["action"] in ACTIONS
        assert isinstance(event["count"], int) and event["count"] >= 0
        assert event["ts"].endswith("Z")
        ts = parse_time(event["ts"])
        assert ts >= last
        last = ts
        if event["action"] in ("login", "logout", "user.notice", "card.removed"):
            assert event["entity"] is None and event["count"] == 0


def test_organisation_looks_like_one(org) -> None:
    events = [orjson.loads(raw) for raw in org.lines]
    actions = {e["action"] for e in events}
    assert {"login", "logout", "record.view", "record.search", "record.update", "report.run",
            "export", "print", "copy", "api.read", "user.notice", "card.removed"} <= actions
    roles = {e["meta"].get("role") for e in events if e["action"] == "login"}
    assert {"sales", "support", "manager"} <= roles
    weekend = sum(1 for e in events if _weekday(e["ts"]) >= 5)
    assert weekend < 0.05 * len(events)  # people mostly rest at weekends
    reads = [e for e in events if e["action"] == "export"]
    assert all("outside_book" in e["meta"] for e in reads)


def _weekday(ts: str) -> int:
    from datetime import date
    return date.fromisoformat(ts[:10]).weekday()


def test_labels_cover_every_scenario_and_point_at_their_events(org) -> None:
    scenarios = {label["scenario"] for label in org.labels}
    assert set(INSIDER) | set(BENIGN) <= scenarios
    for label in org.labels:
        assert label["expect"] == ("alert" if label["scenario"] in INSIDER else "no-alert")
        assert label["start"] and label["end"] and label["start"] <= label["end"]
        for line in label["events"]:
            event = orjson.loads(org.lines[line])
            assert event["user"] == label["user"] or event["action"] == "record.reassign"
