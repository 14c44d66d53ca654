"""Separation of duties, four eyes, restrictions that act now, sharing, export requests,
and forged input — through the pages and the API, as people would try it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from appliance.auth import issue_token
from audit.models import AuditEvent
from crm.identity import ApiToken, Role, User, UserSession
from crm.models import Account, AccountShare
from crm.rights import RightsChange


def _events(db, action):
    return db.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()


def _staff_role(db):
    return db.scalars(select(Role).where(Role.name == "staff")).one()


def _post(client, path, **data):
    return client.post(path, data={"csrf_token": client.csrf, **data})


def _role_form(role_rights_doc, **overrides):
    """The role page's form for a rights document, with some grants overridden."""
    form = {}
    for e, a, s in role_rights_doc["grants"]:
        form[f"scope:{e}:{a}"] = s
    for e, f, lv in role_rights_doc["fields"]:
        form[f"level:{e}:{f}"] = lv
    form.update(export_rows_per_export=str(role_rights_doc["export_rows_per_export"]),
                export_rows_per_day=str(role_rights_doc["export_rows_per_day"]))
    form.update(overrides)
    return form


def test_rights_of_an_exporting_role_need_a_second_admin(app, make, db, login):
    from crm.rights import role_rights

    make.user("ian", roles=("it_admin",), team=None)
    make.user("ivy", roles=("it_admin",), team=None)
    staff = _staff_role(db)
    ian = login("ian")
    response = _post(ian, f"/admin/roles/{staff.id}",
                     **_role_form(role_rights(staff), **{"scope:account:export": "all"}))
    assert response.status_code == 302
    change = db.scalars(select(RightsChange)).one()
    assert change.status == "pending"
    db.expire_all()
    assert ["account", "export", "all"] not in role_rights(_staff_role(db))["grants"]
    # the proposer cannot approve it
    assert _post(ian, f"/admin/changes/{change.id}/approve").status_code == 403
    ivy = login("ivy")
    assert _post(ivy, f"/admin/changes/{change.id}/approve").status_code == 302
    db.expire_all()
    assert db.get(RightsChange, change.id).status == "applied"
    assert ["account", "export", "all"] in role_rights(_staff_role(db))["grants"]
    applied = _events(db, "rights.apply")[-1]
    meta = json.loads(applied.meta)
    assert ["account", "export", "own"] in meta["before"]["grants"]
    assert ["account", "export", "all"] in meta["after"]["grants"]
    assert {e.action for e in db.scalars(select(AuditEvent))} >= {"rights.propose",
                                                                   "rights.apply",
                                                                   "access.denied"}


def test_nobody_grants_themselves_a_right(app, make, db, login):
    make.user("ian", roles=("it_admin",), team=None)
    make.user("ivy", roles=("it_admin",), team=None)
    ian_user = db.scalars(select(User).where(User.username == "ian")).one()
    ian = login("ian")
    # not their own roles
    response = _post(ian, f"/admin/users/{ian_user.id}/roles", roles="director")
    assert response.status_code == 403
    # not a role they hold
    it_role = db.scalars(select(Role).where(Role.name == "it_admin")).one()
    from crm.rights import role_rights

    response = _post(ian, f"/admin/roles/{it_role.id}",
                     **_role_form(role_rights(it_role), **{"scope:account:read": "all"}))
    assert response.status_code == 403
    # another admin proposes director for ian: ian cannot approve it for himself
    ivy = login("ivy")
    assert _post(ivy, f"/admin/users/{ian_user.id}/roles", roles="director").status_code == 302
    change = db.scalars(select(RightsChange)).one()
    assert change.status == "pending"
    assert _post(ian, f"/admin/changes/{change.id}/approve").status_code == 403
    db.expire_all()
    assert db.get(User, ian_user.id).role_names == ["it_admin"]


