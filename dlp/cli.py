"""``appliance dlp``: leak-detection commands that need no appliance.

``simulate`` writes a believable organisation's activity with labelled
insider cases; ``replay`` learns from a file's past and writes the alerts its
future raises (DESIGN.md, "appliance dlp replay"). Neither opens an appliance.
The heavy modules load inside the commands, so ``appliance --help`` stays fast.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime

import click

from appliance.kernel.cli import CitadelGroup
from appliance.kernel.errors import BadRequest
from dlp.events import parse_time


class BadDate(BadRequest):
    """--train-until {value!r} is not a date: give one like 2026-03-01 or 2026-03-01T12:00:00Z."""


class Unreadable(BadRequest):
    """Cannot read {path}: {why}."""


def _cut_off(value: str) -> int:
    """A date (midnight UTC) or a full ISO 8601 time, as epoch seconds."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        return parse_time(value)
    except ValueError as exc:
        raise BadDate(value=value) from exc


@click.group("dlp", cls=CitadelGroup)
def dlp() -> None:
    """Leak detection: simulate activity, replay events into alerts."""


@dlp.command("simulate")
@click.option("--users", default=200, show_default=True, type=click.IntRange(4, 100_000),
              help="People in the organisation.")
@click.option("--days", default=120, show_default=True, type=click.IntRange(7, 3_650),
              help="Days of activity.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="The same seed always gives the same files.")
@click.option("--start", default="2026-01-05", show_default=True,
              help="First day (YYYY-MM-DD).")
@click.option("--activity", default=1.0, show_default=True, type=click.FloatRange(0.05, 20),
              help="Scales everyone's daily volume.")
@click.option("--no-scenarios", is_flag=True, help="Ordinary activity only, no injected cases.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the events (JSON lines).")
@click.option("--labels", default=None, type=click.Path(dir_okay=False),
              help="Where to write one label per injected case (JSON lines).")
def simulate(users: int, days: int, seed: int, start: str, activity: float,
             no_scenarios: bool, out: str, labels: str | None) -> None:
    """Write a simulated organisation's events, with labelled insider cases."""
    try:
        first = date.fromisoformat(start)
    except ValueError as exc:
        raise BadRequest(f"--start {start!r} is not a date like 2026-01-05") from exc
    from dlp.simulate import SimConfig, write

    config = SimConfig(users=users, days=days, seed=seed, start=first, activity=activity,
                       scenarios=not no_scenarios)
    try:
        events, cases = write(config, out, labels)
    except OSError as exc:
        raise Unreadable(path=exc.filename or out, why=exc.strerror or str(exc)) from exc
    click.echo(f"wrote {events} events to {out}" + (f" and {cases} labels to {labels}"
                                                     if labels else ""), err=True)


@dlp.command("replay")
@click.argument("events", type=click.Path(dir_okay=False))
@click.option("--train-until", required=True,
              help="Learn from events before this date (UTC), score the rest.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the alerts (JSON lines).")
def replay(events: str, train_until: str, out: str) -> None:
    """Learn baselines from EVENTS before --train-until, score the rest, write alerts.

    Alerts are written one JSON object per line; their `events` are 0-based
    line numbers of EVENTS. A summary of the input (rejected lines and why,
    unknown actions, odd times) goes to stderr.
    """
    from dlp.replay import replay as run_replay  # scikit-learn loads only when needed

    cut = _cut_off(train_until)
    try:
        result = run_replay(events, cut, out)
    except OSError as exc:
        raise Unreadable(path=exc.filename or events, why=exc.strerror or str(exc)) from exc
    click.echo(result.summary(), err=True)
    sys.stderr.flush()
