"""The application's own routes (from its url_map), made into concrete URLs.

Attacks sweep every route rather than a list written by hand, so a route added later is
attacked too. ``Targets`` says which existing thing each URL parameter names: things the
attacker may reach, or things that belong to someone else.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.access import Entity
from crm.identity import Role
from tests.security.world import OWNERS, RESOURCES, Org

CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Values for URL parameters that name no stored thing.
FIXED = {"decision": "approve", "key": "funnel", "filename": "citadel.css", "username": "sam"}
#: ``<what>`` per endpoint.
WHAT = {"admin.restrict": "freeze", "alerts.take_response": "freeze"}
ENTITY_OF_PARAM = {"account_id": Entity.ACCOUNT, "contact_id": Entity.CONTACT,
                   "deal_id": Entity.DEAL, "activity_id": Entity.ACTIVITY}


@dataclass(frozen=True)
class Route:
    rule: str
    endpoint: str
    methods: frozenset[str]
    params: tuple[str, ...]
    url: str


@dataclass
class Targets:
    """What each URL parameter points at."""

    records: dict[Entity, str]
    attachment: str
    export_request: str
    import_batch: str
    share: int
    alert: int
    seq: int
    user: int
    role: int
    change: int
    extra: dict[str, Any] = field(default_factory=dict)

    def value(self, name: str, endpoint: str, resource: str | None) -> Any:
        if name in ENTITY_OF_PARAM:
            return self.records[ENTITY_OF_PARAM[name]]
        if name == "record_id":
            return self.records[RESOURCES[resource or "accounts"]]
        named = {"attachment_id": self.attachment, "request_id": self.export_request,
                 "batch_id": self.import_batch, "share_id": self.share, "alert_id": self.alert,
                 "seq": self.seq, "user_id": self.user, "role_id": self.role,
                 "change_id": self.change}
        if name in named:
            return named[name]
        if name == "what":
            return WHAT[endpoint]
        return self.extra.get(name, FIXED.get(name))


def targets(org: Org, db: Session, *, owner: str = "sam", which: int = 0) -> Targets:
    """Things of ``owner``: their first (or second) account, its contact, deal and activity,
    their attachment, the organisation's export request, import upload, share, alert and
    rights change."""
    index = OWNERS.index(owner) * 2 + which
    records = {entity: str(ids[index]) for entity, ids in org.records.items()}
    staff = db.scalars(select(Role.id).where(Role.name == "staff")).one()
    return Targets(records=records, attachment=str(org.attachments.get(owner, uuid.uuid4())),
                   export_request=str(org.export_request_id), import_batch=str(org.import_batch_id),
                   share=org.shares[0], alert=org.alert_id, seq=1, user=org.people[owner].id,
                   role=staff, change=org.rights_change_id)


def routes(app: Flask, where: Targets, methods: frozenset[str] | None = None) -> list[Route]:
    """Every rule of the app with the wanted methods, as URLs naming ``where``'s things; a rule
    over several API resources gives one URL per resource."""
    adapter = app.url_map.bind("localhost")
    found = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        wanted = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        if methods is not None:
            wanted &= methods
        if not wanted:
            continue
        for resource in _resources(rule):
            values = {name: where.value(name, rule.endpoint, resource) for name in rule.arguments}
            if resource is not None:
                values["resource"] = resource
            url = adapter.build(rule.endpoint, values, method=sorted(wanted)[0])
            found.append(Route(rule.rule, rule.endpoint, frozenset(wanted),
                               tuple(sorted(rule.arguments)), url))
    return found


def _resources(rule: Any) -> Iterator[str | None]:
    if "resource" in rule.arguments:
        yield from RESOURCES
    else:
        yield None
