"""The access policy: the one place that decides what a person may reach.

A user's roles grant, per entity and action, a *scope* (none, own, team, team
and sub-teams, all); the most permissive role wins. The policy turns that into
a SQL filter that every query for client data carries, and into a field mask
that every response, export and print passes through. Views ask the policy;
they never decide.

A record outside the caller's scope does not exist for them: loaders answer
404, never 403.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, false, or_, select, true
from sqlalchemy.orm import Session

from appliance.kernel.errors import Forbidden, NotFound
from appliance.kernel.permissions import Cap
from crm.identity import Capability, FieldRule, Permission, Team, User
from crm.models import Account, AccountShare, Activity, Contact, Deal


class Entity(StrEnum):
    ACCOUNT = "account"
    CONTACT = "contact"
    DEAL = "deal"
    ACTIVITY = "activity"
    REPORT = "report"
    ATTACHMENT = "attachment"


class Action(StrEnum):
    READ = "read"
    CREATE = "create"
    EDIT = "edit"
    DELETE = "delete"
    EXPORT = "export"
    PRINT = "print"
    MASS_UPDATE = "mass_update"
    REASSIGN = "reassign"


class Scope(StrEnum):
    NONE = "none"
    OWN = "own"
    TEAM = "team"
    SUBTREE = "subtree"
    ALL = "all"

    @property
    def rank(self) -> int:
        return _SCOPE_RANK[self]


_SCOPE_RANK = {Scope.NONE: 0, Scope.OWN: 1, Scope.TEAM: 2, Scope.SUBTREE: 3, Scope.ALL: 4}


class Level(StrEnum):
    HIDDEN = "hidden"
    MASKED = "masked"
    READ = "read"
    EDIT = "edit"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK = {Level.HIDDEN: 0, Level.MASKED: 1, Level.READ: 2, Level.EDIT: 3}


MODELS: dict[Entity, type] = {
    Entity.ACCOUNT: Account,
    Entity.CONTACT: Contact,
    Entity.DEAL: Deal,
    Entity.ACTIVITY: Activity,
}

#: Fields a person can see or edit, per entity, in display order.
FIELDS: dict[Entity, tuple[str, ...]] = {
    Entity.ACCOUNT: ("name", "status", "industry", "tax_id", "phone", "email", "website",
                     "address", "city", "country", "notes", "owner_id", "team_id"),
    Entity.CONTACT: ("first_name", "last_name", "title", "email", "phone", "notes"),
    Entity.DEAL: ("name", "stage", "amount", "currency", "expected_close", "probability",
                  "owner_id"),
    Entity.ACTIVITY: ("kind", "subject", "body", "due_at", "done_at", "owner_id"),
}


@dataclass
class Grants:
    """What a user's roles add up to: the most permissive role wins."""

    scopes: dict[tuple[str, str], Scope] = field(default_factory=dict)
    levels: dict[tuple[str, str], Level] = field(default_factory=dict)
    #: Masked fields some reading role lets the user search and filter by exact value.
    matchable: set[tuple[str, str]] = field(default_factory=set)
    caps: set[str] = field(default_factory=set)
    export_per_export: int = 0
    export_per_day: int = 0
    card_required: bool = False

    @classmethod
    def load(cls, session: Session, user: User) -> Grants:
        """The user's grants, cached per set of role stamps: a rights change (which gives its
        role a new stamp) is seen by the very next request."""
        key = tuple(sorted(role.stamp for role in user.roles))
        cached = _GRANTS.get(key)
        if cached is None:
            if len(_GRANTS) > 256:
                _GRANTS.clear()
            cached = _GRANTS[key] = cls._compute(session, user)
        return cached

    @classmethod
    def _compute(cls, session: Session, user: User) -> Grants:
        role_ids = [role.id for role in user.roles]
        grants = cls()
        if not role_ids:
            return grants
        readers: dict[str, set[int]] = {}
        for role_id, entity, action, raw in session.execute(
                select(Permission.role_id, Permission.entity, Permission.action, Permission.scope)
                .where(Permission.role_id.in_(role_ids))):
            key, scope = (entity, action), Scope(raw)
            if scope.rank > grants.scopes.get(key, Scope.NONE).rank:
                grants.scopes[key] = scope
            if action == Action.READ and scope is not Scope.NONE:
                readers.setdefault(entity, set()).add(role_id)
        # A field is as visible as the most permissive reading role shows it;
        # a role with no rule for a field shows it in full.
        rule_of = {(rid, ent, name): (Level(level), exact) for rid, ent, name, level, exact in
                   session.execute(select(FieldRule.role_id, FieldRule.entity, FieldRule.field,
                                          FieldRule.level, FieldRule.exact_match)
                                   .where(FieldRule.role_id.in_(role_ids)))}
        for entity, names in FIELDS.items():
            for name in names:
                rules = [rule_of.get((rid, entity.value, name), (Level.EDIT, False))
                         for rid in readers.get(entity.value, ())]
                if rules:
                    grants.levels[(entity.value, name)] = max(
                        (lv for lv, _ in rules), key=lambda lv: lv.rank)
                if any(lv is Level.MASKED and exact for lv, exact in rules):
                    grants.matchable.add((entity.value, name))
        grants.caps = set(session.scalars(
            select(Capability.name).where(Capability.role_id.in_(role_ids))))
        grants.export_per_export = max(r.export_rows_per_export for r in user.roles)
        grants.export_per_day = max(r.export_rows_per_day for r in user.roles)
        grants.card_required = any(r.card_required for r in user.roles)
        return grants


