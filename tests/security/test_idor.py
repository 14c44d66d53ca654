"""Insecure direct object references: every route that takes an id (from the url_map), and
every id sent in a query string or a body, tried with someone else's thing. The answer is 404
(it does not exist for you) or 403 (you may not do this at all), never its data, and nothing
changes."""

from __future__ import annotations

import io
import re
from typing import Any

from sqlalchemy import func, select

from audit.models import AuditEvent
from crm.access import Entity
from crm.models import AccountShare
from tests.security.routes import routes, targets
from tests.security.world import RESOURCES

#: Route parameters that name one stored thing.
ID_PARAMS = {"account_id", "contact_id", "deal_id", "activity_id", "record_id", "attachment_id",
             "request_id", "batch_id", "share_id", "alert_id", "seq", "user_id", "role_id",
             "change_id", "username"}
#: Text only the victim's things contain.
VICTIM_TEXT = re.compile(r"Acct sue 1|Cont sue 1|Deal sue 1|Act sue 1|offer sue|PDF-1\.4 offer|"
                         r"secret note sue|Support renewal|Support Client|export of 4000",
                         re.IGNORECASE)
#: What changes may leave behind: the refusals themselves, and the attacker's own reads.
HARMLESS = {"access.denied", "input.rejected", "record.search", "api.read", "record.view"}


def _changes(db: Any, since: int) -> set[str]:
    db.rollback()
    return set(db.scalars(select(AuditEvent.action).where(AuditEvent.seq > since))) - HARMLESS


def _last(db: Any) -> int:
    db.rollback()
    return db.scalar(select(func.max(AuditEvent.seq))) or 0


def _sweep(app: Any, org: Any, db: Any, attacker: Any, where: Any) -> tuple[list[str], int]:
    """Every id-bearing route, every method, against ``where``'s things."""
    wrong, tried = [], 0
    for route in routes(app, where):
        if not set(route.params) & ID_PARAMS:
            continue
        for method in sorted(route.methods):
            kwargs: dict[str, Any] = {}
            if method != "GET":
                kwargs = ({"headers": {"X-CSRFToken": attacker.csrf}, "json": {"name": "x"}}
                          if route.url.startswith("/api/") else
                          {"data": {"csrf_token": attacker.csrf, "reason": "because",
                                    "status": "dismissed", "body": "x", "roles": "director",
                                    "file": (io.BytesIO(b"name\nX\n"), "x.csv")}})
            response = attacker.open(route.url, method=method, **kwargs)
            tried += 1
            body = response.get_data(as_text=True)
            if response.status_code not in (403, 404) or VICTIM_TEXT.search(body):
                wrong.append(f"{method} {route.url} ({route.rule}): {response.status_code}")
    return wrong, tried


def _victim(org: Any, db: Any) -> Any:
    """sue's second account (never shared) and what hangs on it, her export request, her
    import upload and her share with team North."""
    victim = targets(org, db, owner="sue", which=1)
    victim.export_request = str(org.sue_export_request_id)
    victim.import_batch = str(org.sue_import_batch_id)
    victim.share = org.shares[1]  # sue's account shared with team North
    return victim


def test_staff_reach_nothing_of_another_team_by_id(app, org, db, login):
    sam = login("sam")
    victim = _victim(org, db)
    since = _last(db)
    wrong, tried = _sweep(app, org, db, sam, victim)
    assert wrong == [], "\n".join(wrong)
    assert _changes(db, since) == set()
    assert tried >= 40


def test_a_manager_reaches_nothing_outside_their_teams_by_id(app, org, db, login):
    mona = login("mona")
    victim = _victim(org, db)
    since = _last(db)
    wrong, tried = _sweep(app, org, db, mona, victim)
    assert wrong == [], "\n".join(wrong)
    assert tried >= 40
    assert _changes(db, since) == set()


