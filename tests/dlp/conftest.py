"""A small simulated organisation shared by the leak-detection tests.

Forty people over sixty days give every scenario once; the first 25 days
train. Generated once per session (a few seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from dlp.events import parse_time
from dlp.replay import ReplayResult, replay
from dlp.simulate import SimConfig, write

SEED = 3
TRAIN_DAYS = 25


@dataclass
class Organisation:
    """Simulated events, their labels, the cut-off and the replay of it."""

    events: Path
    labels: list[dict[str, Any]]
    lines: list[bytes]
    cut: int
    result: ReplayResult

    def label(self, scenario: str) -> dict[str, Any]:
        return next(label for label in self.labels if label["scenario"] == scenario)

    def alerts_for(self, user: str) -> list[dict[str, Any]]:
        return [alert for alert in self.result.alerts if alert["user"] == user]


def cut_after(first_line: bytes, days: int) -> int:
    first = parse_time(orjson.loads(first_line)["ts"])
    return (first // 86400 + 1 + days) * 86400


@pytest.fixture(scope="session")
def org(tmp_path_factory: pytest.TempPathFactory) -> Organisation:
    folder = tmp_path_factory.mktemp("dlp")
    events, labels = folder / "events.jsonl", folder / "labels.jsonl"
    write(SimConfig(users=40, days=60, seed=SEED), events, labels)
    lines = events.read_bytes().splitlines()
    cut = cut_after(lines[0], TRAIN_DAYS)
    result = replay(events, cut, folder / "alerts.jsonl")
    return Organisation(events, [orjson.loads(x) for x in labels.read_bytes().splitlines()],
                        lines, cut, result)
