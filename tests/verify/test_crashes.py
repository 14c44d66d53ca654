"""Crashes at random moments: campaigns, so part of `make verify` (and `python -m tests.verify.run`)."""

from __future__ import annotations

import pytest

from tests.verify import crashes


@pytest.mark.slow
def test_a_few_crashes_lose_nothing(private_postgres, tmp_path):
    report = crashes.run(tmp_path, iterations=4, seed=7, accounts=300, restart_sec=0.5,
                         web_workers=2, progress=False)
    print(report.summary())
    assert report.ok, report.problems
    assert report.figures["writes acknowledged"] > 0


@pytest.mark.slow
def test_one_hundred_crashes_lose_nothing(private_postgres, tmp_path):
    report = crashes.run(tmp_path, iterations=100, seed=1)
    print(report.summary())
    assert report.ok, report.problems
