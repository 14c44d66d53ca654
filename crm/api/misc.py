"""``/api/v1/exports``, ``/api/v1/reports`` and ``/api/v1/users``."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import select

from appliance.kernel.db import get_db
from appliance.kernel.errors import BadRequest, NotFound
from appliance.kernel.http import json_body
from appliance.kernel.paging import page_args, paginate
from appliance.kernel.permissions import Cap
from appliance.kernel.runtime import appliance_settings
from audit.requests import record_event
from crm import reports
from crm.access import Entity
from crm.api.records import RESOURCES
from crm.api.serialize import jsonable
from crm.current import policy
from crm.exports import Export, export_records
from crm.identity import User
from crm.queries import ListQuery

#: Registered under the API blueprint (``/api/v1``), which authenticates the caller.
bp = Blueprint("crm", __name__)


@bp.get("/exports")
def list_exports() -> Any:
    """The caller's own exports (officers and auditors see everyone's in the audit log)."""
    stmt = select(Export).where(Export.user_id == policy().user.id).order_by(
        Export.created_at.desc())
    page = paginate(stmt, *page_args())
    return page.as_json([_export(e) for e in page.items])


@bp.post("/exports")
def create_export() -> Response:
    """Export a list as CSV: ``{"resource": "accounts", "q": "...", "filters": {...}}``."""
    body = json_body()
    resource = body.get("resource")
    if resource not in RESOURCES:
        raise BadRequest(detail=f"resource must be one of: {', '.join(RESOURCES)}")
    fmt = body.get("format", "csv")
    if fmt not in ("csv", "xlsx"):
        raise BadRequest(detail="format must be csv or xlsx")
    filters = {} if body.get("filters") is None else body["filters"]
    if not isinstance(filters, dict) or not all(isinstance(v, str) for v in filters.values()):
        raise BadRequest(detail="filters must be an object of text values")
    entity = RESOURCES[resource]
    args = {**filters, "q": _text(body, "q"), "sort": _text(body, "sort")}
    query = ListQuery.from_args(entity, {k: v for k, v in args.items() if v})
    result = export_records(get_db(), policy(), entity, query, fmt, request.remote_addr,
                            settings=appliance_settings())
    get_db().commit()
    return Response(result.content, content_type=result.mimetype, headers={
        "Content-Disposition": f'attachment; filename="{result.filename}"',
        "X-Export-Id": str(result.export.id), "X-Export-Rows": str(result.export.row_count)})


def _text(body: dict[str, Any], name: str) -> str:
    """A text member of the body; absent or null is empty (never the text "None")."""
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(detail=f"{name} must be text")
    return value


@bp.get("/reports")
def list_reports() -> Any:
    policy().require(Entity.REPORT, "read")
    items = [{"key": k, "title": t} for k, t in reports.REPORTS.items()]
    return {"items": items, "total": len(items), "page": 1, "per_page": len(items)}


@bp.get("/reports/<key>")
def run_report(key: str) -> Any:
    if key not in reports.REPORTS:
        raise NotFound(entity="report")
    report = reports.run(get_db(), policy(), key)
    record_event("report.run", entity="deal" if key != "overdue" else "activity",
                 count=report.records, meta={"report": key, "via": "api"})
    get_db().commit()
    rows = json.loads(json.dumps(report.rows, default=jsonable))
    extra = {k: v for k, v in report.extra.items() if k not in ("oldest", "now")}
    return {"key": key, "title": report.title, "records": report.records, "rows": rows,
            "extra": json.loads(json.dumps(extra, default=jsonable))}


@bp.get("/users")
def list_users() -> Any:
    """Users: everyone sees names (for owner pickers); user admins see roles and status too."""
    admin = policy().holds(Cap.USERS_ADMIN)
    stmt = select(User).order_by(User.username)
    q = request.args.get("q", "").strip()
    if q:
        stmt = stmt.where(User.username.contains(q, autoescape=True))
    page = paginate(stmt, *page_args())
    return page.as_json([_user(u, admin) for u in page.items])


@bp.get("/users/me")
def me() -> Any:
    return _user(policy().user, True) | {"capabilities": sorted(policy().grants.caps)}


def _user(user: User, full: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"id": user.id, "username": user.username, "full_name": user.full_name,
                            "team_id": user.team_id}
    if full:
        body.update(roles=user.role_names, active=user.active,
                    frozen=user.frozen_at is not None, on_notice=user.notice_at is not None,
                    offboarded=user.offboarded_at is not None)
    return body


def _export(export: Export) -> dict[str, Any]:
    return {"id": str(export.id), "entity": export.entity, "format": export.format,
            "rows": export.row_count, "fields": json.loads(export.fields),
            "created_at": export.created_at.isoformat(), "sha256": export.content_sha256}
