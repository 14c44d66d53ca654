"""``dlp replay``: learn baselines from a file's past, score its future, write alerts.

Events before the cut-off train the scorer; every later event is scored, in
file order, exactly as the live appliance scores its audit log. Alerts are
written one JSON object per line (DESIGN.md, "Alert"); their ``events`` are
0-based line numbers of the replayed file. What the input held that was odd
(rejected lines and why, unknown actions, out-of-order times, repeated
beacons, people with no history) is summarised for stderr.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.kernel.errors import BadRequest
from dlp.events import EventTable, InputReport, Vocabulary, dumps, iso, read_events
from dlp.scoring import LeakScorer


class NoHistory(BadRequest):
    """No events before {cut} in {path} (it runs {span}): choose a later --train-until."""


@dataclass
class ReplayResult:
    """What a replay did: alerts, counts, input report, time taken."""

    alerts: list[dict[str, Any]]
    report: InputReport
    trained: int
    scored: int
    new_people: int
    user_days: int
    seconds: float

    def summary(self) -> str:
        rate = (self.trained + self.scored) / self.seconds if self.seconds else 0.0
        lines = [self.report.summary(),
                 f"learned from {self.trained} events, scored {self.scored}, "
                 f"wrote {len(self.alerts)} alerts ({rate:,.0f} events/s)"]
        if self.new_people:
            lines.append(f"  {self.new_people} people had no history before the cut-off: "
                         "they were compared with their peers")
        return "\n".join(lines)


def replay(events_path: str | Path, train_until: int, out_path: str | Path | None = None,
           scorer: LeakScorer | None = None) -> ReplayResult:
    """Replay ``events_path`` cut at epoch ``train_until``; write alerts to ``out_path``."""
    started = time.perf_counter()
    vocab = Vocabulary()
    table, report = read_events(events_path, vocab)
    past = table.ts < train_until
    if not past.any():
        span = (f"{iso(table.ts.min())} to {iso(table.ts.max())}" if len(table)
                else "with no usable events")
        raise NoHistory(cut=iso(train_until), path=str(events_path), span=span)
    train, future = table.take(past), table.take(~past)
    scorer = scorer or LeakScorer()
    result = scorer.fit_and_feed(train, future, vocab, report)
    alerts = scorer.alerts()
    if out_path is not None:
        write_alerts(out_path, alerts)
    return ReplayResult(alerts, report, len(train), result.scored, _new_people(train, future),
                        _user_days(future), time.perf_counter() - started)


def _new_people(train: EventTable, future: EventTable) -> int:
    return int(np.setdiff1d(np.unique(future.user), np.unique(train.user)).size)


def _user_days(table: EventTable) -> int:
    """How many (person, day) pairs had activity: the unit false alerts are counted in."""
    return int(np.unique(table.user * 1_000_000 + table.ts // 86400).size)


def write_alerts(path: str | Path, alerts: list[dict[str, Any]]) -> None:
    with open(path, "wb") as out:
        for alert in alerts:
            out.write(dumps(alert))
            out.write(b"\n")