def test_ids_in_query_strings_and_bodies(app, org, db, login):
    sam, api = login("sam"), org.api(app, "sam")
    theirs = targets(org, db, owner="sue", which=1).records
    mine = targets(org, db, owner="sam").records
    since = _last(db)
    for kind in ("contacts", "deals", "activities"):
        page = sam.get(f"/{kind}/new?account_id={theirs[Entity.ACCOUNT]}")
        assert page.status_code == 404, kind
    bodies = {"contacts": {"account_id": theirs[Entity.ACCOUNT], "first_name": "A", "last_name": "B"},
              "deals": {"account_id": theirs[Entity.ACCOUNT], "name": "Mine now"},
              "activities": {"account_id": mine[Entity.ACCOUNT], "kind": "call", "subject": "x",
                             "deal_id": theirs[Entity.DEAL]}}
    for resource, body in bodies.items():
        response = api.post(f"/api/v1/{resource}", json=body)
        assert response.status_code == 404 and not VICTIM_TEXT.search(response.get_data(as_text=True))
    linked = api.post("/api/v1/activities", json={
        "account_id": mine[Entity.ACCOUNT], "kind": "call", "subject": "x",
        "contact_id": theirs[Entity.CONTACT]})
    assert linked.status_code == 404
    moved = api.patch(f"/api/v1/contacts/{mine[Entity.CONTACT]}",
                      json={"account_id": theirs[Entity.ACCOUNT]})
    assert moved.status_code in (404, 422)
    for resource, entity in RESOURCES.items():
        listed = api.get(f"/api/v1/{resource}?account_id={theirs[Entity.ACCOUNT]}")
        if entity is not Entity.ACCOUNT:
            assert listed.status_code == 200 and listed.json["items"] == [], resource
    assert _changes(db, since) == set()


def test_export_requests_and_import_uploads_belong_to_their_maker(app, org, db, login):
    tina, mona = login("tina"), login("mona")
    request_id, batch_id = org.export_request_id, org.import_batch_id
    for path in (f"/exports/requests/{request_id}/approve", f"/exports/requests/{request_id}/deny",
                 f"/exports/requests/{request_id}/run", f"/import/{batch_id}"):
        assert tina.post(path, data={"csrf_token": tina.csrf}).status_code == 404, path
    # sam's manager may decide, but only sam may run it, and only sam confirms his upload
    assert mona.post(f"/exports/requests/{request_id}/run",
                     data={"csrf_token": mona.csrf}).status_code == 404
    assert mona.post(f"/import/{batch_id}", data={"csrf_token": mona.csrf}).status_code == 404
    listing = tina.get("/exports/requests").get_data(as_text=True)
    assert "Quarterly mailing" not in listing


def test_a_share_is_removed_only_by_who_may_share_the_account(app, org, db, login):
    """sue shares her account with team North to edit, and with mona to read. sam (North)
    may edit the account through the share, but may not take mona's access away."""
    from crm import sharing
    from crm.access import Policy

    account = targets(org, db, owner="sue").records[Entity.ACCOUNT]
    db.rollback()
    sue = org.people["sue"]
    grant = sharing.share(db, Policy(db, sue), account, user_id=org.people["mona"].id, level="read")
    db.commit()
    sam = login("sam")
    assert sam.get(f"/accounts/{account}/edit").status_code == 200  # the share works
    removed = sam.post(f"/accounts/{account}/shares/{grant.id}/delete",
                       data={"csrf_token": sam.csrf})
    assert removed.status_code in (403, 404)
    db.rollback()
    assert db.get(AccountShare, grant.id) is not None
    # and through another account's URL
    own = targets(org, db, owner="sam").records[Entity.ACCOUNT]
    removed = sam.post(f"/accounts/{own}/shares/{grant.id}/delete", data={"csrf_token": sam.csrf})
    assert removed.status_code in (403, 404)
    db.rollback()
    assert db.get(AccountShare, grant.id) is not None
