"""Alerts and their triage: what the officer console and ``/api/v1/alerts`` show.

An alert is one incident of one person, as the scorer opened it (DESIGN.md's
alert shape); while the incident grows, the same alert is updated, never
duplicated. Officers move it through new, investigating, confirmed,
dismissed (with a reason) and resolved; every step, comment and response is
an audit event and a note on the alert.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, String, Text, Uuid, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

import audit
from appliance.kernel.errors import Conflict, NotFound, ValidationFailed
from appliance.keys import encrypted_field
from dlp.base import Base

STATUSES = ("new", "investigating", "confirmed", "dismissed", "resolved")
OPEN = ("new", "investigating", "confirmed")
SEVERITIES = ("low", "medium", "high", "critical")


def _now() -> datetime:
    return datetime.now(UTC)


class Alert(Base):
    __tablename__ = "dlp_alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    user: Mapped[str] = mapped_column(String(64), index=True)
    opened_at: Mapped[datetime] = mapped_column(index=True)
    score: Mapped[float] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(16), index=True)
    scenario: Mapped[str] = mapped_column(String(64))
    reasons: Mapped[str] = mapped_column(Text, default="[]")
    events: Mapped[str] = mapped_column(Text, default="[]")
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    resolution: Mapped[str] = mapped_column(String(500), default="")
    assignee: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)

    notes: Mapped[list[AlertNote]] = relationship(back_populates="alert", order_by="AlertNote.created_at",
                                                  cascade="all, delete-orphan")

    @property
    def reason_list(self) -> list[str]:
        return json.loads(self.reasons)

    @property
    def event_seqs(self) -> list[int]:
        return json.loads(self.events)

    def public(self) -> dict[str, Any]:
        """DESIGN.md's alert shape (events are audit sequence numbers), plus triage."""
        return {"id": self.id, "user": self.user, "ts": self.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "score": round(self.score, 2), "severity": self.severity, "scenario": self.scenario,
                "reasons": self.reason_list, "events": self.event_seqs, "status": self.status,
                "assignee": self.assignee, "resolution": self.resolution}


class AlertNote(Base):
    """A comment, a status change or a response taken, in the alert's history."""

    __tablename__ = "dlp_alert_notes"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    alert_id: Mapped[int] = mapped_column(ForeignKey("dlp_alerts.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    body = encrypted_field()  # officers may quote client data in a comment
    created_at: Mapped[datetime] = mapped_column(default=_now)

    alert: Mapped[Alert] = relationship(back_populates="notes")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("id", uuid.uuid4())
        super().__init__(**kwargs)


# -- from the scorer -----------------------------------------------------------
def upsert(db: Session, incident: dict[str, Any], key: str) -> tuple[Alert, bool]:
    """Store an alert the scorer opened or grew; returns (alert, whether it is new)."""
    alert = db.scalars(select(Alert).where(Alert.key == key)).first()
    opened = datetime.fromisoformat(incident["ts"].replace("Z", "+00:00"))
    fields = {"score": float(incident["score"]), "severity": incident["severity"],
              "scenario": incident["scenario"], "reasons": json.dumps(incident["reasons"]),
              "events": json.dumps(sorted(set(incident["events"])))}
    if alert is None:
        alert = Alert(key=key, user=incident["user"], opened_at=opened, **fields)
        db.add(alert)
        db.flush()
        audit.record(db, "alert.open", user=None, entity="alert", entity_id=alert.id,
                     meta={"subject": alert.user, "score": alert.score, "severity": alert.severity,
                           "scenario": alert.scenario})
        return alert, True
    if alert.status in ("dismissed", "resolved") and fields["score"] > alert.score + 0.1:
        alert.status = "new"  # it came back worse: look again
    for name, value in fields.items():
        setattr(alert, name, value)
    return alert, False


# -- triage ----------------------------------------------------------------------
class Triage:
    """What one officer does with alerts."""

    def __init__(self, db: Session, officer: str, ip: str | None = None) -> None:
        self.db, self.officer, self.ip = db, officer, ip

    def get(self, alert_id: int) -> Alert:
        alert = self.db.get(Alert, alert_id)
        if alert is None:
            raise NotFound(entity="alert")
        return alert

    def set_status(self, alert_id: int, status: str, reason: str = "") -> Alert:
        alert = self.get(alert_id)
        if status not in STATUSES:
            raise ValidationFailed({"status": f"must be one of {', '.join(STATUSES)}"})
        if status == "dismissed" and len(reason.strip()) < 5:
            raise ValidationFailed({"reason": "say why this alert is dismissed"})
        if status == alert.status:
            raise Conflict(detail=f"The alert is already {status}.")
        before = alert.status
        alert.status, alert.resolution = status, reason.strip()[:500] or alert.resolution
        self._note(alert, "status", f"{before} → {status}" + (f": {reason.strip()}" if reason else ""))
        self._audit("alert.status", alert, before=before, after=status, reason=reason[:500])
        return alert

    def assign(self, alert_id: int, assignee: str | None) -> Alert:
        alert = self.get(alert_id)
        alert.assignee = assignee
        self._note(alert, "status", f"assigned to {assignee or 'nobody'}")
        self._audit("alert.assign", alert, assignee=assignee)
        return alert

    def comment(self, alert_id: int, body: str) -> Alert:
        alert = self.get(alert_id)
        if not body.strip():
            raise ValidationFailed({"body": "write something"})
        self._note(alert, "comment", body.strip()[:5000])
        self._audit("alert.comment", alert)
        return alert

    def responded(self, alert_id: int, what: str) -> Alert:
        alert = self.get(alert_id)
        self._note(alert, "action", what)
        if alert.status == "new":
            alert.status = "investigating"
        self._audit("alert.respond", alert, response=what)
        return alert

    def bulk_dismiss(self, alert_ids: list[int], reason: str) -> int:
        done = 0
        for alert_id in alert_ids:
            if self.get(alert_id).status in OPEN:
                self.set_status(alert_id, "dismissed", reason)
                done += 1
        return done

    def _note(self, alert: Alert, kind: str, body: str) -> None:
        alert.notes.append(AlertNote(author=self.officer, kind=kind, body=body))

    def _audit(self, action: str, alert: Alert, **meta: Any) -> None:
        audit.record(self.db, action, user=self.officer, ip=self.ip, entity="alert",
                     entity_id=alert.id, meta={"subject": alert.user, **meta})
