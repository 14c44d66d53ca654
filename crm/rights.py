"""Changing who may do what, with separation of duties built in.

Every way of giving a person rights to client data is a change here, proposed
by one person and, when it reaches client data, approved by a *different*
administrator (``roles:admin``) before it applies:

- ``role``: a role's grants (four eyes when the role reaches client data before
  or after the change);
- ``user_roles``: a person's roles (four eyes when a role gained reaches client
  data); a new person gets at once only the roles that reach none, the others
  wait as such a change;
- ``user_team``: a person's team (four eyes when their roles reach client data:
  the team decides which records "team" and "subtree" scopes reach);
- ``share``: an account shared with a team (always four eyes: it gives rights
  to everyone in the team, present and future).

Nobody may propose or approve a change that would give themselves a right: not
to a role they hold, not to their own roles or team, not a share with their own
team. Every proposal, approval, rejection and application is an audit event
carrying the rights before and after.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

import audit
from appliance.kernel.errors import Conflict, Forbidden, NotFound, ValidationFailed
from appliance.kernel.orm import utcnow
from appliance.kernel.permissions import Cap
from crm.access import FIELDS, Action, Entity, Level, Policy, Scope
from crm.base import Base
from crm.identity import Capability, FieldRule, Permission, Role, Team, User
from crm.models import Account, AccountShare
from crm.people import add_user

ROLE_ENTITIES = tuple(Entity)
STATUSES = ("pending", "applied", "rejected")


class RightsChange(Base):
    """A proposed change of rights, waiting for a second administrator or already decided."""

    __tablename__ = "rights_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "role", "user_roles", "user_team", "share"
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
        "exact_match": sorted([r.entity, r.field] for r in role.field_rules
                              if r.level == Level.MASKED and r.exact_match),
        "caps": sorted(c.name for c in role.capabilities),
        "export_rows_per_export": role.export_rows_per_export,
        "export_rows_per_day": role.export_rows_per_day,
        "card_required": role.card_required,
    }


def exports(rights: dict[str, Any]) -> bool:
    return any(action == Action.EXPORT for _e, action, _s in rights["grants"])


def reaches_client_data(rights: dict[str, Any]) -> bool:
    """Does a role with these rights reach client records at all? (Every entity a role grants
    on is client data; grants at scope none are not kept.)"""
    return bool(rights["grants"])


def _reaches(roles: list[Role]) -> bool:
    return any(reaches_client_data(role_rights(r)) for r in roles)


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
    masked = {(e, f) for e, f, lv in fields if lv == Level.MASKED}
    # exact match only means something on a masked field (a readable one is searchable anyway,
    # a hidden one never is): ticks on others are dropped rather than stored as a surprise
    exact = sorted([item[0], item[1]] for item in data.get("exact_match", [])
                   if isinstance(item, list | tuple) and len(item) == 2
                   and (item[0], item[1]) in masked)
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
    return {"grants": sorted(grants), "fields": sorted(fields), "exact_match": exact,
            "caps": caps, **limits,
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
        if not (reaches_client_data(before) or reaches_client_data(after)):
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
        if not _reaches(gained):
            self._apply(change)
        return change

    def create_user(self, hasher: PasswordHasher, *, username: str, full_name: str,
                    password: str, roles: list[str], team: str | None = None,
                    email: str = "") -> tuple[User, RightsChange | None]:
        """A new person. Roles that reach no client data apply at once; the others are a
        change of their roles waiting for a second administrator, like any other."""
        self.policy.require_cap(Cap.USERS_ADMIN)
        user = add_user(self.db, hasher, username=username, full_name=full_name,
                        password=password, roles=roles, team=team, email=email)
        at_once = [r for r in user.roles if not _reaches([r])]
        if len(at_once) == len(user.roles):
            return user, None
        user.roles = at_once
        self.db.flush()
        return user, self.propose_user_roles(user.id, roles)

    def propose_team(self, user_id: int, team_id: int | None) -> RightsChange:
        """Move a person to another team (or none); four eyes when their roles reach client
        data, since their team decides which records they reach."""
        self.policy.require_cap(Cap.ROLES_ADMIN)
        user = self.db.get(User, user_id)
        if user is None:
            raise NotFound(entity="user")
        if user.id == self.me.id:
            raise Forbidden(action="change your own team; ask another administrator")
        team = self.db.get(Team, team_id) if team_id is not None else None
        if team_id is not None and team is None:
            raise ValidationFailed({"team_id": "no such team; choose one from the list"})
        before = {"team_id": user.team_id, "team": user.team.name if user.team else None}
        after = {"team_id": team.id if team else None, "team": team.name if team else None}
        if before == after:
            raise Conflict(detail="Nothing changed.")
        change = self._new("user_team", before, after, user_id=user.id)
        if not _reaches(list(user.roles)):
            self._apply(change)
        return change

    def propose_share(self, account: Account, team: Team, level: str,
                      expires_at: datetime) -> RightsChange:
        """Share an account with a team: it waits for a second administrator. The caller
        has checked that the user may share it (``crm.sharing``)."""
        share = {"account_id": str(account.id), "owner": account.owner.username,
                 "team_id": team.id, "team": team.name, "level": level,
                 "expires_at": expires_at.isoformat()}
        return self._new("share", {"share": None}, {"share": share})

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
            exact = {(e, f) for e, f in after.get("exact_match", [])}
            role.field_rules = [FieldRule(entity=e, field=f, level=lv, exact_match=(e, f) in exact)
                                for e, f, lv in after["fields"]]
            role.capabilities = [Capability(name=c) for c in after["caps"]]
            role.export_rows_per_export = after["export_rows_per_export"]
            role.export_rows_per_day = after["export_rows_per_day"]
            role.card_required = after["card_required"]
        elif change.kind == "user_roles":
            user = self.db.get(User, change.user_id)
            user.roles = list(self.db.scalars(select(Role).where(Role.name.in_(after["roles"]))))
        elif change.kind == "user_team":
            self.db.get(User, change.user_id).team_id = after["team_id"]
        else:
            self._apply_share(change, after["share"])
        change.status = "applied"
        self.db.flush()
        self._audit("rights.apply", change)

    def _apply_share(self, change: RightsChange, share: dict[str, Any]) -> None:
        expires_at = datetime.fromisoformat(share["expires_at"])
        if expires_at <= datetime.now(UTC):
            raise Conflict(detail="This share has expired while it waited; ask for it again.")
        account_id = uuid.UUID(share["account_id"])
        if self.db.get(Account, account_id) is None or self.db.get(Team, share["team_id"]) is None:
            raise Conflict(detail="The account or the team no longer exists.")
        self.db.add(AccountShare(account_id=account_id, team_id=share["team_id"],
                                 level=share["level"], expires_at=expires_at,
                                 created_by=change.requested_by))

    def _pending(self, change_id: int) -> RightsChange:
        self.policy.require_cap(Cap.ROLES_ADMIN)
        change = self.db.get(RightsChange, change_id)
        if change is None:
            raise NotFound(entity="rights change")
        if change.status != "pending":
            raise Conflict(detail=f"This change is already {change.status}.")
        return change

    def _benefits_me(self, change: RightsChange) -> bool:
        if change.kind in ("user_roles", "user_team"):
            return change.user_id == self.me.id
        if change.kind == "share":
            return json.loads(change.after)["share"]["team_id"] == self.me.team_id
        return any(role.id == change.role_id for role in self.me.roles)

    def _role(self, role_id: int | None) -> Role:
        role = self.db.get(Role, role_id) if role_id is not None else None
        if role is None:
            raise NotFound(entity="role")
        return role

    def _audit(self, action: str, change: RightsChange) -> None:
        if change.kind == "role":
            target = self._role(change.role_id).name
        elif change.kind == "share":
            target = json.loads(change.after)["share"]["account_id"]
        else:
            target = self.db.get(User, change.user_id).username
        audit.record(self.db, action, user=self.me.username, ip=self.ip, entity=change.kind,
                     entity_id=target, meta={"change": change.id, "status": change.status,
                                             "before": json.loads(change.before),
                                             "after": json.loads(change.after)})


def describe(doc: dict[str, Any]) -> list[str]:
    """A rights document as lines a person can compare side by side."""
    if "roles" in doc:
        return [f"roles: {', '.join(doc['roles']) or 'none'}"]
    if "team_id" in doc:
        return [f"team: {doc['team'] or 'none'}"]
    if "share" in doc:
        share = doc["share"]
        if share is None:
            return ["not shared"]
        # an account's id and owner, never its name: administrators see no client data
        return [f"account {share['account_id']} (owner {share['owner']})",
                f"shared with team {share['team']} to {share['level']}",
                f"until {share['expires_at'][:10]}"]
    lines = [f"{e} {a.replace('_', ' ')}: {s}" for e, a, s in doc["grants"]]
    exact = {(e, f) for e, f in doc.get("exact_match", [])}
    lines += [f"{e}.{f}: {lv}" + (" (searchable by exact value)" if (e, f) in exact else "")
              for e, f, lv in doc["fields"]]
    lines += [f"right {c}" for c in doc["caps"]]
    lines += [f"rows per export: {doc['export_rows_per_export'] or 'no cap'}",
              f"rows per day: {doc['export_rows_per_day'] or 'no cap'}",
              f"card required: {'yes' if doc['card_required'] else 'no'}"]
    return lines
