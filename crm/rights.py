"""Changing who may do what, with separation of duties built in.

A change to a role's grants, or to a user's roles, is proposed by someone with
``roles:admin``. It applies at once unless it needs four eyes: changes to a
role that may export (before or after the change), and giving anyone a role
that may export. Then a *different* administrator must approve it. Nobody may
propose or approve a change that would give themselves a right: not to a role
they hold, not to their own roles. Every proposal, approval, rejection and
application is an audit event carrying the rights before and after.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

import audit
from appliance.kernel.errors import Conflict, Forbidden, NotFound, ValidationFailed
from appliance.kernel.orm import utcnow
from appliance.kernel.permissions import Cap
from crm.access import FIELDS, Action, Entity, Level, Policy, Scope
from crm.base import Base
from crm.identity import Capability, FieldRule, Permission, Role, User

ROLE_ENTITIES = tuple(Entity)
STATUSES = ("pending", "applied", "rejected")


class RightsChange(Base):
    """A proposed change of rights, waiting for a second administrator or already decided."""

    __tablename__ = "rights_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "role" or "user_roles"
    role_id: Mapped[int | None] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    before: Mapped[str] = mapped_column(Text)
    after: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(String(500), default="")


# -- snapshots -------------------------------------------------------------
def role_rights(role: Role) -> dict[str, Any]:
    """A role's rights as plain data: what the audit trail and the four-eyes check compare."""
    return {
        "grants": sorted([p.entity, p.action, p.scope] for p in role.permissions
                         if p.scope != Scope.NONE),
        "fields": sorted([r.entity, r.field, r.level] for r in role.field_rules
                         if r.level != Level.EDIT),
        "caps": sorted(c.name for c in role.capabilities),
        "export_rows_per_export": role.export_rows_per_export,
        "export_rows_per_day": role.export_rows_per_day,
        "card_required": role.card_required,
    }


def exports(rights: dict[str, Any]) -> bool:
    return any(action == Action.EXPORT for _e, action, _s in rights["grants"])


def check_rights(data: dict[str, Any]) -> dict[str, Any]:
    """Validate a submitted rights document; returns it normalised."""
    errors: dict[str, str] = {}
    grants, fields = [], []
    for item in data.get("grants", []):
        entity, action, scope = item
        if entity not in Entity.__members__.values() or action not in Action.__members__.values() \
                or scope not in Scope.__members__.values():
            errors["grants"] = f"unknown grant {entity}/{action}/{scope}"
        elif scope != Scope.NONE:
            grants.append([entity, action, scope])
    for item in data.get("fields", []):
        entity, name, level = item
        if Entity(entity) not in FIELDS or name not in FIELDS[Entity(entity)] \
                or level not in Level.__members__.values():
            errors["fields"] = f"unknown field rule {entity}.{name} = {level}"
        elif level != Level.EDIT:
            fields.append([entity, name, level])
    caps = sorted(set(data.get("caps", [])))
    unknown = [c for c in caps if c not in Cap.__members__.values()]
    if unknown:
        errors["caps"] = f"unknown capability {', '.join(unknown)}"
    limits = {}
    for key in ("export_rows_per_export", "export_rows_per_day"):
        try:
            limits[key] = int(data.get(key, 0))
        except (TypeError, ValueError):
            errors[key] = "must be a whole number"
            continue
        if limits[key] < 0:
            errors[key] = "must be 0 (no cap) or more"
    if errors:
        raise ValidationFailed(errors)
    return {"grants": sorted(grants), "fields": sorted(fields), "caps": caps, **limits,
            "card_required": bool(data.get("card_required"))}