def test_freeze_acts_at_once_in_open_sessions_and_tokens(app, make, db, login):
    alice = make.user("alice")
    make.user("sofia", roles=("security_officer",), team=None)
    account = make.account(alice)
    token = issue_token(db, alice, "script")
    db.commit()
    session = login("alice")
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert _post(login("sofia"), f"/admin/users/{alice.id}/freeze",
                 reason="suspected leak").status_code == 302
    # still reads, nothing else
    assert session.get(f"/accounts/{account.id}").status_code == 200
    assert _post(session, f"/accounts/{account.id}/edit", name="Changed").status_code == 403
    assert _post(session, "/accounts/export").status_code == 403
    assert session.get(f"/accounts/{account.id}/print").status_code == 403
    assert api.patch(f"/api/v1/accounts/{account.id}", json={"city": "X"}).status_code == 403
    assert api.post("/api/v1/exports", json={"resource": "accounts"}).status_code == 403
    assert _events(db, "user.freeze")[0].entity_id == "alice"


def test_officers_cannot_restrict_themselves_and_others_cannot_restrict(app, make, db, login):
    sofia = make.user("sofia", roles=("security_officer",), team=None)
    bob = make.user("bob")
    make.user("mark", roles=("manager",))
    assert _post(login("sofia"), f"/admin/users/{sofia.id}/freeze", reason="x").status_code == 403
    assert _post(login("mark"), f"/admin/users/{bob.id}/freeze", reason="x").status_code == 403
    db.expire_all()
    assert db.get(User, bob.id).frozen_at is None


def test_notice_period_tightens_caps_and_is_recorded(app, make, db, login):
    alice = make.user("alice")
    make.user("sofia", roles=("security_officer",), team=None)
    for _ in range(60):
        make.account(alice)
    client = login("alice")
    assert _post(client, "/accounts/export", sort="name").status_code == 200
    _post(login("sofia"), f"/admin/users/{alice.id}/notice", reason="resigned")
    refused = _post(client, "/accounts/export", sort="name")
    assert refused.status_code == 403
    assert "limit is 50 per export" in refused.get_data(as_text=True)
    notice = _events(db, "user.notice")[0]
    assert notice.user == "alice" and json.loads(notice.meta)["by"] == "sofia"


def test_offboarding_revokes_everything_and_reassigns_every_record(app, make, db, login):
    alice = make.user("alice")
    bob = make.user("bob")
    make.user("sofia", roles=("security_officer",), team=None)
    accounts = [make.account(alice) for _ in range(3)]
    make.deal(accounts[0], alice)
    token = issue_token(db, alice, "script")
    db.commit()
    session = login("alice")
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    response = _post(login("sofia"), f"/admin/users/{alice.id}/offboard",
                     successor_id=str(bob.id), reason="left the company")
    assert response.status_code == 302
    assert session.get("/").status_code == 302  # signed out everywhere
    assert api.get("/api/v1/accounts").status_code == 401
    db.expire_all()
    assert {a.owner_id for a in db.scalars(select(Account))} == {bob.id}
    assert all(t.revoked_at for t in db.scalars(select(ApiToken)))
    assert all(s.revoked_at for s in db.scalars(select(UserSession).where(
        UserSession.user_id == alice.id)))
    reassigned = [e for e in _events(db, "record.reassign") if e.entity == "account"][0]
    assert reassigned.count == 3 and len(json.loads(reassigned.meta)["ids"]) == 3


def test_sharing_an_account_with_someone_outside_the_team(app, make, db, login):
    alice = make.user("alice", team="North")
    carl = make.user("carl", team="South")
    account = make.account(alice, name="Shared Oy")
    carl_client = login("carl")
    assert carl_client.get(f"/accounts/{account.id}").status_code == 404
    alice_client = login("alice")
    form = alice_client.get(f"/accounts/{account.id}/shares").get_data(as_text=True)
    assert f'value="user:{carl.id}"' in form and f'value="user:{alice.id}"' not in form
    refused = _post(alice_client, f"/accounts/{account.id}/shares", grantee="nobody")
    assert refused.headers["Location"].endswith(f"/accounts/{account.id}/shares")
    until = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    assert _post(alice_client, f"/accounts/{account.id}/shares", grantee=f"user:{carl.id}",
                 level="read", expires_on=until).status_code == 302
    assert "carl" in alice_client.get(f"/accounts/{account.id}").get_data(as_text=True).lower()
    assert carl_client.get(f"/accounts/{account.id}").status_code == 200
    assert carl_client.get(f"/accounts/{account.id}/shares").status_code in (403, 404)
    assert "Shared Oy" in carl_client.get("/accounts").get_data(as_text=True)
    # read, not edit; and carl cannot share it on
    assert _post(carl_client, f"/accounts/{account.id}/edit", name="X").status_code == 403
    assert _post(carl_client, f"/accounts/{account.id}/shares", grantee=f"user:{alice.id}",
                 level="edit").status_code in (403, 404)
    # an expired share gives nothing
    share = db.scalars(select(AccountShare)).one()
    share.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    db.commit()
    assert carl_client.get(f"/accounts/{account.id}").status_code == 404


