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

from sqlalchemy import ColumnElement, Select, false, or_

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
    """``SELECT`` for a list of ``entity`` the user may ``action``, searched, filtered and sorted.

    Search, filters and sort only ever touch fields the policy lets this user match or read:
    a hidden field that still narrowed or ordered a list would answer questions about its
    values (does this tax id exist? whose city comes first?)."""
    stmt = policy.select(entity, action)
    if query.q:
        stmt = stmt.where(search_clause(policy, entity, query.q))
    for name, raw in query.filters.items():
        column = FILTERS[entity][name]
        if not policy.matchable(entity, field_of(column)):
            raise BadRequest(detail=f"filter {name} is not available to you; filter by one of: "
                                    f"{', '.join(filters_for(policy, entity)) or 'none'}")
        stmt = stmt.where(column == _filter_value(name, raw))
    return stmt.order_by(*_order(policy, entity, query.sort))


#: Columns kept for search and sort under another name than the field they stand for.
_STANDS_FOR = {"name_folded": "name"}


def field_of(column: Any) -> str:
    """The field a column holds (``name_folded`` holds the name), for asking the policy."""
    key = column.key
    return _STANDS_FOR.get(key, key)


def search_clause(policy: Policy, entity: Entity, q: str) -> ColumnElement[bool]:
    """What the search box matches: names anywhere; e-mail, phone and tax id exactly (they are
    encrypted: the comparison is on their blind indexes). Only fields the user may match
    take part: names need to be readable (a part of a name is not an exact match), the exact
    fields readable or masked with exact match allowed. Nothing left to match finds nothing."""
    pattern = contains(q)
    terms: list[ColumnElement[bool]] = []
    for name, column in SEARCH[entity]:
        if name in EXACT:
            if policy.matchable(entity, name):
                terms.append(column.matches(q))
        elif policy.readable(entity, name):
            like = column.like if column is Account.name_folded else column.ilike  # folded already
            terms.append(like(pattern, escape="\\"))
    return or_(*terms) if terms else false()


#: Fields the search box looks in, per entity (the column it compares).
SEARCH: dict[Entity, tuple[tuple[str, Any], ...]] = {
    Entity.ACCOUNT: (("name", Account.name_folded), ("email", Account.email),
                     ("tax_id", Account.tax_id), ("phone", Account.phone)),
    Entity.CONTACT: (("last_name", Contact.last_name), ("first_name", Contact.first_name),
                     ("email", Contact.email), ("phone", Contact.phone)),
    Entity.DEAL: (("name", Deal.name),),
    Entity.ACTIVITY: (("subject", Activity.subject),),
}
#: Fields searched by their exact value (through their blind index).
EXACT = frozenset({"email", "phone", "tax_id"})


def sorts_for(policy: Policy, entity: Entity) -> list[str]:
    """Sort keys this user may use: an order by a field one may not read tells its values."""
    return sorted(k for k, column in SORTS[entity].items()
                  if policy.readable(entity, field_of(column)))


def filters_for(policy: Policy, entity: Entity) -> list[str]:
    """Filters this user may use: an exact comparison needs the field matchable."""
    return [k for k, column in FILTERS[entity].items()
            if policy.matchable(entity, field_of(column))]


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


def _order(policy: Policy, entity: Entity, sort: str) -> list[Any]:
    sort = sort or DEFAULT_SORT[entity]
    key = sort.lstrip("-")
    allowed = sorts_for(policy, entity)
    model_id = {Entity.ACCOUNT: Account.id, Entity.CONTACT: Contact.id, Entity.DEAL: Deal.id,
                Entity.ACTIVITY: Activity.id}[entity]
    if key not in allowed:
        if sort == DEFAULT_SORT[entity]:
            return [model_id]  # the usual order is on a field this user may not read
        raise BadRequest(detail=f"sort must be one of: {', '.join(allowed)} "
                                "(prefix with - for descending)")
    column = SORTS[entity][key]
    ordered = column.desc() if sort.startswith("-") else column.asc()
    return [ordered, model_id]
