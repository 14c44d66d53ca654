"""Live leak scoring: the audit log, fed to the same scorer ``dlp replay`` uses.

The worker calls ``score_new_events`` every few seconds: it reads the audit
events after the last one scored, adds what the CRM knows of each person (role
and team, for peer groups), feeds them to the fitted scorer in order, and
stores every alert opened or grown. An alert therefore appears within one
worker interval of the event that crossed the line. ``retrain`` refits the
baselines on recent history (nightly); without a fitted model the first run
fits one from whatever history exists.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.kernel.runtime import Appliance
from audit.events import public_event
from audit.models import AuditEvent
from crm.identity import Team, User
from dlp import alerts as alert_store
from dlp.events import Vocabulary, table_from_dicts
from dlp.scoring import LeakScorer, ModelError

log = logging.getLogger("citadel.dlp")
BATCH = 20_000
HISTORY_DAYS = 90
#: System events that are not a person's activity.
NOT_ACTIVITY = ("alert.", "audit.", "rights.", "card.enroll", "token.", "user.create")


@dataclass
class LiveState:
    """Where the scorer's model and progress live: the data directory's dlp folder."""

    directory: Path

    @property
    def model(self) -> Path:
        return self.directory / "model.pkl"

    @property
    def cursor(self) -> Path:
        return self.directory / "cursor.json"

    def last_seq(self) -> int:
        try:
            return int(json.loads(self.cursor.read_text())["last_seq"])
        except (FileNotFoundError, ValueError, KeyError):
            return -1

    def save(self, scorer: LeakScorer, last_seq: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.model.with_suffix(".tmp")
        scorer.save(tmp)
        tmp.replace(self.model)
        self.cursor.write_text(json.dumps({"last_seq": last_seq,
                                           "saved": datetime.now(UTC).isoformat()}))


def state_of(appliance: Appliance) -> LiveState:
    return LiveState(appliance.data_dir / "dlp")


def people(db: Session) -> dict[str, dict[str, str]]:
    """Each user's role and team, as ``meta`` the scorer reads for peer groups."""
    teams = {t.id: t.name for t in db.scalars(select(Team))}
    return {u.username: {"role": ",".join(u.role_names), "team": teams.get(u.team_id, "")}
            for u in db.scalars(select(User))}


def as_scored(row: AuditEvent, known: dict[str, dict[str, str]]) -> dict[str, Any]:
    event = public_event(row)
    meta = event["meta"] if isinstance(event["meta"], dict) else {}
    extra = known.get(event["user"] or "", {})
    event["meta"] = {**extra, **meta}
    return event


def _activity(rows: list[AuditEvent]) -> list[AuditEvent]:
    return [r for r in rows if not r.action.startswith(NOT_ACTIVITY)]


def retrain(appliance: Appliance, until: datetime | None = None) -> int:
    """Fit the baselines on the last ``HISTORY_DAYS`` days; returns how many events it used.

    With ``until``, only events before it are learnt and scoring resumes after the
    last of them, so whatever happened since is judged, not learnt as normal.
    """
    since = (until or datetime.now(UTC)) - timedelta(days=HISTORY_DAYS)
    with appliance.session() as db:
        known = people(db)
        stmt = select(AuditEvent).where(AuditEvent.ts >= since)
        if until is not None:
            stmt = stmt.where(AuditEvent.ts < until)
        rows = db.scalars(stmt.order_by(AuditEvent.seq)).all()
        last = rows[-1].seq if rows else (-1 if until is not None else _head(db))
    history = _activity(list(rows))
    vocab = Vocabulary()
    table, _report = table_from_dicts([as_scored(r, known) for r in history], vocab,
                                      lines=[r.seq for r in history])
    scorer = LeakScorer().fit(table, vocab)
    state_of(appliance).save(scorer, last)
    log.info("leak baselines fitted on %d events", len(history))
    return len(history)


def _head(db: Session) -> int:
    return db.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or -1


def score_new_events(appliance: Appliance) -> list[alert_store.Alert]:
    """Score the audit events since the last run; store and return the alerts they opened."""
    state = state_of(appliance)
    if not state.model.exists():
        retrain(appliance)
        return []
    try:
        scorer = LeakScorer.load(state.model)
    except ModelError:
        log.warning("the saved leak model cannot be used; fitting a new one")
        retrain(appliance)
        return []
    last = state.last_seq()
    opened: list[alert_store.Alert] = []
    with appliance.session() as db:
        known = people(db)
        rows = db.scalars(select(AuditEvent).where(AuditEvent.seq > last)
                          .order_by(AuditEvent.seq).limit(BATCH)).all()
        if not rows:
            return []
        fresh = _activity(list(rows))
        if fresh:
            result = scorer.feed([as_scored(r, known) for r in fresh], lines=[r.seq for r in fresh])
            for incident in result.alerts:
                alert, new = alert_store.upsert(db, incident.as_alert(), incident.key)
                if new:
                    opened.append(alert)
        last = rows[-1].seq
    state.save(scorer, last)
    if opened:
        from dlp.notify import notify

        notify(appliance, opened)
    return opened
