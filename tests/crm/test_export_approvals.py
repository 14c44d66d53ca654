"""An approval binds: the server counts what a request covers, the approver sees that, and
running it exports exactly that or nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from audit.models import AuditEvent
from crm.export_requests import ExportRequest
from crm.identity import FieldRule, Role
from crm.models import Account


def _post(client, path, **data):
    return client.post(path, data={"csrf_token": client.csrf, **data})


def _add_account(db, world):
    world["make"].account(world["alice"], name="Late Addition")


def _remove_account(db, world):
    db.delete(db.get(Account, world["accounts"][0]))
    db.commit()


def _hide_a_column(db, world):
    staff = db.scalars(select(Role).where(Role.name == "staff")).one()
    staff.field_rules.append(FieldRule(entity="account", field="website", level="hidden"))
    db.commit()


#: What happens between approval and download, and whether the download may still run.
CHANGES = {
    "nothing": (None, 200),
    "a record added to the list": (_add_account, 409),
    "a record gone from the list": (_remove_account, 409),
    "a column no longer exportable": (_hide_a_column, 409),
}


@pytest.fixture
def world(app, make, db, login):
    make.team("Sales")
    alice = make.user("alice", team="Sales")
    make.user("mark", roles=("manager",), team="Sales")
    staff = db.scalars(select(Role).where(Role.name == "staff")).one()
    staff.export_rows_per_export = 2
    db.commit()
    accounts = [make.account(alice, name=f"Client {n}").id for n in range(3)]
    return {"make": make, "alice": alice, "accounts": accounts,
            "alice_client": login("alice"), "mark": login("mark")}


@pytest.mark.parametrize("change", CHANGES)
def test_an_approved_export_is_exactly_what_was_requested(db, world, change):
    alice, mark = world["alice_client"], world["mark"]
    # the form says one row; the list holds three
    assert _post(alice, "/exports/requests", entity="account", rows="1", sort="name",
                 reason="Quarterly mailing to all my clients").status_code == 302
    req = db.scalars(select(ExportRequest)).one()
    assert req.rows == 3 and len(req.ids_sha256) == 64
    assert "website" in req.field_list
    page = mark.get("/exports/requests").get_data(as_text=True)
    assert ">3</td>" in page and req.ids_sha256[:12] in page and "website" in page
    assert _post(mark, f"/exports/requests/{req.id}/approve").status_code == 302
    alter, status = CHANGES[change]
    if alter:
        alter(db, world)
    run = _post(alice, f"/exports/requests/{req.id}/run")
    assert run.status_code == status, run.get_data(as_text=True)[:300]
    exports = db.scalars(select(AuditEvent).where(AuditEvent.action == "export")).all()
    db.expire_all()
    if status == 200:
        body = run.get_data(as_text=True)
        assert all(str(i) in body for i in world["accounts"])
        assert [e.count for e in exports] == [3]
        assert db.get(ExportRequest, req.id).status == "used"
    else:
        assert "Ask for approval again" in run.get_data(as_text=True)
        assert exports == [] and db.get(ExportRequest, req.id).status == "approved"


def test_the_request_event_names_what_it_covers(db, world):
    _post(world["alice_client"], "/exports/requests", entity="account", rows="-5",
          reason="Quarterly mailing to all my clients")
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "export.request")).one()
    meta = json.loads(event.meta)
    assert event.count == 3 and len(meta["ids_sha256"]) == 64 and "name" in meta["fields"]
