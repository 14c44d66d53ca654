"""Adding people and teams: used by the command line, the demo and the admin pages."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.kernel.errors import Conflict, NotFound, ValidationFailed
from crm.identity import Role, Team, User

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 10


def find_user(db: Session, username: str) -> User:
    user = db.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"No user named {username!r}; `appliance user list` shows who exists.",
                       entity="user")
    return user


def find_or_create_team(db: Session, name: str, parent: Team | None = None) -> Team:
    team = db.scalars(select(Team).where(Team.name == name)).first()
    if team is None:
        team = Team(name=name, parent=parent)
        db.add(team)
        db.flush()
    return team


def add_user(db: Session, hasher: PasswordHasher, *, username: str, full_name: str,
             password: str, roles: list[str], team: str | None = None, email: str = "") -> User:
    """A new user with the given roles; every problem is reported at once."""
    errors = {}
    if not USERNAME.match(username):
        errors["username"] = "use 2-64 lower-case letters, digits, dots, dashes or underscores, " \
                             "starting with a letter"
    if len(password) < MIN_PASSWORD:
        errors["password"] = f"must be at least {MIN_PASSWORD} characters"
    known = {r.name: r for r in db.scalars(select(Role).where(Role.name.in_(roles)))}
    missing = sorted(set(roles) - set(known))
    if missing:
        all_roles = ", ".join(sorted(db.scalars(select(Role.name))))
        errors["roles"] = f"unknown role(s) {', '.join(missing)}; choose from {all_roles}"
    if not roles:
        errors["roles"] = "give at least one role"
    if errors:
        raise ValidationFailed(errors)
    if db.scalars(select(User.id).where(User.username == username)).first() is not None:
        raise Conflict(detail=f"A user named {username!r} already exists.")
    user = User(username=username, full_name=full_name or username, email=email,
                password_hash=hasher.hash(password),
                team_id=find_or_create_team(db, team).id if team else None)
    user.roles = [known[name] for name in roles]
    db.add(user)
    db.flush()
    return user
