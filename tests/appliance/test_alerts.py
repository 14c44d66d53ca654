"""Live leak monitoring end to end: audit history, a bulk export, an alert within one
scoring run, the officer console, one-click responses, a signed evidence packet."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

import audit
from appliance.auth import issue_token
from crm.identity import User
from dlp.alerts import Alert
from dlp.live import retrain, score_new_events

PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank")


@pytest.fixture
def history(appliance, make):
    """Six sales people with 45 working days of ordinary reading, then fitted baselines."""
    make.team("Sales")
    for name in PEOPLE:
        make.user(name, team="Sales")
    make.user("sofia", roles=("security_officer",), team=None)
    rng = random.Random(7)
    start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=45)
    with appliance.session() as db:
        for day in range(45):
            when = start + timedelta(days=day)
            if when.weekday() >= 5:
                continue
            for name in PEOPLE:
                ip = f"10.0.0.{PEOPLE.index(name) + 10}"
                audit.record(db, "login", user=name, ip=ip, ts=when)
                for k in range(rng.randint(5, 12)):
                    audit.record(db, "record.view", user=name, ip=ip, entity="account", count=1,
                                 ts=when + timedelta(minutes=20 * k + 5))
                audit.record(db, "record.search", user=name, ip=ip, entity="account",
                             count=rng.randint(10, 40), ts=when + timedelta(hours=5))
                if rng.random() < 0.2:
                    audit.record(db, "export", user=name, ip=ip, entity="account",
                                 count=rng.randint(5, 30), ts=when + timedelta(hours=6))
    retrain(appliance)


def test_bulk_export_raises_an_alert_officers_can_act_on(appliance, app, db, history, login):
    with appliance.session() as session:
        audit.record(session, "user.notice", user="alice", meta={"by": "hr"})
        audit.record(session, "export", user="alice", ip="10.0.0.10", entity="account",
                     count=4000, meta={"format": "csv"})
    opened = score_new_events(appliance)
    assert [a.user for a in opened] == ["alice"]
    alert = db.scalars(select(Alert)).one()
    assert alert.severity in ("high", "critical") and alert.event_seqs
    assert any("4000" in r or "4,000" in r for r in alert.reason_list)
    assert score_new_events(appliance) == []  # nothing new: no duplicate

    sofia = login("sofia")
    queue = sofia.get("/alerts").get_data(as_text=True)
    assert "alice" in queue
    page = sofia.get(f"/alerts/{alert.id}").get_data(as_text=True)
    assert "<svg" in page and "Evidence" in page
    response = sofia.post(f"/alerts/{alert.id}/respond/freeze", data={"csrf_token": sofia.csrf})
    assert response.status_code == 302
    db.expire_all()
    assert db.scalars(select(User).where(User.username == "alice")).one().frozen_at is not None
    assert db.get(Alert, alert.id).status == "investigating"

    packet = sofia.get(f"/alerts/{alert.id}/evidence.json")
    document = json.loads(packet.get_data(as_text=True))
    assert document["packet"]["alert"]["user"] == "alice"
    assert document["signature"] and document["bundle"]["checkpoint"]
    dismissed = sofia.post(f"/alerts/{alert.id}/status", data={"csrf_token": sofia.csrf,
                                                               "status": "dismissed", "reason": ""})
    assert dismissed.status_code == 302
    db.expire_all()
    assert db.get(Alert, alert.id).status == "investigating"  # a dismissal needs a reason


def test_ordinary_work_raises_no_alert(appliance, history):
    with appliance.session() as session:
        now = datetime.now(UTC)
        for name in PEOPLE:
            audit.record(session, "record.view", user=name, ip=f"10.0.0.{PEOPLE.index(name) + 10}",
                         entity="account", count=1, ts=now)
    assert score_new_events(appliance) == []


def test_alerts_api_and_rights(appliance, app, db, history, login):
    with appliance.session() as session:
        audit.record(session, "export", user="bob", ip="10.0.0.11", entity="account", count=5000)
    score_new_events(appliance)
    clients = {}
    for name in ("sofia", "carol"):
        token = issue_token(db, db.scalars(select(User).where(User.username == name)).one(), "t")
        db.commit()
        clients[name] = app.test_client()
        clients[name].environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    listed = clients["sofia"].get("/api/v1/alerts").json
    assert listed["total"] == 1 and listed["items"][0]["user"] == "bob"
    assert set(listed["items"][0]) >= {"user", "ts", "score", "severity", "scenario", "reasons", "events"}
    assert clients["carol"].get("/api/v1/alerts").status_code == 403
    alert_id = listed["items"][0]["id"]
    changed = clients["sofia"].patch(f"/api/v1/alerts/{alert_id}",
                                     json={"status": "dismissed", "reason": "approved migration"})
    assert changed.status_code == 200 and changed.json["status"] == "dismissed"


def test_exporting_ones_own_book_again_and_again_alerts(appliance, history):
    """Small exports, each within every cap and inside the person's own book, still add up."""
    with appliance.session() as session:
        for _ in range(18):
            audit.record(session, "export", user="alice", ip="10.0.0.10", entity="account",
                         count=70, meta={"format": "csv", "outside_book": 0})
    opened = score_new_events(appliance)
    assert [a.user for a in opened] == ["alice"]
    assert any("1,260" in reason for reason in opened[0].reason_list)


def test_a_new_appliance_without_history_still_alerts_on_a_bulk_export(appliance):
    """Day one: no baseline to judge by, so the policy limits decide on their own."""
    assert score_new_events(appliance) == []  # fits on no history at all, without failing
    with appliance.session() as session:
        audit.record(session, "export", user="newbie", ip="10.0.0.50", entity="account",
                     count=20000, meta={"format": "csv", "outside_book": 20000})
    opened = score_new_events(appliance)
    assert [a.user for a in opened] == ["newbie"]
    assert any(r.startswith("policy: export above") for r in opened[0].reason_list)
