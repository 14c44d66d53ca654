"""Four eyes with no side door: every way of giving a person rights to client data (a new
person with a role, a change of roles, a move to another team, a share with a team) waits for
a second administrator, and until then gives nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from crm.access import Action, Entity, Policy
from crm.identity import Team, User
from crm.models import AccountShare
from crm.rights import RightsChange


def _post(client, path, **data):
    return client.post(path, data={"csrf_token": client.csrf, **data})


@pytest.fixture
def org(app, make, db, login):
    sales = make.team("Sales")
    make.team("North", sales)
    make.team("South", sales)
    sam = make.user("sam", team="North")
    sven = make.user("sven", team="South")
    make.user("mia", team="Sales")
    for admin in ("ivan", "iris"):
        make.user(admin, roles=("it_admin",), team=None)
    return {"north": make.account(sam, name="North Client"),
            "south": make.account(sven, name="South Client"), "login": login}


def _team(db, name):
    return db.scalars(select(Team).where(Team.name == name)).one().id


def _new_director(db, org):
    ivan = org["login"]("ivan")
    return _post(ivan, "/admin/users", username="dave", full_name="Dave", roles="director",
                 team="South", password="a long enough password"), ("dave", "north")


def _role_change(db, org):
    sven = db.scalars(select(User).where(User.username == "sven")).one()
    return _post(org["login"]("ivan"), f"/admin/users/{sven.id}/roles",
                 roles="director"), ("sven", "north")


def _team_move(db, org):
    sven = db.scalars(select(User).where(User.username == "sven")).one()
    return _post(org["login"]("ivan"), f"/admin/users/{sven.id}/team",
                 team_id=str(_team(db, "North"))), ("sven", "north")


def _team_share(db, org):
    # sven shares his account with Sales, the team above his own: mia (Sales) gains it
    return _post(org["login"]("sven"), f"/accounts/{org['south'].id}/shares",
                 grantee=f"team:{_team(db, 'Sales')}", level="read"), ("mia", "south")


#: path -> how it is asked for; each answers (the response, (who would gain, which account))
PATHS = {"new user with a client-data role": _new_director, "change of roles": _role_change,
         "move to another team": _team_move, "share with a team": _team_share}


def _reads(db, username, account) -> bool:
    db.rollback()
    db.expire_all()
    user = db.scalars(select(User).where(User.username == username)).one()
    return Policy(db, user).may_act_on_id(Entity.ACCOUNT, account.id, Action.READ)


@pytest.mark.parametrize("path", PATHS)
def test_rights_to_client_data_wait_for_a_second_administrator(db, org, path):
    response, (who, account) = PATHS[path](db, org)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    change = db.scalars(select(RightsChange).where(RightsChange.status == "pending")).one()
    assert not _reads(db, who, org[account]), f"{path} gave {who} the account at once"
    proposer = org["login"]("ivan")
    if change.requested_by == db.scalars(select(User.id).where(User.username == "ivan")).one():
        assert _post(proposer, f"/admin/changes/{change.id}/approve").status_code == 403
    assert _post(org["login"]("iris"), f"/admin/changes/{change.id}/approve").status_code == 302
    db.rollback()
    assert db.get(RightsChange, change.id).status == "applied"
    assert _reads(db, who, org[account]), f"{path} approved but not applied"


def test_a_new_user_gets_roles_without_client_data_at_once(db, org):
    ivan = org["login"]("ivan")
    assert _post(ivan, "/admin/users", username="aude", full_name="Aude", roles="auditor",
                 password="a long enough password").status_code == 302
    db.rollback()
    aude = db.scalars(select(User).where(User.username == "aude")).one()
    assert aude.role_names == ["auditor"]
    assert db.scalars(select(RightsChange)).all() == []


def test_a_team_move_of_someone_without_client_roles_applies_at_once(db, org):
    iris = db.scalars(select(User).where(User.username == "iris")).one()
    ivan = org["login"]("ivan")
    assert _post(ivan, f"/admin/users/{iris.id}/team",
                 team_id=str(_team(db, "North"))).status_code == 302
    db.rollback()
    db.expire_all()
    assert db.get(User, iris.id).team_id == _team(db, "North")


def test_shares_are_bounded_by_the_sharing_rules(db, org):
    """No share past the longest allowed date, and team shares only with one's own team and
    the teams above it (by default)."""
    sven = org["login"]("sven")
    far = (datetime.now(UTC) + timedelta(days=91)).date().isoformat()
    mia = db.scalars(select(User).where(User.username == "mia")).one()
    for data in ({"grantee": f"user:{mia.id}", "expires_on": "2099-12-31"},
                 {"grantee": f"user:{mia.id}", "expires_on": far},
                 {"grantee": f"team:{_team(db, 'North')}"}):  # a sibling team
        refused = _post(sven, f"/accounts/{org['south'].id}/shares", level="read", **data)
        assert refused.status_code == 302 and "/shares" in refused.headers["Location"], data
    db.rollback()
    assert db.scalars(select(AccountShare)).all() == []
    assert db.scalars(select(RightsChange)).all() == []
    page = sven.get(f"/accounts/{org['south'].id}/shares").get_data(as_text=True)
    assert "Team Sales" in page and "Team North" not in page and "90 days" in page
    made = _post(sven, f"/accounts/{org['south'].id}/shares", level="read",
                 grantee=f"user:{mia.id}")  # no date: the longest allowed
    assert made.status_code == 302
    db.rollback()
    share = db.scalars(select(AccountShare)).one()
    days = (share.expires_at.replace(tzinfo=UTC) - datetime.now(UTC)).days
    assert 89 <= days <= 90
