"""Property: for random organisations, roles, records and shares, the accounts a person
reaches through the API, exports and prints are exactly those a plain-Python model of the
rights grants, and a hidden field never appears in any response.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from appliance.auth import issue_token
from crm.exports import Export
from crm.identity import ApiToken, FieldRule, Permission, Role, Team, User, UserRole, UserSession
from crm.models import Account, AccountShare
from tests.factories import _hasher

SCOPES = ("none", "own", "team", "subtree", "all")
FIELDS = ("tax_id", "phone", "email", "notes", "city")


@dataclass
class Org:
    parents: list[int | None]          # team i's parent index
    roles: list[tuple[str, str, list[str]]]  # (read scope, export scope, hidden fields)
    users: list[tuple[int | None, list[int]]]  # (team index, role indexes)
    accounts: list[int]                 # owner user index
    shares: list[tuple[int, int | None, int | None, bool]]  # (account, user, team, expired)


@st.composite
def orgs(draw) -> Org:
    n_teams = draw(st.integers(1, 4))
    parents = [None] + [draw(st.one_of(st.none(), st.integers(0, i - 1))) for i in range(1, n_teams)]
    roles = [(draw(st.sampled_from(SCOPES)), draw(st.sampled_from(SCOPES)),
              draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=3)))
             for _ in range(draw(st.integers(1, 3)))]
    users = [(draw(st.one_of(st.none(), st.integers(0, n_teams - 1))),
              draw(st.lists(st.integers(0, len(roles) - 1), unique=True, max_size=2)))
             for _ in range(draw(st.integers(2, 5)))]
    accounts = draw(st.lists(st.integers(0, len(users) - 1), min_size=1, max_size=8))
    shares = draw(st.lists(st.tuples(st.integers(0, len(accounts) - 1),
                                     st.one_of(st.none(), st.integers(0, len(users) - 1)),
                                     st.one_of(st.none(), st.integers(0, n_teams - 1)),
                                     st.booleans()), max_size=3))
    shares = [(a, u, None if u is not None else t, exp) for a, u, t, exp in shares
              if (u is None) != (t is None)]
    return Org(parents, roles, users, accounts, shares)


def subtree(parents: list[int | None], team: int) -> set[int]:
    found = {team}
    changed = True
    while changed:
        grown = {i for i, p in enumerate(parents) if p in found} | found
        changed, found = grown != found, grown
    return found


def expected(org: Org, viewer: int, scope_index: int) -> set[int]:
    """Accounts (indexes) the viewer reaches for read (0) or export (1), by the model."""
    team, role_ids = org.users[viewer]
    scopes = [org.roles[r][scope_index] for r in role_ids]
    best = max(scopes, key=SCOPES.index, default="none")
    reached = set()
    for i, owner in enumerate(org.accounts):
        owner_team = org.users[owner][0]
        ok = {"none": False, "own": owner == viewer,
              "team": team is not None and owner_team == team,
              "subtree": team is not None and owner_team is not None
              and owner_team in subtree(org.parents, team),
              "all": True}[best]
        if scope_index == 0 and best != "none":
            ok = ok or any(a == i and not exp and (u == viewer or (t is not None and t == team))
                           for a, u, t, exp in org.shares)
        if ok:
            reached.add(i)
    return reached


def hidden_for(org: Org, viewer: int) -> set[str]:
    """Fields hidden from the viewer: hidden by every one of their roles that can read."""
    readers = [org.roles[r] for r in org.users[viewer][1] if org.roles[r][0] != "none"]
    return set.intersection(*(set(r[2]) for r in readers)) if readers else set()


def build(db, org: Org) -> tuple[list[User], list[Account]]:
    for model in (AccountShare, Account, Export, ApiToken, UserSession, UserRole, FieldRule, Permission):
        db.execute(delete(model))
    db.execute(delete(User))
    db.execute(delete(Role).where(Role.name.like("prop%")))
    db.execute(delete(Team))
    db.commit()
    teams = []
    for i, parent in enumerate(org.parents):
        team = Team(name=f"T{i}", parent_id=teams[parent].id if parent is not None else None)
        db.add(team)
        db.flush()
        teams.append(team)
    roles = []
    for i, (read, export, hidden) in enumerate(org.roles):
        role = Role(name=f"prop{i}", label=f"Prop {i}", description="")
        role.permissions = [Permission(entity="account", action="read", scope=read),
                            Permission(entity="account", action="export", scope=export),
                            Permission(entity="account", action="print", scope=read)]
        role.field_rules = [FieldRule(entity="account", field=f, level="hidden") for f in hidden]
        db.add(role)
        roles.append(role)
    db.flush()
    users = []
    for i, (team, role_ids) in enumerate(org.users):
        user = User(username=f"p{i}", full_name=f"P {i}", password_hash=_hasher.hash("x" * 12),
                    team_id=teams[team].id if team is not None else None)
        user.roles = [roles[r] for r in role_ids]
        db.add(user)
        users.append(user)
    db.flush()
    accounts = []
    for i, owner in enumerate(org.accounts):
        account = Account(name=f"Acc {i}", owner_id=users[owner].id, team_id=users[owner].team_id,
                          tax_id=f"TAX{i:05d}", phone=f"+49 30 {i:07d}",
                          email=f"secret{i}@client.example", notes=f"note-{i}-secret",
                          city=f"City{i}")
        db.add(account)
        accounts.append(account)
    db.flush()
    now = datetime.now(UTC)
    for a, u, t, expired in org.shares:
        db.add(AccountShare(account_id=accounts[a].id, user_id=users[u].id if u is not None else None,
                            team_id=teams[t].id if t is not None else None, level="read",
                            expires_at=now - timedelta(hours=1) if expired else now + timedelta(days=1),
                            created_by=users[0].id))
    db.commit()
    return users, accounts


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(org=orgs())
def test_reach_equals_the_model_and_hidden_fields_never_leak(app, db, org):
    users, accounts = build(db, org)
    index_of = {str(a.id): i for i, a in enumerate(accounts)}
    for viewer, user in enumerate(users):
        token = issue_token(db, user, "prop")
        db.commit()
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        reads = expected(org, viewer, 0)
        listing = client.get("/api/v1/accounts?per_page=200")
        got = {index_of[i["id"]] for i in listing.json["items"]} if listing.status_code == 200 else set()
        assert got == reads, f"user p{viewer} lists {got}, model says {reads}"
        for i, account in enumerate(accounts):
            one = client.get(f"/api/v1/accounts/{account.id}")
            assert (one.status_code == 200) == (i in reads)
        hidden = hidden_for(org, viewer)
        bodies = [listing.get_data(as_text=True)]
        export = client.post("/api/v1/exports", json={"resource": "accounts"})
        if export.status_code == 200:
            text = export.get_data(as_text=True).lstrip("\ufeff")
            rows = list(csv.DictReader(io.StringIO(text)))
            exported = {index_of[r["id"]] for r in rows}
            # exports need read as well as export reach, shares never grant exports
            assert exported == expected(org, viewer, 1) & {i for i in reads}
            assert not hidden & set(rows[0] if rows else {})
            bodies.append(text)
        for field in hidden:
            for i in range(len(accounts)):
                value = {"tax_id": f"TAX{i:05d}", "email": f"secret{i}@client.example",
                         "notes": f"note-{i}-secret", "phone": f"{i:07d}", "city": f"City{i}"}[field]
                assert all(value not in body for body in bodies), f"{field} leaked to p{viewer}"
