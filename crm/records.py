"""Creating, changing, reassigning and deleting client records.

Every change goes through ``RecordService``: it checks the action and every
submitted field against the policy, refuses owners outside the user's reach,
and writes one audit event with the old and new value of each changed field
(the field history), in the same transaction as the change.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from appliance.kernel.errors import Forbidden, ValidationFailed
from appliance.keys import decrypt_value, encrypt_value
from appliance.keys.fields import fields_of
from crm.access import Action, Entity, Policy
from crm.identity import User
from crm.models import OPEN_STAGES, Account, Activity, Contact, Deal
from crm.validation import clean

#: The "table" encrypted field-history values are bound to (with the record's table and field).
HISTORY_TABLE = "audit_history"
#: Fields that link a record to others; they are checked as links, not as fields.
LINKS = {"account_id", "deal_id", "contact_id", "done"}


def history_value(record: Any, name: str, value: Any) -> Any:
    """How a field's value is kept in the audit log's field history.

    Values of encrypted fields are encrypted again for the log, bound to the
    record and the field, so the audit trail holds no client data in clear.
    """
    if value is None:
        return None
    if isinstance(value, datetime | date):
        value = value.isoformat()
    elif isinstance(value, Decimal | uuid.UUID):
        value = str(value)
    if name in encrypted_names(type(record)) and value != "":
        blob = encrypt_value(HISTORY_TABLE, f"{record.__tablename__}.{name}", record.id, str(value))
        return {"enc": base64.b64encode(blob).decode()}
    return value


def read_history_value(record_table: str, record_id: Any, name: str, stored: Any) -> Any:
    """The value ``history_value`` kept, decrypted if it was encrypted."""
    if isinstance(stored, dict) and "enc" in stored:
        return decrypt_value(HISTORY_TABLE, f"{record_table}.{name}", record_id,
                             base64.b64decode(stored["enc"]))
    return stored


def _nullable(model: Any, name: str) -> bool:
    """May the column behind ``name`` hold NULL (fields without a plain column may)?"""
    column = model.__table__.columns.get(name)
    return column is None or column.nullable


def encrypted_names(model: type) -> set[str]:
    return {f.name for f in fields_of(model)}


class RecordService:
    """Changes to client records made by one user, from one address."""

    def __init__(self, db: Session, policy: Policy, ip: str | None = None, *,
                 strict: bool = False) -> None:
        self.db = db
        self.policy = policy
        self.ip = ip
        self.strict = strict  # values came as JSON: each must have its JSON type

    @property
    def user(self) -> User:
        return self.policy.user

    # -- create ---------------------------------------------------------
    def create(self, entity: Entity, data: dict[str, Any]) -> Any:
        self.policy.require(entity, Action.CREATE)
        values = clean(entity.value, data, strict=self.strict)
        self.policy.check_writable(entity, set(values) - LINKS - {"owner_id"})
        builder = getattr(self, f"_new_{entity.value}")
        record = builder(values)
        self.db.add(record)
        self.db.flush()
        self._audit("record.create", entity, record,
                    {k: [None, history_value(record, k, v)] for k, v in values.items()
                     if v not in (None, "")})
        return record

    def _new_account(self, values: dict[str, Any]) -> Account:
        owner = self._owner(Entity.ACCOUNT, Action.CREATE, values.pop("owner_id", None))
        values.pop("team_id", None)
        return Account(**values, owner_id=owner.id, team_id=owner.team_id)

    def _new_contact(self, values: dict[str, Any]) -> Contact:
        account = self._account_for(Entity.CONTACT, Action.CREATE, values["account_id"])
        values["account_id"] = account.id
        return Contact(**values)

    def _new_deal(self, values: dict[str, Any]) -> Deal:
        self._account_for(Entity.DEAL, Action.READ, values["account_id"])
        owner = self._owner(Entity.DEAL, Action.CREATE, values.pop("owner_id", None))
        return Deal(**values, owner_id=owner.id, team_id=owner.team_id)

    def _new_activity(self, values: dict[str, Any]) -> Activity:
        self._account_for(Entity.ACTIVITY, Action.READ, values["account_id"])
        owner = self._owner(Entity.ACTIVITY, Action.CREATE, values.pop("owner_id", None))
        done = values.pop("done", False)
        self._check_links(values)
        return Activity(**values, owner_id=owner.id, team_id=owner.team_id,
                        done_at=datetime.now(UTC) if done else None)

    # -- update ---------------------------------------------------------
    def update(self, entity: Entity, record_id: uuid.UUID | str, data: dict[str, Any]) -> Any:
        record = self.policy.get(entity, record_id, Action.EDIT)
        values = clean(entity.value, data, partial=True, strict=self.strict)
        if "account_id" in values and values["account_id"] != record.account_id:
            raise ValidationFailed({"account_id": "cannot be changed; create the record "
                                                  "on the other account instead"})
        values.pop("account_id", None)
        self.policy.check_writable(entity, set(values) - LINKS - {"owner_id", "team_id"})
        if "owner_id" in values and values["owner_id"] != getattr(record, "owner_id", None):
            self._reassign_one(entity, record, values.pop("owner_id"))
        values.pop("owner_id", None)
        values.pop("team_id", None)
        if entity is Entity.ACTIVITY:
            self._check_links(values)
            if "done" in values:
                done = values.pop("done")
                values["done_at"] = (record.done_at or datetime.now(UTC)) if done else None
        if entity is Entity.DEAL and "stage" in values:
            closing = values["stage"] not in OPEN_STAGES
            values["closed_at"] = (record.closed_at or datetime.now(UTC)) if closing else None
        blank = {name: "cannot be empty" for name, value in values.items()
                 if value is None and not _nullable(type(record), name)}
        if blank:
            raise ValidationFailed(blank)
        changes = {}
        for name, value in values.items():
            old = getattr(record, name)
            if old != value:
                changes[name] = [history_value(record, name, old), history_value(record, name, value)]
                setattr(record, name, value)
        if changes:
            self.db.flush()
            self._audit("record.update", entity, record, changes)
        return record

    # -- reassign ---------------------------------------------------------
    def reassign(self, entity: Entity, record_ids: list[str], new_owner_id: int) -> int:
        """Give records to another owner; every record must be within the user's reach."""
        records = [self.policy.get(entity, rid, Action.REASSIGN) for rid in record_ids]
        for record in records:
            self._reassign_one(entity, record, new_owner_id)
        return len(records)

    def _reassign_one(self, entity: Entity, record: Any, new_owner_id: int) -> None:
        if entity is Entity.CONTACT:
            raise ValidationFailed({"owner_id": "contacts follow their account's owner"})
        if not self.policy.scope_reaches(entity, Action.REASSIGN, owner_id=record.owner_id,
                                         team_id=record.team_id):
            raise Forbidden(action=f"reassign this {entity.value}")
        owner = self._owner(entity, Action.REASSIGN, new_owner_id)
        changes = {"owner_id": [record.owner_id, owner.id], "team_id": [record.team_id, owner.team_id]}
        previous = self.db.get(User, record.owner_id)
        record.owner_id, record.team_id = owner.id, owner.team_id
        self.db.flush()
        self._audit("record.reassign", entity, record, changes,
                    to=owner.username, from_=previous.username if previous else None)

    # -- delete ---------------------------------------------------------
    def delete(self, entity: Entity, record_id: uuid.UUID | str) -> None:
        record = self.policy.get(entity, record_id, Action.DELETE)
        self._audit("record.delete", entity, record, {})
        self.db.delete(record)
        self.db.flush()

    # -- helpers --------------------------------------------------------
    def _owner(self, entity: Entity, action: Action, owner_id: int | None) -> User:
        """The owner a record may be given: the user, or someone within their scope."""
        if owner_id is None or owner_id == self.user.id:
            return self.user
        owner = self.db.get(User, owner_id)
        if owner is None or not owner.can_sign_in:
            raise ValidationFailed({"owner_id": "is not an active user"})
        if not self.policy.scope_reaches(entity, action, owner_id=owner.id, team_id=owner.team_id):
            raise Forbidden(action=f"give {entity.value}s to {owner.username}")
        return owner

    def _account_for(self, entity: Entity, action: Action, account_id: uuid.UUID) -> Account:
        """The account a related record hangs on: it must be visible to the user."""
        account = self.policy.get(Entity.ACCOUNT, account_id, Action.READ)
        if action is Action.CREATE and not self.policy.scope_reaches(
                entity, action, owner_id=account.owner_id, team_id=account.team_id):
            raise Forbidden(action=f"add {entity.value}s to this account")
        return account

    def _check_links(self, values: dict[str, Any]) -> None:
        """A linked deal or contact must be one the user can see, on the same account."""
        for key, entity in (("deal_id", Entity.DEAL), ("contact_id", Entity.CONTACT)):
            if values.get(key) is not None:
                linked = self.policy.get(entity, values[key], Action.READ)
                if "account_id" in values and linked.account_id != values["account_id"]:
                    raise ValidationFailed({key: "belongs to another account"})

    def _audit(self, action: str, entity: Entity, record: Any, changes: dict[str, Any],
               **extra: Any) -> None:
        meta: dict[str, Any] = {"changes": changes} if changes else {}
        meta.update({k.rstrip("_"): v for k, v in extra.items()})  # reassignments name from and to
        audit.record(self.db, action, user=self.user.username, ip=self.ip, entity=entity.value,
                     entity_id=record.id, count=1, meta=meta)


def users_in_reach(db: Session, policy: Policy, entity: Entity, action: Action) -> list[User]:
    """Users the current user may give records to, for owner pickers."""
    users = db.scalars(select(User).where(User.active.is_(True), User.offboarded_at.is_(None))
                       .order_by(User.full_name)).all()
    return [u for u in users if u.id == policy.user.id
            or policy.scope_reaches(entity, action, owner_id=u.id, team_id=u.team_id)]
