"""``/api/v1/accounts|contacts|deals|activities``: list, read, create, change, delete."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from appliance.kernel.db import get_db
from appliance.kernel.http import json_body
from appliance.kernel.paging import page_args, paginate
from audit.requests import record_event
from crm.access import Action, Entity
from crm.api.serialize import serialize
from crm.current import policy
from crm.queries import ListQuery, build
from crm.records import RecordService

#: Registered under the API blueprint (``/api/v1``), which authenticates the caller.
bp = Blueprint("records", __name__)

RESOURCES = {"accounts": Entity.ACCOUNT, "contacts": Entity.CONTACT, "deals": Entity.DEAL,
             "activities": Entity.ACTIVITY}
KIND = "any(accounts, contacts, deals, activities)"


def _service() -> RecordService:
    return RecordService(get_db(), policy(), request.remote_addr, strict=True)


@bp.get(f"/<{KIND}:resource>")
def list_records(resource: str) -> Any:
    entity = RESOURCES[resource]
    policy().require(entity, Action.READ)
    query = ListQuery.from_args(entity, request.args)
    page = paginate(build(policy(), entity, query), *page_args())
    me = policy().user.id
    record_event("api.read", entity=entity.value, count=len(page.items),
                 meta={"ids": [str(r.id) for r in page.items], "total": page.total,
                       "q_len": len(query.q), "filters": sorted(query.filters),
                       "outside_book": sum(1 for r in page.items if r.owner_id != me)})
    get_db().commit()
    return page.as_json([serialize(policy(), entity, r) for r in page.items])


@bp.post(f"/<{KIND}:resource>")
def create_record(resource: str) -> Any:
    entity = RESOURCES[resource]
    record = _service().create(entity, json_body())
    get_db().commit()
    return serialize(policy(), entity, record), 201


@bp.get(f"/<{KIND}:resource>/<record_id>")
def get_record(resource: str, record_id: str) -> Any:
    entity = RESOURCES[resource]
    record = policy().get(entity, record_id)
    record_event("api.read", entity=entity.value, entity_id=record.id, count=1,
                 meta={"outside_book": int(record.owner_id != policy().user.id)})
    get_db().commit()
    return serialize(policy(), entity, record)


@bp.patch(f"/<{KIND}:resource>/<record_id>")
def update_record(resource: str, record_id: str) -> Any:
    entity = RESOURCES[resource]
    record = _service().update(entity, record_id, json_body())
    get_db().commit()
    return serialize(policy(), entity, record)


@bp.delete(f"/<{KIND}:resource>/<record_id>")
def delete_record(resource: str, record_id: str) -> Any:
    _service().delete(RESOURCES[resource], record_id)
    get_db().commit()
    return "", 204
