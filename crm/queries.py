"""List queries for client records: search, filters and sort, always on top of
the access policy's filter. The web UI, the API, exports, prints and reports
all build their lists here, so they can never disagree about what a person
may see.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, or_

from appliance.kernel.errors import BadRequest
from crm.access import Action, Entity, Policy
from crm.models import Account, Activity, Contact, Deal, fold

SORTS: dict[Entity, dict[str, Any]] = {
    Entity.ACCOUNT: {"name": Account.name_folded, "city": Account.city, "status": Account.status,
                     "updated": Account.updated_at, "created": Account.created_at,
                     "owner": Account.owner_id},
    Entity.CONTACT: {"name": Contact.last_name, "first_name": Contact.first_name,
                     "updated": Contact.updated_at},
    Entity.DEAL: {"name": Deal.name, "amount": Deal.amount, "stage": Deal.stage,
                  "close": Deal.expected_close, "updated": Deal.updated_at},
    Entity.ACTIVITY: {"due": Activity.due_at, "created": Activity.created_at,
                      "subject": Activity.subject},
}
DEFAULT_SORT = {Entity.ACCOUNT: "name", Entity.CONTACT: "name", Entity.DEAL: "-updated",
                Entity.ACTIVITY: "-created"}

#: Filters each list accepts, and the column each one compares.
FILTERS: dict[Entity, dict[str, Any]] = {
    Entity.ACCOUNT: {"status": Account.status, "industry": Account.industry,
                     "country": Account.country, "owner_id": Account.owner_id,
                     "team_id": Account.team_id},
    Entity.CONTACT: {"account_id": Contact.account_id},
    Entity.DEAL: {"stage": Deal.stage, "owner_id": Deal.owner_id, "account_id": Deal.account_id,
                  "currency": Deal.currency},
    Entity.ACTIVITY: {"kind": Activity.kind, "owner_id": Activity.owner_id,
                      "account_id": Activity.account_id},
}

_LIKE_ESCAPE = re.compile(r"([\\%_])")


@dataclass
class ListQuery:
    """What someone asked a list for: search text, filters and sort."""

    q: str = ""
    filters: dict[str, str] = field(default_factory=dict)
    sort: str = ""

    @classmethod
    def from_args(cls, entity: Entity, args: Mapping[str, str]) -> ListQuery:
        allowed = FILTERS[entity]
        filters = {k: v for k, v in args.items() if k in allowed and v != ""}
        return cls(q=(args.get("q") or "").strip()[:200], filters=filters,
                   sort=args.get("sort") or DEFAULT_SORT[entity])


def contains(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with wildcards in it taken literally."""
    return "%" + _LIKE_ESCAPE.sub(r"\\\1", fold(text)) + "%"


def build(policy: Policy, entity: Entity, query: ListQuery,
          action: Action = Action.READ) -> Select[Any]:
    """``SELECT`` for a list of ``entity`` the user may ``action``, searched, filtered and sorted."""
    stmt = policy.select(entity, action)
    if query.q:
        stmt = stmt.where(search_clause(entity, query.q))
    for name, raw in query.filters.items():
        stmt = stmt.where(FILTERS[entity][name] == _filter_value(name, raw))
    return stmt.order_by(*_order(entity, query.sort))


def search_clause(entity: Entity, q: str) -> ColumnElement[bool]:
    """What the search box matches: names anywhere; e-mail, phone and tax id exactly (they are
    encrypted: the comparison is on their blind indexes)."""
    pattern = contains(q)
    if entity is Entity.ACCOUNT:
        return or_(Account.name_folded.like(pattern, escape="\\"), Account.email.matches(q),
                   Account.tax_id.matches(q), Account.phone.matches(q))
    if entity is Entity.CONTACT:
        return or_(Contact.last_name.ilike(pattern, escape="\\"),
                   Contact.first_name.ilike(pattern, escape="\\"), Contact.email.matches(q),
                   Contact.phone.matches(q))
    if entity is Entity.DEAL:
        return Deal.name.ilike(pattern, escape="\\")
    return Activity.subject.ilike(pattern, escape="\\")


#: Users and teams have 32-bit integer ids.
MAX_INT_ID = 2**31 - 1


def _filter_value(name: str, raw: str) -> Any:
    try:
        if name in ("owner_id", "team_id"):
            value = int(raw)
            if not -MAX_INT_ID <= value <= MAX_INT_ID:
                raise ValueError(raw)
            return value
        if name.endswith("_id"):
            return uuid.UUID(raw)
    except ValueError:
        raise BadRequest(detail=f"filter {name} has an invalid value") from None
    return raw


def _order(entity: Entity, sort: str) -> list[Any]:
    key = sort.lstrip("-")
    columns = SORTS[entity]
    if key not in columns:
        raise BadRequest(detail=f"sort must be one of: {', '.join(sorted(columns))} "
                                "(prefix with - for descending)")
    column = columns[key]
    model_id = {Entity.ACCOUNT: Account.id, Entity.CONTACT: Contact.id, Entity.DEAL: Deal.id,
                Entity.ACTIVITY: Activity.id}[entity]
    ordered = column.desc() if sort.startswith("-") else column.asc()
    return [ordered, model_id]
