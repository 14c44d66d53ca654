"""Records as JSON, as the caller may see them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from crm.access import Entity, Policy

#: Read-only facts every record shows beside its fields.
META_FIELDS = {
    Entity.ACCOUNT: ("created_at", "updated_at"),
    Entity.CONTACT: ("account_id", "created_at", "updated_at"),
    Entity.DEAL: ("account_id", "created_at", "updated_at", "closed_at"),
    Entity.ACTIVITY: ("account_id", "deal_id", "contact_id", "created_at"),
}


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    return value


def serialize(policy: Policy, entity: Entity, record: Any) -> dict[str, Any]:
    body = {"id": str(record.id)}
    body.update({k: jsonable(getattr(record, k)) for k in META_FIELDS[entity]})
    body.update({k: jsonable(v) for k, v in policy.present(entity, record).items()})
    return body
