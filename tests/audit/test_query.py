"""The query API behind the officer and auditor pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

import audit
from appliance.kernel.errors import BadRequest
from audit.query import Search, field_history, get_event, search, user_timeline
from tests.audit.conftest import T0, add_events


@pytest.fixture
def session(engine):
    add_events(engine, 60)
    with Session(engine) as s:
        for n, (old, new) in enumerate([(None, "Acme"), ("Acme", "Acme Ltd"),
                                        ("Acme Ltd", "ACME")]):
            audit.record(s, "record.create" if n == 0 else "record.update", user="bob",
                         entity="account", entity_id="acc-x", ip="10.9.9.9",
                         meta={"changes": {"name": [old, new], **({"phone": [None, "555"]}
                                                                   if n == 1 else {})}},
                         ts=T0 + timedelta(days=1, minutes=n))
            s.commit()
        audit.record(s, "record.update", user="bob", entity="account", entity_id="acc-y",
                     meta={"changes": {"name": ["Other", "Other Co"]}},
                     ts=T0 + timedelta(days=1, minutes=9))
        s.commit()
        yield s


def test_search_filters_and_pages(session):
    page = search(session, Search(user="user1", action="record.view"), page=1, per_page=5)
    assert page.total == 3 and [e["seq"] for e in page.items] == [41, 21, 1]
    assert page.items[0] == {"seq": 41, "ts": "2026-03-02T09:41:00Z", "user": "user1",
                             "action": "record.view", "entity": "account", "entity_id": "acc-41",
                             "count": 1, "ip": "10.0.0.41", "meta": {"i": 41, "note": "é ünïcode"}}
    assert search(session, Search(ip="10.0.0.7")).total == 1
    assert search(session, Search(entity="account", entity_id="acc-42")).items[0]["seq"] == 42
    window = search(session, Search(since=T0 + timedelta(minutes=10),
                                    until=T0 + timedelta(minutes=20), newest_first=False),
                    page=2, per_page=4)
    assert window.total == 10 and [e["seq"] for e in window.items] == [14, 15, 16, 17]
    assert window.to_json()["per_page"] == 4
    assert get_event(session, 7)["seq"] == 7 and get_event(session, 9999) is None
    for bad in ({"page": 0}, {"per_page": 0}, {"per_page": 501}):
        with pytest.raises(BadRequest):
            search(session, **bad)


def test_user_timeline_counts_per_day_and_action(session):
    assert user_timeline(session, "bob") == [
        {"day": "2026-03-03", "action": "record.create", "count": 1},
        {"day": "2026-03-03", "action": "record.update", "count": 3},
    ]
    timeline = user_timeline(session, "user0", until=T0 + timedelta(minutes=30))
    # user0 acts at minutes 0, 5, ... 25; actions cycle login, view, export, update.
    assert timeline == [{"day": "2026-03-02", "action": "export", "count": 1},
                        {"day": "2026-03-02", "action": "login", "count": 2},
                        {"day": "2026-03-02", "action": "record.update", "count": 1},
                        {"day": "2026-03-02", "action": "record.view", "count": 2}]


def test_field_history_in_order(session):
    history = field_history(session, "account", "acc-x")
    assert [(h["field"], h["old"], h["new"], h["action"]) for h in history] == [
        ("name", None, "Acme", "record.create"),
        ("name", "Acme", "Acme Ltd", "record.update"),
        ("phone", None, "555", "record.update"),
        ("name", "Acme Ltd", "ACME", "record.update"),
    ]
    assert [h["new"] for h in field_history(session, "account", "acc-x", field_name="name")] == \
        ["Acme", "Acme Ltd", "ACME"]
    assert history[0]["user"] == "bob" and history[0]["ts"] == "2026-03-03T09:00:00Z"
    assert field_history(session, "account", "nothing") == []