_GRANTS: dict[tuple[str, ...], Grants] = {}


class Policy:
    """What one user may do, turned into query filters and field masks."""

    #: Actions a frozen user keeps.
    FROZEN_ALLOWS = frozenset({Action.READ})

    def __init__(self, session: Session, user: User, grants: Grants | None = None,
                 now: datetime | None = None) -> None:
        self.session = session
        self.user = user
        self.grants = grants or Grants.load(session, user)
        self.now = now or datetime.now(UTC)
        self._subtree: list[int] | None = None
        self._has_shares: bool | None = None

    # -- questions ------------------------------------------------------
    def scope(self, entity: Entity | str, action: Action | str) -> Scope:
        entity, action = Entity(entity), Action(action)
        if not self.user.can_sign_in:
            return Scope.NONE
        if self.user.frozen_at is not None and action not in self.FROZEN_ALLOWS:
            return Scope.NONE
        return self.grants.scopes.get((entity.value, action.value), Scope.NONE)

    def may_do(self, entity: Entity | str, action: Action | str) -> bool:
        """May the user do ``action`` on some ``entity`` at all, in any scope (and read it)?"""
        return self.scope(entity, action) is not Scope.NONE and \
            self.scope(entity, Action.READ) is not Scope.NONE

    def holds(self, cap: Cap | str) -> bool:
        """Does the user hold the capability ``cap`` (a right beyond records)?"""
        return self.user.can_sign_in and str(cap) in self.grants.caps

    def require(self, entity: Entity | str, action: Action | str) -> None:
        if not self.may_do(entity, action):
            raise Forbidden(action=f"{Action(action).value.replace('_', ' ')} {Entity(entity).value}s")

    def require_cap(self, cap: Cap | str) -> None:
        if not self.holds(cap):
            raise Forbidden(action=_describe_cap(str(cap)))

    @property
    def frozen(self) -> bool:
        return self.user.frozen_at is not None

    @property
    def on_notice(self) -> bool:
        return self.user.notice_at is not None

    # -- query filters --------------------------------------------------
    def where(self, entity: Entity | str, action: Action | str = Action.READ) -> ColumnElement[bool]:
        """The SQL condition a row of ``entity`` must meet for ``action`` (and for reading it)."""
        entity, action = Entity(entity), Action(action)
        if action is Action.READ:
            return self._where(entity, action)
        return and_(self._where(entity, action), self._where(entity, Action.READ))

    def _where(self, entity: Entity, action: Action) -> ColumnElement[bool]:
        if entity is Entity.CONTACT:
            return Contact.account.has(self._account_clause(self.scope(entity, action), action))
        if entity is Entity.ACCOUNT:
            return self._account_clause(self.scope(entity, action), action)
        model = MODELS[entity]
        return self._owned_clause(model, self.scope(entity, action))

    def select(self, entity: Entity | str, action: Action | str = Action.READ) -> Select[Any]:
        """``SELECT entity`` already limited to what the user may reach."""
        model = MODELS[Entity(entity)]
        return select(model).where(self.where(entity, action))

    def get(self, entity: Entity | str, record_id: uuid.UUID | str,
            action: Action | str = Action.READ) -> Any:
        """The record, if the user may ``action`` it; otherwise it does not exist."""
        entity = Entity(entity)
        try:
            key = record_id if isinstance(record_id, uuid.UUID) else uuid.UUID(str(record_id))
        except ValueError:
            raise NotFound(entity=entity.value) from None
        model = MODELS[entity]
        found = self.session.scalars(
            select(model).where(model.id == key, self.where(entity, action))
        ).first()
        if found is None:
            if action is not Action.READ and self.session.scalars(
                select(model.id).where(model.id == key, self.where(entity, Action.READ))
            ).first():
                raise Forbidden(action=f"{Action(action).value.replace('_', ' ')} this {entity.value}")
            raise NotFound(entity=entity.value)
        return found

    def may_act_on_id(self, entity: Entity | str, record_id: uuid.UUID, action: Action | str) -> bool:
        """May the user ``action`` the stored record with this id? Asks the database, shares included."""
        model = MODELS[Entity(entity)]
        return self.session.scalars(select(model.id).where(
            model.id == record_id, self.where(entity, action))).first() is not None

    def may_act_on(self, entity: Entity | str, record: Any, action: Action | str) -> bool:
        """May the user ``action`` this loaded record? Asks the database only about shares."""
        if self.scope_reaches(entity, action, owner_id=record.owner_id, team_id=record.team_id):
            return True
        if Entity(entity) is Entity.ACCOUNT and Action(action) in (Action.READ, Action.EDIT):
            return self.may_act_on_id(entity, record.id, action)
        return False

    def scope_reaches(self, entity: Entity | str, action: Action | str, *, owner_id: int,
                      team_id: int | None) -> bool:
        """Does the user's scope for ``action`` (and reading) reach this owner and team? Shares not counted."""
        if Action(action) is not Action.READ and not self.scope_reaches(
                entity, Action.READ, owner_id=owner_id, team_id=team_id):
            return False
        scope = self.scope(entity, action)
        if scope is Scope.ALL:
            return True
        if scope is Scope.OWN:
            return owner_id == self.user.id
        if scope is Scope.TEAM:
            return team_id is not None and team_id == self.user.team_id
        if scope is Scope.SUBTREE:
            return team_id is not None and team_id in self.subtree()
        return False

    def subtree(self) -> list[int]:
        """The user's team and every team below it."""
        if self._subtree is None:
            self._subtree = team_subtree(self.session, self.user.team_id)
        return self._subtree

    def _owned_clause(self, model: Any, scope: Scope) -> ColumnElement[bool]:
        if scope is Scope.ALL:
            return true()
        if scope is Scope.OWN:
            return model.owner_id == self.user.id
        if scope is Scope.TEAM:
            return model.team_id == self.user.team_id if self.user.team_id else false()
        if scope is Scope.SUBTREE:
            teams = self.subtree()
            return model.team_id.in_(teams) if teams else false()
        return false()

    def _account_clause(self, scope: Scope, action: Action) -> ColumnElement[bool]:
        owned = self._owned_clause(Account, scope)
        # Shares widen reach for people who work with accounts at all: never for roles
        # (officers, IT) that may not read client records.
        if scope in (Scope.ALL, Scope.NONE) or action not in (Action.READ, Action.EDIT):
            return owned
        if self.frozen and action is not Action.READ:
            return owned
        if not self.has_shares():
            return owned  # most people have none: keep the filter simple for the planner
        levels = ("read", "edit") if action is Action.READ else ("edit",)
        shared = Account.id.in_(select(AccountShare.account_id).where(
            self._share_grantee(), AccountShare.level.in_(levels), self._share_live()))
        return owned if owned is true() else or_(owned, shared)

    def has_shares(self) -> bool:
        """Is any account shared with this user or their team right now? (asked once)"""
        if self._has_shares is None:
            self._has_shares = self.session.scalars(select(AccountShare.id).where(
                self._share_grantee(), self._share_live()).limit(1)).first() is not None
        return self._has_shares

    def _share_grantee(self) -> ColumnElement[bool]:
        grantee = AccountShare.user_id == self.user.id
        if self.user.team_id is not None:
            grantee = or_(grantee, AccountShare.team_id == self.user.team_id)
        return grantee

    def _share_live(self) -> ColumnElement[bool]:
        return or_(AccountShare.expires_at.is_(None), AccountShare.expires_at > self.now)

    # -- fields ---------------------------------------------------------
    def level(self, entity: Entity | str, field_name: str) -> Level:
        entity = Entity(entity)
        if not self.may_do(entity, Action.READ):
            return Level.HIDDEN
        level = self.grants.levels.get((entity.value, field_name), Level.EDIT)
        if level is Level.EDIT and not self.may_do(entity, Action.EDIT):
            return Level.READ
        return level

    def readable(self, entity: Entity | str, field_name: str) -> bool:
        """Is the field shown in clear? Only such a field may order a list, group a report or
        be summed in one: an order, a group or a sum tells about the values behind it."""
        return self.level(entity, field_name).rank >= Level.READ.rank

    def matchable(self, entity: Entity | str, field_name: str) -> bool:
        """May a search or filter compare this field with a value? A hidden field never: a
        match would say the value exists, and whose it is. A masked field only where a
        reading role's rule allows exact match by design."""
        level = self.level(entity, field_name)
        if level is Level.MASKED:
            return (Entity(entity).value, field_name) in self.grants.matchable
        return level.rank >= Level.READ.rank

    def visible_fields(self, entity: Entity | str) -> list[str]:
        return [f for f in FIELDS[Entity(entity)] if self.level(entity, f) is not Level.HIDDEN]

    def editable_fields(self, entity: Entity | str) -> set[str]:
        return {f for f in FIELDS[Entity(entity)] if self.level(entity, f) is Level.EDIT}

    def check_writable(self, entity: Entity | str, submitted: Iterable[str]) -> None:
        """Refuse a change that touches a field the user may not edit."""
        editable = self.editable_fields(entity)
        refused = sorted(set(submitted) - editable)
        if refused:
            raise Forbidden(action=f"change {', '.join(refused)} on {Entity(entity).value}s")

    def present(self, entity: Entity | str, record: Any,
                only: Iterable[str] | None = None) -> dict[str, Any]:
        """The record's fields as this user may see them: hidden ones left out, masked ones
        masked. ``only`` limits the work (and any decryption) to the fields a page shows."""
        shown: dict[str, Any] = {}
        for name in only or FIELDS[Entity(entity)]:
            level = self.level(entity, name)
            if level is Level.HIDDEN:
                continue
            value = getattr(record, name)
            shown[name] = mask(name, value) if level is Level.MASKED else value
        return shown


