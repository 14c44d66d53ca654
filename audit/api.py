"""``/api/v1/audit/events``: search the audit log (officers and auditors)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import request

from appliance.api import bp
from appliance.db import get_db
from appliance.errors import BadRequest, NotFound
from appliance.web import MAX_SEQ, page_args, policy, record_event
from audit.query import Search, get_event, search
from crm.access import Cap


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
    policy().require_cap(Cap.AUDIT_READ)
    criteria = criteria_from(request.args)
    page = search(get_db(), criteria, page=page_args()[0], per_page=page_args()[1])
    record_event("audit.search", meta={"via": "api", "criteria": _shown(criteria),
                                       "results": page.total})
    get_db().commit()
    return page.to_json()


@bp.get(f"/audit/events/<int(largest={MAX_SEQ}):seq>")
def audit_event(seq: int) -> Any:
    policy().require_cap(Cap.AUDIT_READ)
    event = get_event(get_db(), seq)
    if event is None:
        raise NotFound(entity="audit event")
    return event


def _shown(criteria: Search) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in criteria.__dict__.items() if v not in (None, (), True)}
