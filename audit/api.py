"""``/api/v1/audit/events``: search the audit log (officers and auditors)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, request

from appliance.kernel.db import get_db
from appliance.kernel.errors import BadRequest, NotFound
from appliance.kernel.http import MAX_SEQ
from appliance.kernel.paging import page_args
from appliance.kernel.permissions import Cap
from appliance.kernel.principal import require
from audit.query import Search, get_event, search
from audit.requests import record_event

#: Registered under the API blueprint (``/api/v1``), which authenticates the caller.
bp = Blueprint("audit", __name__)


def criteria_from(args: Any) -> Search:
    """Search criteria from query-string arguments, checked."""
    def when(name: str) -> datetime | None:
        raw = args.get(name) or None
        if raw is None:
            return None
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(detail=f"{name} must be a date or time like 2026-03-02T09:00") from None

    return Search(user=args.get("user") or None, action=args.get("action") or None,
                  entity=args.get("entity") or None, entity_id=args.get("entity_id") or None,
                  ip=args.get("ip") or None, since=when("since"), until=when("until"))


@bp.get("/audit/events")
def audit_events() -> Any:
    require(Cap.AUDIT_READ)
    criteria = criteria_from(request.args)
    page = search(get_db(), criteria, page=page_args()[0], per_page=page_args()[1])
    record_event("audit.search", meta={"via": "api", "criteria": _shown(criteria),
                                       "results": page.total})
    get_db().commit()
    return page.to_json()


@bp.get(f"/audit/events/<int(largest={MAX_SEQ}):seq>")
def audit_event(seq: int) -> Any:
    require(Cap.AUDIT_READ)
    event = get_event(get_db(), seq)
    if event is None:
        raise NotFound(entity="audit event")
    return event


def _shown(criteria: Search) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in criteria.__dict__.items() if v not in (None, (), True)}
