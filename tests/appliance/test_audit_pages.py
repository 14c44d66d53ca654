"""The audit trail for officers and auditors, and field history on record pages."""

from __future__ import annotations

import json

from sqlalchemy import select

from appliance.auth import issue_token
from audit.models import AuditEvent


def _edit(client, account, **data):
    return client.post(f"/accounts/{account.id}/edit", data={"csrf_token": client.csrf, **data})


def test_officers_and_auditors_search_the_trail_staff_and_it_cannot(app, make, login):
    alice = make.user("alice")
    make.user("sofia", roles=("security_officer",), team=None)
    make.user("audrey", roles=("auditor",), team=None)
    make.user("ian", roles=("it_admin",), team=None)
    account = make.account(alice)
    login("alice").get(f"/accounts/{account.id}")
    for who in ("sofia", "audrey"):
        page = login(who).get("/audit?user=alice&action=record.view")
        assert page.status_code == 200
        assert "record.view" in page.get_data(as_text=True)
    for who in ("alice", "ian"):
        assert login(who).get("/audit").status_code == 403


def test_timeline_event_page_and_export(app, make, db, login):
    alice = make.user("alice")
    make.user("sofia", roles=("security_officer",), team=None)
    account = make.account(alice)
    client = login("alice")
    _edit(client, account, phone="+49 40 5550101")
    sofia = login("sofia")
    assert "alice" in sofia.get("/audit/users/alice").get_data(as_text=True)
    update = db.scalars(select(AuditEvent).where(AuditEvent.action == "record.update")).one()
    detail = sofia.get(f"/audit/events/{update.seq}").get_data(as_text=True)
    assert "phone" in detail and "5550101" not in detail  # which field, never its value
    lines = sofia.get("/audit/export.jsonl?user=alice").get_data(as_text=True).splitlines()
    events = [json.loads(line) for line in lines]
    assert {"seq", "ts", "user", "action", "entity", "count", "ip", "meta"} <= set(events[0])
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    reads = db.scalars(select(AuditEvent.action).where(AuditEvent.user == "sofia")).all()
    assert {"audit.search", "audit.view", "audit.export"} <= set(reads)


def test_audit_api_obeys_rights(app, make, db):
    make.user("audrey", roles=("auditor",), team=None)
    make.user("alice")
    clients = {}
    for name in ("audrey", "alice"):
        from crm.people import find_user

        token = issue_token(db, find_user(db, name), "t")
        db.commit()
        clients[name] = app.test_client()
        clients[name].environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    page = clients["audrey"].get("/api/v1/audit/events?per_page=5")
    assert page.status_code == 200 and set(page.json) == {"items", "total", "page", "per_page"}
    assert clients["alice"].get("/api/v1/audit/events").status_code == 403
    assert clients["audrey"].get("/api/v1/audit/events?since=yesterday").status_code == 400


def test_field_history_shows_changes_as_the_viewer_may_see_them(app, make, db, login):
    make.team("Sales")
    alice = make.user("alice", team="Sales")
    make.user("mark", roles=("manager",), team="Sales")
    account = make.account(alice, tax_id="DE111111111", phone="+49 30 1111111")
    mark = login("mark")
    assert _edit(mark, account, tax_id="DE222222222", phone="+49 30 2222222").status_code == 302
    own = login("mark").get(f"/accounts/{account.id}").get_data(as_text=True)
    assert "DE222222222" in own and "+49 30 2222222" in own
    staff = login("alice").get(f"/accounts/{account.id}").get_data(as_text=True)
    assert "+49 30 2222222" in staff  # phone: visible to staff
    assert "DE222222222" not in staff and "2222" in staff  # tax id: masked for staff
    stored = db.scalars(select(AuditEvent.meta).where(AuditEvent.action == "record.update")).one()
    assert "DE222222222" not in stored and "2222222" not in stored  # encrypted in the log
