"""A clock that steps back must not hold checkpoints back until it catches up."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

import audit
from audit.config import AuditConfig
from tests.audit.conftest import T0, add_events


def test_checkpoint_by_age_after_the_clock_stepped_back(engine, tmp_path):
    config = AuditConfig(tmp_path / "data", checkpoint_every=1000, checkpoint_seconds=60,
                         syslog_socket="")
    add_events(engine, 4)  # events at T0 + i minutes, written before the clock stepped back
    stepped_back = T0 - timedelta(hours=1)
    with Session(engine) as session:
        result = audit.maybe_checkpoint(session, config, now=stepped_back)
    assert result is not None and result.checkpoint.size == 4


def test_a_clock_a_moment_behind_still_waits_for_the_interval(engine, tmp_path):
    config = AuditConfig(tmp_path / "data", checkpoint_every=1000, checkpoint_seconds=60,
                         syslog_socket="")
    add_events(engine, 4)
    with Session(engine) as session:  # another process's clock a few seconds ahead
        assert audit.maybe_checkpoint(session, config, now=T0 - timedelta(seconds=5)) is None
