"""Restrictions that act now: freeze, notice period, offboarding.

They change the user row that every request reads, so they take effect on the
very next request of every session and token the person has. Security
officers (``users:restrict``) apply them; nobody can restrict or release
themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

import audit
from appliance.kernel.errors import Conflict, Forbidden, NotFound, ValidationFailed
from appliance.kernel.permissions import Cap
from crm.access import Policy
from crm.identity import User
from crm.models import Account, Activity, Deal
from crm.revocation import revoke_cards, revoke_sessions

OWNED = (("account", Account), ("deal", Deal), ("activity", Activity))


class Restrictions:
    def __init__(self, db: Session, policy: Policy, ip: str | None = None) -> None:
        self.db, self.policy, self.ip = db, policy, ip

    def target(self, user_id: int) -> User:
        """The person to restrict: someone else, not offboarded, and only by an officer."""
        self.policy.require_cap(Cap.USERS_RESTRICT)
        user = self.db.get(User, user_id)
        if user is None:
            raise NotFound(entity="user")
        if user.id == self.policy.user.id:
            raise Forbidden(action="restrict or release yourself")
        if user.offboarded_at is not None:
            raise Conflict(detail=f"{user.username} has already been offboarded.")
        return user

    def freeze(self, user_id: int, reason: str) -> User:
        """Read-only at once: no change, no export, no print, in every session and token."""
        user = self.target(user_id)
        if user.frozen_at is not None:
            raise Conflict(detail=f"{user.username} is already frozen.")
        user.frozen_at = datetime.now(UTC)
        self._audit("user.freeze", user, reason=reason)
        return user

    def unfreeze(self, user_id: int, reason: str) -> User:
        user = self.target(user_id)
        if user.frozen_at is None:
            raise Conflict(detail=f"{user.username} is not frozen.")
        user.frozen_at = None
        self._audit("user.unfreeze", user, reason=reason)
        return user

    def notice(self, user_id: int, reason: str) -> User:
        """The person resigned or was given notice: tighter caps, closer monitoring."""
        user = self.target(user_id)
        if user.notice_at is not None:
            raise Conflict(detail=f"{user.username} is already in a notice period.")
        user.notice_at = datetime.now(UTC)
        # user.notice names the person concerned as the event's user: the leak detectors
        # read it as "this user is leaving". Who set it is in meta.
        audit.record(self.db, "user.notice", user=user.username, ip=self.ip,
                     meta={"by": self.policy.user.username, "reason": reason[:500]})
        return user

    def offboard(self, user_id: int, successor_id: int, reason: str) -> dict[str, int]:
        """Revoke every way in, at once, and give every record to ``successor``."""
        user = self.target(user_id)
        successor = self.db.get(User, successor_id)
        if successor is None or not successor.can_sign_in or successor.id == user.id:
            raise ValidationFailed({"successor_id": "choose an active user other than the one "
                                                    "leaving"})
        now = datetime.now(UTC)
        user.offboarded_at, user.active = now, False
        sessions = revoke_sessions(self.db, user.id, "offboarded", tokens=True)
        cards = revoke_cards(self.db, user.id, self.policy.user.username)
        moved: dict[str, Any] = {}
        for name, model in OWNED:
            ids = [str(i) for i in self.db.scalars(select(model.id).where(model.owner_id == user.id))]
            if ids:
                self.db.execute(update(model).where(model.owner_id == user.id).values(
                    owner_id=successor.id, team_id=successor.team_id))
                audit.record(self.db, "record.reassign", user=self.policy.user.username,
                             ip=self.ip, entity=name, count=len(ids),
                             meta={"from": user.username, "to": successor.username,
                                   "ids": ids, "reason": "offboarding"})
            moved[name] = len(ids)
        self._audit("user.offboard", user, reason=reason, successor=successor.username,
                    sessions_revoked=sessions, cards_revoked=cards, reassigned=moved)
        return moved

    def _audit(self, action: str, user: User, **meta: Any) -> None:
        audit.record(self.db, action, user=self.policy.user.username, ip=self.ip,
                     entity="user", entity_id=user.username, meta=meta)
