"""``/api/v1/alerts``: the alert queue for officers' tools and SIEMs."""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy import select

from appliance.api import bp
from appliance.db import get_db
from appliance.web import page_args, paginate, policy
from crm.access import Cap
from dlp.alerts import OPEN, STATUSES, Alert, Triage


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
    from appliance.errors import BadRequest
    from crm.api.records import json_body

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
