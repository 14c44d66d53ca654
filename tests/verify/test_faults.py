"""The database gone, the disk full, the clock stepping back: clear errors, recovery, nothing lost."""

from __future__ import annotations

import pytest

from tests.verify import faults


def _holds(report: faults.FaultReport) -> None:
    print(f"{report.name}: {report.summary()}")
    if report.skipped:
        pytest.skip(report.skipped)
    assert report.ok, report.problems


@pytest.mark.slow
def test_database_unreachable(private_postgres):
    _holds(faults.database_unreachable(down_seconds=2))


@pytest.mark.slow
def test_disk_full(private_postgres):
    _holds(faults.disk_full())


@pytest.mark.slow
def test_clock_steps_back(private_postgres):
    _holds(faults.clock_backwards())
