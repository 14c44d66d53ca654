"""What the officer console computes about a person: their activity against their own
baseline and their peers', and the client records an alert's evidence touched."""

from __future__ import annotations

import json
import statistics
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.models import AuditEvent
from crm.identity import User
from crm.readapi import account_names

#: Actions whose record counts measure how much of the client base someone touched.
READS = ("record.view", "record.search", "export", "print", "copy", "api.read", "report.run",
         "file.external")


def daily_records(db: Session, users: list[str], since: datetime) -> dict[str, dict[date, int]]:
    """Client records touched per person per day."""
    rows = db.execute(select(AuditEvent.user, AuditEvent.ts, AuditEvent.count).where(
        AuditEvent.user.in_(users), AuditEvent.action.in_(READS), AuditEvent.ts >= since))
    out: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for user, ts, count in rows:
        out[user][ts.date()] += count
    return out


def risk_timeline(db: Session, username: str, days: int = 30) -> dict[str, Any]:
    """The person's daily records touched, their own 30-day median, and their peers' median."""
    since = datetime.now(UTC) - timedelta(days=days)
    person = db.scalars(select(User).where(User.username == username)).first()
    peers = []
    if person is not None:
        roles = set(person.role_names)
        peers = [u.username for u in db.scalars(select(User).where(User.username != username))
                 if set(u.role_names) & roles][:200]
    counts = daily_records(db, [username, *peers], since)
    labels = [(since + timedelta(days=i + 1)).date() for i in range(days)]
    mine = [counts[username].get(d, 0) for d in labels]
    own_median = statistics.median(mine) if mine else 0
    peer_median = [statistics.median([counts[p].get(d, 0) for p in peers]) if peers else 0 for d in labels]
    return {"labels": [d.isoformat() for d in labels], "mine": mine,
            "baseline": [own_median] * len(labels), "peers": peer_median, "peer_count": len(peers)}


def for_officers(event: dict[str, Any]) -> dict[str, Any]:
    """An audit event as an officer may see it. Officers see client records by name and owner
    only: a change's old and new values (in clear, or encrypted like notes) are details of the
    record, so the change names its fields and nothing more."""
    meta = event.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("changes"), dict):
        return event
    return {**event, "meta": {**meta, "changes": sorted(meta["changes"])}}


def records_in_evidence(db: Session, seqs: list[int], limit: int = 200) -> tuple[list[dict[str, Any]], int]:
    """The accounts the evidence events name: their names and owners only, never their details."""
    ids: set[str] = set()
    for entity, entity_id, meta in db.execute(select(AuditEvent.entity, AuditEvent.entity_id, AuditEvent.meta)
                                              .where(AuditEvent.seq.in_(seqs))):
        if entity == "account" and entity_id:
            ids.add(entity_id)
        try:
            listed = json.loads(meta).get("ids", [])
        except (TypeError, ValueError, AttributeError):
            listed = []
        if entity == "account" and isinstance(listed, list):
            ids.update(str(i) for i in listed)
    keys = []
    for raw in ids:
        try:
            keys.append(uuid.UUID(raw))
        except ValueError:
            continue
    total = len(keys)
    found = [{"id": str(r[0]), "name": r[1], "owner": r[2]} for r in account_names(db, keys[:limit])]
    return found, total


def open_counts(db: Session) -> dict[str, int]:
    from dlp.alerts import OPEN, Alert

    return dict(db.execute(select(Alert.severity, func.count()).where(Alert.status.in_(OPEN))
                           .group_by(Alert.severity)).all())
