"""``/api/v1/alerts``: the alert queue for officers' tools and SIEMs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from sqlalchemy import select

from appliance.kernel.db import get_db
from appliance.kernel.http import json_body
from appliance.kernel.paging import page_args, paginate
from appliance.kernel.permissions import Cap
from crm.current import policy
from dlp.alerts import OPEN, STATUSES, Alert, Triage

#: Registered under the API blueprint (``/api/v1``), which authenticates the caller.
bp = Blueprint("alerts", __name__)


@bp.get("/alerts")
def list_alerts() -> Any:
    policy().require_cap(Cap.ALERTS_READ)
    stmt = select(Alert)
    status = request.args.get("status", "open")
    if status == "open":
        stmt = stmt.where(Alert.status.in_(OPEN))
    elif status in STATUSES:
        stmt = stmt.where(Alert.status == status)
    if request.args.get("user"):
        stmt = stmt.where(Alert.user == request.args["user"])
    page = paginate(stmt.order_by(Alert.opened_at.desc(), Alert.id.desc()), *page_args())
    return page.as_json([a.public() for a in page.items])


@bp.get("/alerts/<int:alert_id>")
def get_alert(alert_id: int) -> Any:
    policy().require_cap(Cap.ALERTS_READ)
    return Triage(get_db(), policy().user.username).get(alert_id).public()


@bp.patch("/alerts/<int:alert_id>")
def update_alert(alert_id: int) -> Any:
    """``{"status": "dismissed", "reason": "..."}`` and/or ``{"assignee": "sofia"}``."""
    policy().require_cap(Cap.ALERTS_TRIAGE)
    from appliance.kernel.errors import BadRequest
    body = json_body()
    triage = Triage(get_db(), policy().user.username, request.remote_addr)
    if not {"status", "assignee"} & set(body):
        raise BadRequest(detail="send status (with reason to dismiss) and/or assignee")
    if "status" in body:
        triage.set_status(alert_id, str(body["status"]), str(body.get("reason", "")))
    if "assignee" in body:
        triage.assign(alert_id, body["assignee"] if isinstance(body["assignee"], str) else None)
    get_db().commit()
    return triage.get(alert_id).public()
