"""Rows for tests, made the way the application makes them."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal
from typing import Any

from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from crm.identity import Team, User
from crm.models import Account, Activity, Contact, Deal
from crm.people import add_user, find_or_create_team

PASSWORD = "correct horse battery"
_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_counter = itertools.count(1)


class Factory:
    def __init__(self, db: Session) -> None:
        self.db = db

    def team(self, name: str, parent: Team | None = None) -> Team:
        team = find_or_create_team(self.db, name, parent)
        self.db.commit()
        return team

    def user(self, username: str | None = None, *, roles: tuple[str, ...] = ("staff",),
             team: str | None = "Sales", **changes: Any) -> User:
        username = username or f"user{next(_counter)}"
        user = add_user(self.db, _hasher, username=username, full_name=username.title(),
                        password=PASSWORD, roles=list(roles), team=team)
        for key, value in changes.items():
            setattr(user, key, value)
        self.db.commit()
        return user

    def account(self, owner: User, **fields: Any) -> Account:
        n = next(_counter)
        values = {"name": f"Client {n}", "status": "customer", "city": "Berlin", "country": "DE",
                  "phone": f"+49 30 {n:07d}", "email": f"info{n}@client.example",
                  "tax_id": f"DE{n:09d}"}
        values.update(fields)
        account = Account(**values, owner_id=owner.id, team_id=owner.team_id)
        self.db.add(account)
        self.db.commit()
        return account

    def contact(self, account: Account, **fields: Any) -> Contact:
        n = next(_counter)
        values = {"first_name": "Ann", "last_name": f"Person{n}", "email": f"ann{n}@client.example",
                  "phone": f"+49 171 {n:07d}"}
        values.update(fields)
        contact = Contact(account_id=account.id, **values)
        self.db.add(contact)
        self.db.commit()
        return contact

    def deal(self, account: Account, owner: User, **fields: Any) -> Deal:
        values = {"name": f"Deal {next(_counter)}", "stage": "proposal", "amount": Decimal("1000")}
        values.update(fields)
        deal = Deal(account_id=account.id, owner_id=owner.id, team_id=owner.team_id, **values)
        self.db.add(deal)
        self.db.commit()
        return deal

    def activity(self, account: Account, owner: User, **fields: Any) -> Activity:
        values = {"kind": "call", "subject": f"Call {next(_counter)}"}
        values.update(fields)
        activity = Activity(account_id=account.id, owner_id=owner.id, team_id=owner.team_id,
                            **values)
        self.db.add(activity)
        self.db.commit()
        return activity


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path, follow_redirects=True)
    found = CSRF.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def signed_in_client(app: Flask, username: str, password: str = PASSWORD) -> FlaskClient:
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    client.csrf = csrf_token(client, "/")  # type: ignore[attr-defined]
    return client
