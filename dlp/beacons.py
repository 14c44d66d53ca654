"""``POST /api/v1/beacons``: the browser's report of a copy, cut or print on a CRM page.

The page sends what was copied (which records, how many characters), never
the text itself. A beacon is an ordinary authenticated API call from the
session (CSRF header included), rate-limited per person, and becomes one
``copy`` or ``print`` audit event with the number of records involved.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, request
from sqlalchemy import func, select

from appliance.kernel.db import get_db
from appliance.kernel.errors import BadRequest, TooManyRequests
from audit.models import AuditEvent
from audit.requests import record_event
from crm.current import policy

#: Registered under the API blueprint (``/api/v1``), which authenticates the caller.
bp = Blueprint("beacons", __name__)

ACTIONS = {"copy": "copy", "cut": "copy", "print": "print"}
ENTITIES = ("account", "contact", "deal", "activity", "report")
MAX_IDS = 500
PER_MINUTE = 120


@bp.post("/beacons")
def beacon() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest(detail="send a JSON object")
    kind = body.get("action")
    if kind not in ACTIONS:
        raise BadRequest(detail=f"action must be one of: {', '.join(ACTIONS)}")
    entity = body.get("entity")
    if entity is not None and entity not in ENTITIES:
        raise BadRequest(detail=f"entity must be one of: {', '.join(ENTITIES)}")
    ids = body.get("ids") or []
    if not isinstance(ids, list) or len(ids) > MAX_IDS:
        raise BadRequest(detail=f"ids must be a list of at most {MAX_IDS} record ids")
    try:
        ids = sorted({str(uuid.UUID(str(i))) for i in ids})
    except ValueError:
        raise BadRequest(detail="ids must be record ids") from None
    size = body.get("size", 0)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= 10_000_000:
        raise BadRequest(detail="size must be a number of characters")
    _limit(policy().user.username)
    record_event(ACTIONS[kind], entity=entity, count=len(ids),
                 meta={"via": "browser", "kind": kind, "ids": ids, "chars": size,
                       "page": str(body.get("page", ""))[:200]})
    get_db().commit()
    return {"recorded": True}, 201


def _limit(username: str) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    recent = get_db().scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.user == username, AuditEvent.action.in_(("copy", "print")), AuditEvent.ts >= since))
    if (recent or 0) >= PER_MINUTE:
        raise TooManyRequests(minutes=1)
