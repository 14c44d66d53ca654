"""Sharing one account with a user or a team, to read or to edit, until a date.

Whoever may edit an account in their own right (its owner, their managers)
may share it; an account shared with someone cannot be shared on by them. Shares are part of
the access policy's filter, so every path honours them, and they lapse by
themselves at their expiry.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from appliance.kernel.errors import Forbidden, NotFound, ValidationFailed
from crm.access import Action, Entity, Policy
from crm.identity import Team, User
from crm.models import Account, AccountShare


def shares_of(db: Session, account: Account) -> list[AccountShare]:
    now = datetime.now(UTC)
    return list(db.scalars(select(AccountShare).where(
        AccountShare.account_id == account.id,
        (AccountShare.expires_at.is_(None)) | (AccountShare.expires_at > now))
        .order_by(AccountShare.created_at)))


def may_share(policy: Policy, account: Account) -> bool:
    """Sharing is for those whose own role reaches the account, not for those it was
    shared with (no sharing on)."""
    return policy.allows(Entity.ACCOUNT, Action.EDIT, owner_id=account.owner_id,
                         team_id=account.team_id)


def require_sharer(policy: Policy, account_id: uuid.UUID) -> Account:
    """The account, if the user may share it; else Forbidden (or NotFound if unseen)."""
    account = policy.get(Entity.ACCOUNT, account_id, Action.EDIT)
    if not may_share(policy, account):
        raise Forbidden(action="share an account that was only shared with you")
    return account


def share(db: Session, policy: Policy, account_id: uuid.UUID, *, user_id: int | None = None,
          team_id: int | None = None, level: str = "read", expires_at: datetime | None = None,
          ip: str | None = None) -> AccountShare:
    account = require_sharer(policy, account_id)
    errors = {}
    if (user_id is None) == (team_id is None):
        errors["grantee"] = "share with one user or one team"
    if level not in ("read", "edit"):
        errors["level"] = "must be read or edit"
    if expires_at is not None and expires_at <= datetime.now(UTC):
        errors["expires_at"] = "must be in the future"
    if user_id is not None and (db.get(User, user_id) is None or user_id == policy.user.id):
        errors["user_id"] = "choose another active user"
    if team_id is not None and db.get(Team, team_id) is None:
        errors["team_id"] = "no such team"
    if errors:
        raise ValidationFailed(errors)
    grant = AccountShare(account_id=account.id, user_id=user_id, team_id=team_id, level=level,
                         expires_at=expires_at, created_by=policy.user.id)
    db.add(grant)
    db.flush()
    audit.record(db, "record.share", user=policy.user.username, ip=ip, entity="account",
                 entity_id=account.id, count=1,
                 meta={"share": grant.id, "user_id": user_id, "team_id": team_id, "level": level,
                       "expires_at": expires_at.isoformat() if expires_at else None})
    return grant


def unshare(db: Session, policy: Policy, share_id: int, ip: str | None = None,
            account_id: uuid.UUID | None = None) -> None:
    """Remove a share (of ``account_id``, when given: a share of another account is not found)."""
    grant = db.get(AccountShare, share_id)
    if grant is None or account_id is not None and grant.account_id != account_id:
        raise NotFound(entity="share")
    account = policy.get(Entity.ACCOUNT, grant.account_id, Action.EDIT)
    if not policy.allows(Entity.ACCOUNT, Action.EDIT, owner_id=account.owner_id,
                         team_id=account.team_id):
        raise Forbidden(action="remove a share from an account that was only shared with you")
    audit.record(db, "record.unshare", user=policy.user.username, ip=ip, entity="account",
                 entity_id=account.id, count=1, meta={"share": grant.id})
    db.delete(grant)
