"""Exports over a cap: ask a manager, decide, run the approved export."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from appliance.kernel.db import get_db
from appliance.kernel.errors import ValidationFailed
from appliance.kernel.principal import login_required
from appliance.kernel.runtime import appliance_settings
from crm import export_requests as requests_
from crm.access import Entity
from crm.current import policy
from crm.exports import export_records
from crm.identity import User
from crm.queries import ListQuery

bp = Blueprint("exports", __name__, url_prefix="/exports", template_folder="../templates")


@bp.get("/requests")
@login_required
def index() -> str:
    db = get_db()
    mine = db.scalars(select(requests_.ExportRequest).where(
        requests_.ExportRequest.user_id == policy().user.id)
        .order_by(requests_.ExportRequest.requested_at.desc()).limit(50)).all()
    to_decide = requests_.pending_for(db, policy())
    names = {u.id: u.full_name for u in db.scalars(select(User))}
    return render_template("exports/requests.html", mine=mine, to_decide=to_decide, names=names)


@bp.post("/requests")
@login_required
def create() -> Any:
    # what the request covers (rows, columns, ids) is computed from the list, never taken
    # from the form
    entity = requests_.exportable(request.form.get("entity", "account"))
    query = ListQuery.from_args(entity, request.form)
    try:
        requests_.request_export(get_db(), policy(), entity, query,
                                 request.form.get("reason", ""), request.remote_addr)
    except ValidationFailed as exc:
        flash(getattr(exc, "message", "Say why you need this export."), "error")
        return redirect(url_for(".index"))
    get_db().commit()
    flash("Your request was sent to your manager. You will find it here once decided.", "success")
    return redirect(url_for(".index"))


@bp.post("/requests/<uuid:request_id>/<any(approve, deny):decision>")
@login_required
def decide(request_id: uuid.UUID, decision: str) -> Any:
    req = requests_.decide(get_db(), policy(), request_id, decision == "approve",
                           request.form.get("note", ""), request.remote_addr)
    get_db().commit()
    flash(f"Request {req.id} {req.status}.", "success")
    return redirect(url_for(".index"))


@bp.post("/requests/<uuid:request_id>/run")
@login_required
def run(request_id: uuid.UUID) -> Response:
    db = get_db()
    req = requests_.approved_request(db, policy(), request_id)
    result = export_records(db, policy(), Entity(req.entity), req.list_query, "csv",
                            request.remote_addr, approval=req, settings=appliance_settings())
    db.commit()
    return Response(result.content, content_type=result.mimetype, headers={
        "Content-Disposition": f'attachment; filename="{result.filename}"'})
