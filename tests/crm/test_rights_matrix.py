"""The rights matrix is the specification: for every built-in role, every kind of
record, every action and every path (web pages, API, lists, exports, prints,
reports), what the person reaches must be exactly what this table grants.

The table below is written out by hand on purpose; it is compared with the
running application, not with the code that implements it.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

import pytest

from appliance.auth import issue_token

# role -> {action: scope} for account, contact, deal and activity alike
SPEC: dict[str, dict[str, str]] = {
    "staff": {"read": "team", "create": "own", "edit": "own", "delete": "own", "export": "own",
              "print": "team", "reassign": "none"},
    "manager": {"read": "subtree", "create": "subtree", "edit": "subtree", "delete": "subtree",
                "export": "subtree", "print": "subtree", "reassign": "subtree"},
    "director": {a: "all" for a in ("read", "create", "edit", "delete", "export", "print",
                                    "reassign")},
    "security_officer": {},
    "it_admin": {},
    "auditor": {},
}
RESOURCES = {"account": "accounts", "contact": "contacts", "deal": "deals",
             "activity": "activities"}
#: Who owns each record, relative to the actor: themselves, someone in their team, someone
#: in a team below theirs, someone in a team beside theirs, someone in another department.
OWNERS = ("self", "teammate", "below", "beside", "far")
#: Teams: Sales > North > North East, Sales > South, Support, Marketing.
TEAMS = {  # where the actor sits -> the team of each owner
    "North": {"self": "North", "teammate": "North", "below": "North East", "beside": "South",
              "far": "Support"},
    "Sales": {"self": "Sales", "teammate": "Sales", "below": "North East", "beside": "Marketing",
              "far": "Support"},
}


def reaches(scope: str, owner: str) -> bool:
    return {
        "none": False,
        "own": owner == "self",
        "team": owner in ("self", "teammate"),
        "subtree": owner in ("self", "teammate", "below"),
        "all": True,
    }[scope]


@dataclass
class World:
    actor: Any
    api: Any
    web: Any
    records: dict[tuple[str, str], Any]  # (entity, owner) -> record
    people: dict[str, Any]


@pytest.fixture
def world_for(app, make, db, login):
    def build(role: str) -> World:
        sales = make.team("Sales")
        north = make.team("North", sales)
        make.team("North East", north)
        make.team("South", sales)
        make.team("Support")
        make.team("Marketing")
        # managers lead a department, everyone else sits in a team of it
        teams = TEAMS["Sales" if role == "manager" else "North"]
        people = {owner: make.user("actor" if owner == "self" else f"u_{owner}",
                                   roles=(role,) if owner == "self" else ("staff",),
                                   team=teams[owner]) for owner in OWNERS}
        records = {}
        for owner, person in people.items():
            account = make.account(person, name=f"Acct {owner}")
            records[("account", owner)] = account
            records[("contact", owner)] = make.contact(account, last_name=f"Cont {owner}")
            records[("deal", owner)] = make.deal(account, person, name=f"Deal {owner}",
                                                 stage="won")
            records[("activity", owner)] = make.activity(account, person,
                                                         subject=f"Act {owner}")
        token = issue_token(db, people["self"], "matrix")
        db.commit()
        api = app.test_client()
        api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return World(people["self"], api, login("actor"), records, people)

    return build


def scope_of(role: str, action: str) -> str:
    return SPEC[role].get(action, "none")


ROLES = list(SPEC)


@pytest.mark.parametrize("role", ROLES)
def test_reads_through_every_path_match_the_matrix(role, world_for):
    world = world_for(role)
    wrong = []
    for (entity, owner), record in world.records.items():
        expected = reaches(scope_of(role, "read"), owner)
        resource = RESOURCES[entity]
        got = world.api.get(f"/api/v1/{resource}/{record.id}").status_code
        if (got == 200) != expected or got not in (200, 404, 403):
            wrong.append(f"API GET {entity} of {owner}: {got}")
        listing = world.api.get(f"/api/v1/{resource}?per_page=200")
        listed = {i["id"] for i in listing.json.get("items", [])} if listing.status_code == 200 \
            else set()
        if (str(record.id) in listed) != expected:
            wrong.append(f"API list {entity} of {owner}: listed={str(record.id) in listed}")
        if entity == "account":
            page = world.web.get(f"/accounts/{record.id}").status_code
            if (page == 200) != expected:
                wrong.append(f"web page account of {owner}: {page}")
            html = world.web.get("/accounts?per_page=200").get_data(as_text=True)
            if (f"Acct {owner}<" in html) != expected:
                wrong.append(f"web list account of {owner}")
            suggest = world.web.get("/accounts/suggest?q=acct")
            names = {i["name"] for i in suggest.json["items"]} if suggest.status_code == 200 \
                else set()
            if (f"Acct {owner}" in names) != expected:
                wrong.append(f"autocomplete account of {owner}")
        if entity == "contact":
            html = world.web.get("/contacts?per_page=200").get_data(as_text=True)
            if (f"Cont {owner}" in html) != expected:
                wrong.append(f"web list contact of {owner}")
            account = world.records[("account", owner)]
            if reaches(scope_of(role, "read"), owner):
                detail = world.web.get(f"/accounts/{account.id}").get_data(as_text=True)
                if f"Cont {owner}" not in detail:
                    wrong.append(f"related contacts of {owner} missing")
    assert wrong == []


@pytest.mark.parametrize("role", ROLES)
def test_changes_match_the_matrix(role, world_for, db):
    world = world_for(role)
    wrong = []
    for (entity, owner), record in world.records.items():
        resource = RESOURCES[entity]
        field = {"account": "city", "contact": "title", "deal": "name",
                 "activity": "subject"}[entity]
        got = world.api.patch(f"/api/v1/{resource}/{record.id}", json={field: "Changed"})
        if (got.status_code == 200) != reaches(scope_of(role, "edit"), owner):
            wrong.append(f"edit {entity} of {owner}: {got.status_code}")
    for entity in ("deal", "activity", "contact"):
        for owner in OWNERS:
            record = world.records[(entity, owner)]
            got = world.api.delete(f"/api/v1/{RESOURCES[entity]}/{record.id}").status_code
            if (got == 204) != reaches(scope_of(role, "delete"), owner):
                wrong.append(f"delete {entity} of {owner}: {got}")
    assert wrong == []


@pytest.mark.parametrize("role", ROLES)
def test_creating_on_someone_elses_account_or_for_someone_else(role, world_for):
    world = world_for(role)
    wrong = []
    for owner in OWNERS:
        account = world.records[("account", owner)]
        got = world.api.post("/api/v1/contacts", json={
            "account_id": str(account.id), "first_name": "New", "last_name": "Person"})
        expected = reaches(scope_of(role, "read"), owner) and reaches(scope_of(role, "create"),
                                                                      owner)
        if (got.status_code == 201) != expected:
            wrong.append(f"contact on account of {owner}: {got.status_code}")
        target = world.people[owner]
        got = world.api.post("/api/v1/accounts", json={"name": f"For {owner}",
                                                       "owner_id": target.id})
        if (got.status_code == 201) != reaches(scope_of(role, "create"), owner):
            wrong.append(f"account owned by {owner}: {got.status_code}")
    assert wrong == []


@pytest.mark.parametrize("role", ROLES)
def test_exports_prints_and_reports_cover_only_what_the_matrix_grants(role, world_for):
    world = world_for(role)
    wrong = []
    for entity, resource in RESOURCES.items():
        response = world.api.post("/api/v1/exports", json={"resource": resource})
        rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff")))) \
            if response.status_code == 200 else []
        exported = {r["id"] for r in rows}
        for owner in OWNERS:
            record = world.records[(entity, owner)]
            if (str(record.id) in exported) != reaches(scope_of(role, "export"), owner):
                wrong.append(f"export {entity} of {owner}")
    for owner in OWNERS:
        account = world.records[("account", owner)]
        got = world.web.get(f"/accounts/{account.id}/print").status_code
        expected = reaches(scope_of(role, "print"), owner) and \
            reaches(scope_of(role, "read"), owner)
        if (got == 200) != expected:
            wrong.append(f"print account of {owner}: {got}")
    funnel = world.api.get("/api/v1/reports/funnel")
    won = next((r["count"] for r in funnel.json.get("rows", []) if r["stage"] == "won"), 0) \
        if funnel.status_code == 200 else 0
    expected_won = sum(reaches(scope_of(role, "read"), o) for o in OWNERS)
    if role in ("staff", "manager", "director") and won != expected_won:
        wrong.append(f"funnel counts {won} won deals, expected {expected_won}")
    board = world.web.get("/deals/board").get_data(as_text=True)
    if role in ("security_officer", "it_admin", "auditor") and re.search(r"Deal \w+", board):
        wrong.append("pipeline board shows deals")
    assert wrong == []


@pytest.mark.parametrize("role", ["security_officer", "it_admin", "auditor"])
def test_officers_auditors_and_it_see_no_client_data_anywhere(role, world_for):
    world = world_for(role)
    for path in ("/accounts", "/contacts", "/deals", "/deals/board", "/activities",
                 "/reports/funnel", "/import"):
        assert world.web.get(path).status_code in (403, 404), path
    for resource in RESOURCES.values():
        assert world.api.get(f"/api/v1/{resource}").status_code == 403
        assert world.api.post(f"/api/v1/{resource}", json={"name": "x"}).status_code in (403, 422)
    home = world.web.get("/").get_data(as_text=True)
    assert "Acct " not in home