def team_subtree(session: Session, team_id: int | None) -> list[int]:
    """``team_id`` and every team below it, walking the hierarchy breadth-first."""
    if team_id is None:
        return []
    children: dict[int | None, list[int]] = {}
    for tid, parent in session.execute(select(Team.id, Team.parent_id)):
        children.setdefault(parent, []).append(tid)
    found, frontier = [team_id], [team_id]
    while frontier:
        frontier = [c for t in frontier for c in children.get(t, ()) if c not in found]
        found.extend(frontier)
    return found


# -- masking -------------------------------------------------------------
_DIGIT = re.compile(r"\d")


def mask(field_name: str, value: Any) -> Any:
    """A value with enough left to recognise it and not enough to use it."""
    if value is None or value == "":
        return value
    text = str(value)
    if "email" in field_name:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}" if domain else "***"
    if "phone" in field_name:
        return _mask_phone(text)
    if field_name == "tax_id":
        return "*" * max(len(text) - 4, 3) + text[-4:] if len(text) > 4 else "****"
    if field_name == "amount":
        return "***"
    return text[:1] + "***"


def _mask_phone(text: str) -> str:
    """Keep the country code and the last two digits: ``+7 *** ***-**-12``."""
    digits = [i for i, c in enumerate(text) if c.isdigit()]
    keep = set(digits[-2:])
    if text.startswith("+"):
        code_end = text.find(" ")
        keep |= {i for i in digits if 0 < i < (code_end if code_end > 0 else 3)}
    return "".join(c if (not c.isdigit() or i in keep) else "*" for i, c in enumerate(text))


def _describe_cap(cap: str) -> str:
    resource, _, action = cap.partition(":")
    return f"{action} {resource}"
