"""A short crowd of staff (the 10-minute run is `python -m tests.verify.run`)."""

from __future__ import annotations

import pytest

from tests.verify import load


@pytest.mark.slow
def test_a_short_crowd_works_without_errors_or_alerts(private_postgres, tmp_path):
    pytest.importorskip("locust")
    report = load.run(tmp_path, seconds=30, users=10, accounts=2000, warmup=15, history_days=7)
    print(report.table())
    print(report.summary())
    assert report.ok, report.problems