def test_export_above_the_cap_becomes_a_request_a_manager_decides(app, make, db, login):
    make.team("Sales")
    alice = make.user("alice", team="Sales")
    make.user("mark", roles=("manager",), team="Sales")
    _staff_role(db).export_rows_per_export = 2
    db.commit()
    for _ in range(3):
        make.account(alice)
    alice_client = login("alice")
    refused = _post(alice_client, "/accounts/export", sort="name")
    assert refused.status_code == 403 and "Ask for approval" in refused.get_data(as_text=True)
    assert _post(alice_client, "/exports/requests", entity="account", rows="3", sort="name",
                 reason="Quarterly mailing to all my clients").status_code == 302
    mark = login("mark")
    page = mark.get("/exports/requests").get_data(as_text=True)
    assert "Quarterly mailing" in page
    request_id = db.scalars(select(AuditEvent).where(AuditEvent.action == "export.request")
                            ).one().meta
    rid = json.loads(request_id)["request"]
    assert _post(alice_client, f"/exports/requests/{rid}/approve").status_code == 404
    assert _post(mark, f"/exports/requests/{rid}/approve").status_code == 302
    first = _post(alice_client, f"/exports/requests/{rid}/run")
    assert first.status_code == 200 and first.get_data(as_text=True).count("\n") == 4
    assert _post(alice_client, f"/exports/requests/{rid}/run").status_code == 403  # used up
    assert {e.action for e in db.scalars(select(AuditEvent))} >= {
        "export.refused", "export.request", "export.approve", "export"}


def test_forged_owner_team_and_fields_are_refused_and_audited(app, make, db, login):
    alice = make.user("alice", team="North")
    stranger = make.user("stranger", team="South")
    account = make.account(alice)
    client = login("alice")
    for data in ({"name": "X", "owner_id": str(stranger.id)},
                 {"name": "X", "team_id": "999"},
                 {"name": "X", "tax_id": "DE123456789"}):  # tax ids are masked for staff
        response = _post(client, f"/accounts/{account.id}/edit", **data)
        assert response.status_code in (403, 422), data
    db.expire_all()
    unchanged = db.get(Account, account.id)
    assert unchanged.owner_id == alice.id and unchanged.name != "X"
    denials = _events(db, "access.denied")
    assert len(denials) >= 2


def test_exact_match_on_a_masked_field_is_an_option_of_the_rule(app, make, db, login):
    """The rights editor offers "exact match when masked" per field; once approved, staff find
    an account by its whole tax id (still masked on every page), and not before."""
    from crm.rights import role_rights

    make.team("Sales")
    alice = make.user("alice", team="Sales")
    account = make.account(alice, tax_id="DE000004242")
    make.user("ian", roles=("it_admin",), team=None)
    make.user("ivy", roles=("it_admin",), team=None)
    token = issue_token(db, alice, "t")
    db.commit()
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"

    def found() -> int:
        return api.get("/api/v1/accounts", query_string={"q": "DE000004242"}).json["total"]

    assert found() == 0  # masked for staff, and no exact match by default
    staff = _staff_role(db)
    ian = login("ian")
    assert 'name="exact:account:tax_id"' in ian.get(f"/admin/roles/{staff.id}").get_data(as_text=True)
    assert _post(ian, f"/admin/roles/{staff.id}",
                 **_role_form(role_rights(staff), **{"exact:account:tax_id": "1"})).status_code == 302
    change = db.scalars(select(RightsChange)).one()
    assert change.status == "pending" and found() == 0
    assert _post(login("ivy"), f"/admin/changes/{change.id}/approve").status_code == 302
    db.expire_all()
    assert role_rights(_staff_role(db))["exact_match"] == [["account", "tax_id"]]
    assert found() == 1
    shown = api.get(f"/api/v1/accounts/{account.id}").json["tax_id"]
    assert shown != "DE000004242" and shown.endswith("4242")