# -- the service ------------------------------------------------------------
class RightsService:
    """Proposals and decisions by one administrator."""

    def __init__(self, db: Session, policy: Policy, ip: str | None = None) -> None:
        self.db, self.policy, self.ip = db, policy, ip

    @property
    def me(self) -> User:
        return self.policy.user

    def propose_role(self, role_id: int, submitted: dict[str, Any]) -> RightsChange:
        """Change a role's grants; applied now unless the role exports (then four eyes)."""
        self.policy.require_cap(Cap.ROLES_ADMIN)
        role = self._role(role_id)
        if role in self.me.roles:
            raise Forbidden(action="change a role you hold yourself; ask another administrator")
        before, after = role_rights(role), check_rights(submitted)
        if before == after:
            raise Conflict(detail="Nothing changed.")
        change = self._new("role", before, after, role_id=role.id)
        if not (exports(before) or exports(after)):
            self._apply(change)
        return change

    def propose_user_roles(self, user_id: int, role_names: list[str]) -> RightsChange:
        """Give a user other roles; four eyes if any role gained may export."""
        self.policy.require_cap(Cap.ROLES_ADMIN)
        user = self.db.get(User, user_id)
        if user is None:
            raise NotFound(entity="user")
        if user.id == self.me.id:
            raise Forbidden(action="change your own roles; ask another administrator")
        roles = list(self.db.scalars(select(Role).where(Role.name.in_(role_names))))
        if len(roles) != len(set(role_names)):
            raise ValidationFailed({"roles": "unknown role"})
        before, after = sorted(user.role_names), sorted(r.name for r in roles)
        if before == after:
            raise Conflict(detail="Nothing changed.")
        change = self._new("user_roles", {"roles": before}, {"roles": after}, user_id=user.id)
        gained = [r for r in roles if r.name not in before]
        if not any(exports(role_rights(r)) for r in gained):
            self._apply(change)
        return change

    def approve(self, change_id: int) -> RightsChange:
        change = self._pending(change_id)
        if change.requested_by == self.me.id:
            raise Forbidden(action="approve your own change; a second administrator must")
        if self._benefits_me(change):
            raise Forbidden(action="approve a change that gives you rights")
        self._apply(change)
        change.decided_by, change.decided_at = self.me.id, datetime.now(UTC)
        return change

    def reject(self, change_id: int, reason: str) -> RightsChange:
        change = self._pending(change_id)
        change.status, change.reason = "rejected", reason[:500]
        change.decided_by, change.decided_at = self.me.id, datetime.now(UTC)
        self._audit("rights.reject", change)
        return change

    # -- internals ------------------------------------------------------
    def _new(self, kind: str, before: dict, after: dict, **target: int) -> RightsChange:
        change = RightsChange(kind=kind, before=json.dumps(before), after=json.dumps(after),
                              requested_by=self.me.id, **target)
        self.db.add(change)
        self.db.flush()
        self._audit("rights.propose", change)
        return change

    def _apply(self, change: RightsChange) -> None:
        after = json.loads(change.after)
        if change.kind == "role":
            role = self._role(change.role_id)
            # old rows go first: the new ones reuse their unique keys
            role.permissions.clear()
            role.field_rules.clear()
            role.capabilities.clear()
            self.db.flush()
            role.permissions = [Permission(entity=e, action=a, scope=s) for e, a, s in after["grants"]]
            role.field_rules = [FieldRule(entity=e, field=f, level=lv) for e, f, lv in after["fields"]]
            role.capabilities = [Capability(name=c) for c in after["caps"]]
            role.export_rows_per_export = after["export_rows_per_export"]
            role.export_rows_per_day = after["export_rows_per_day"]
            role.card_required = after["card_required"]
        else:
            user = self.db.get(User, change.user_id)
            user.roles = list(self.db.scalars(select(Role).where(Role.name.in_(after["roles"]))))
        change.status = "applied"
        self.db.flush()
        self._audit("rights.apply", change)

    def _pending(self, change_id: int) -> RightsChange:
        self.policy.require_cap(Cap.ROLES_ADMIN)
        change = self.db.get(RightsChange, change_id)
        if change is None:
            raise NotFound(entity="rights change")
        if change.status != "pending":
            raise Conflict(detail=f"This change is already {change.status}.")
        return change

    def _benefits_me(self, change: RightsChange) -> bool:
        if change.kind == "user_roles":
            return change.user_id == self.me.id
        return any(role.id == change.role_id for role in self.me.roles)

    def _role(self, role_id: int | None) -> Role:
        role = self.db.get(Role, role_id) if role_id is not None else None
        if role is None:
            raise NotFound(entity="role")
        return role

    def _audit(self, action: str, change: RightsChange) -> None:
        target = (self._role(change.role_id).name if change.kind == "role"
                  else self.db.get(User, change.user_id).username)
        audit.record(self.db, action, user=self.me.username, ip=self.ip, entity=change.kind,
                     entity_id=target, meta={"change": change.id, "status": change.status,
                                             "before": json.loads(change.before),
                                             "after": json.loads(change.after)})


def describe(doc: dict[str, Any]) -> list[str]:
    """A rights document as lines a person can compare side by side."""
    if "roles" in doc:
        return [f"roles: {', '.join(doc['roles']) or 'none'}"]
    lines = [f"{e} {a.replace('_', ' ')}: {s}" for e, a, s in doc["grants"]]
    lines += [f"{e}.{f}: {lv}" for e, f, lv in doc["fields"]]
    lines += [f"right {c}" for c in doc["caps"]]
    lines += [f"rows per export: {doc['export_rows_per_export'] or 'no cap'}",
              f"rows per day: {doc['export_rows_per_day'] or 'no cap'}",
              f"card required: {'yes' if doc['card_required'] else 'no'}"]
    return lines
