"""Browser beacons for copy, cut and print: what was copied, never the text; rate-limited."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from audit.models import AuditEvent


def _beacon(client, **body):
    return client.post("/api/v1/beacons", json=body, headers={"X-CSRFToken": client.csrf})


def test_copy_becomes_one_audit_event_with_the_records(app, make, db, login):
    alice = make.user("alice")
    accounts = [make.account(alice) for _ in range(3)]
    client = login("alice")
    response = _beacon(client, action="cut", entity="account", ids=[str(a.id) for a in accounts],
                       size=180, page="/accounts")
    assert response.status_code == 201
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "copy")).one()
    meta = json.loads(event.meta)
    assert event.count == 3 and event.user == "alice" and meta["kind"] == "cut"
    assert meta["chars"] == 180 and "text" not in meta


def test_bad_beacons_are_refused_with_a_reason(app, make, login):
    make.user("alice")
    client = login("alice")
    for body in ({"action": "steal"}, {"action": "copy", "entity": "password"},
                 {"action": "copy", "ids": ["not-a-uuid"]},
                 {"action": "copy", "ids": [str(uuid.uuid4())] * 501},
                 {"action": "copy", "size": -1}):
        response = _beacon(client, **body)
        assert response.status_code == 400 and response.json["error"]["message"]
    assert client.post("/api/v1/beacons", json={"action": "copy"}).status_code == 400  # no CSRF


def test_a_flood_of_beacons_is_cut_off(app, make, db, login):
    make.user("alice")
    client = login("alice")
    codes = [_beacon(client, action="copy", entity="account", ids=[]).status_code for _ in range(125)]
    assert codes.count(201) == 120 and codes[-1] == 429
