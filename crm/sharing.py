"""Sharing one account with a user or a team, to read or to edit, until a date.

Whoever may edit an account in their own right (its owner, their managers)
may share it; an account shared with someone cannot be shared on by them. Shares are part of
the access policy's filter, so every path honours them, and they lapse by
themselves at their expiry.

Two policy settings bound a share (``[sharing]`` in citadel.toml): ``max_days``,
how long it may last (90 days; a share without a date lasts that long), and
``team_targets``, which teams one may share with: ``own`` (one's own team),
``own_and_parents`` (and the teams above it; the default) or ``any``. A share
with a team gives rights to everyone in it, present and future, so it is a
rights change: it applies once a second administrator approves it
(``crm.rights``). A share with one colleague applies at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from appliance.kernel.errors import Forbidden, NotFound, ValidationFailed
from crm.access import Action, Entity, Policy
from crm.identity import Team, User
from crm.models import Account, AccountShare
from crm.rights import RightsChange, RightsService

TEAM_TARGETS = ("own", "own_and_parents", "any")


@dataclass(frozen=True)
class ShareRules:
    """How long a share may last and which teams one may share with."""

    max_days: int = 90
    team_targets: str = "own_and_parents"

    @classmethod
    def from_settings(cls, settings: Any) -> ShareRules:
        section = settings.section("sharing") if settings is not None else {}
        targets = str(section.get("team_targets", cls.team_targets))
        if targets not in TEAM_TARGETS:
            targets = cls.team_targets  # a typo in the settings never widens sharing
        return cls(max_days=max(1, int(section.get("max_days", cls.max_days))),
                   team_targets=targets)

    def latest(self, now: datetime) -> datetime:
        """The latest expiry a share made now may have: the end of its last allowed day."""
        return datetime.combine((now + timedelta(days=self.max_days)).date(), time(23, 59), UTC)

    def teams_for(self, db: Session, user: User) -> set[int] | None:
        """The teams ``user`` may share with (None: any team)."""
        if self.team_targets == "any":
            return None
        if user.team_id is None:
            return set()
        if self.team_targets == "own":
            return {user.team_id}
        parents = dict(db.execute(select(Team.id, Team.parent_id)).all())
        allowed, current = set(), user.team_id
        while current is not None and current not in allowed:
            allowed.add(current)
            current = parents.get(current)
        return allowed


def shares_of(db: Session, account: Account) -> list[AccountShare]:
    now = datetime.now(UTC)
    return list(db.scalars(select(AccountShare).where(
        AccountShare.account_id == account.id,
        (AccountShare.expires_at.is_(None)) | (AccountShare.expires_at > now))
        .order_by(AccountShare.created_at)))


def may_share(policy: Policy, account: Account) -> bool:
    """Sharing is for those whose own role reaches the account, not for those it was
    shared with (no sharing on)."""
    return policy.scope_reaches(Entity.ACCOUNT, Action.EDIT, owner_id=account.owner_id,
                                team_id=account.team_id)


def require_sharer(policy: Policy, account_id: uuid.UUID) -> Account:
    """The account, if the user may share it; else Forbidden (or NotFound if unseen)."""
    account = policy.get(Entity.ACCOUNT, account_id, Action.EDIT)
    if not may_share(policy, account):
        raise Forbidden(action="share an account that was only shared with you")
    return account


def share(db: Session, policy: Policy, account_id: uuid.UUID, *, user_id: int | None = None,
          team_id: int | None = None, level: str = "read", expires_at: datetime | None = None,
          ip: str | None = None, rules: ShareRules | None = None) -> AccountShare | RightsChange:
    """Share an account with a colleague (at once) or a team (a rights change that waits for a
    second administrator: the pending change is returned). No date means the longest allowed."""
    account = require_sharer(policy, account_id)
    rules = rules or ShareRules()
    now = datetime.now(UTC)
    expires_at = expires_at or rules.latest(now)
    errors = {}
    if (user_id is None) == (team_id is None):
        errors["grantee"] = "share with one user or one team"
    if level not in ("read", "edit"):
        errors["level"] = "must be read or edit"
    if expires_at <= now:
        errors["expires_at"] = "must be in the future"
    elif expires_at > rules.latest(now):
        errors["expires_at"] = (f"may be at most {rules.max_days} days from today: "
                                f"{rules.latest(now):%Y-%m-%d} or earlier")
    if user_id is not None and (db.get(User, user_id) is None or user_id == policy.user.id):
        errors["user_id"] = "choose another active user"
    team = db.get(Team, team_id) if team_id is not None else None
    if team_id is not None and team is None:
        errors["team_id"] = "no such team"
    elif team is not None and not _may_target(db, policy, rules, team):
        errors["team_id"] = _targets_hint(rules)
    if errors:
        raise ValidationFailed(errors)
    if team is not None:
        return RightsService(db, policy, ip).propose_share(account, team, level, expires_at)
    grant = AccountShare(account_id=account.id, user_id=user_id, team_id=team_id, level=level,
                         expires_at=expires_at, created_by=policy.user.id)
    db.add(grant)
    db.flush()
    audit.record(db, "record.share", user=policy.user.username, ip=ip, entity="account",
                 entity_id=account.id, count=1,
                 meta={"share": grant.id, "user_id": user_id, "team_id": team_id, "level": level,
                       "expires_at": expires_at.isoformat() if expires_at else None})
    return grant


def _may_target(db: Session, policy: Policy, rules: ShareRules, team: Team) -> bool:
    allowed = rules.teams_for(db, policy.user)
    return allowed is None or team.id in allowed


def _targets_hint(rules: ShareRules) -> str:
    if rules.team_targets == "own":
        return "you may share only with your own team"
    return "you may share only with your own team and the teams above it"


def share_teams(db: Session, policy: Policy, rules: ShareRules) -> list[Team]:
    """The teams this user may share with, by name (for the share form)."""
    allowed = rules.teams_for(db, policy.user)
    teams = db.scalars(select(Team).order_by(Team.name))
    return [t for t in teams if allowed is None or t.id in allowed]


def unshare(db: Session, policy: Policy, share_id: int, ip: str | None = None,
            account_id: uuid.UUID | None = None) -> None:
    """Remove a share (of ``account_id``, when given: a share of another account is not found)."""
    grant = db.get(AccountShare, share_id)
    if grant is None or account_id is not None and grant.account_id != account_id:
        raise NotFound(entity="share")
    account = policy.get(Entity.ACCOUNT, grant.account_id, Action.EDIT)
    if not policy.scope_reaches(Entity.ACCOUNT, Action.EDIT, owner_id=account.owner_id,
                                team_id=account.team_id):
        raise Forbidden(action="remove a share from an account that was only shared with you")
    audit.record(db, "record.unshare", user=policy.user.username, ip=ip, entity="account",
                 entity_id=account.id, count=1, meta={"share": grant.id})
    db.delete(grant)
