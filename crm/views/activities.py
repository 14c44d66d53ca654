"""Activities: calls, meetings, tasks and notes; a task list with what is overdue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from appliance.kernel.db import get_db
from appliance.kernel.errors import ValidationFailed
from appliance.kernel.principal import login_required
from crm.access import FIELDS, Action, Entity
from crm.current import policy
from crm.models import ACTIVITY_KINDS, Activity
from crm.queries import sorts_for
from crm.views.common import (
    delete_from_account,
    displayed,
    form_data,
    list_page,
    records,
    rejected,
)

bp = Blueprint("activities", __name__, url_prefix="/activities", template_folder="../templates")
E = Entity.ACTIVITY


@bp.get("")
@login_required
def index() -> str:
    def narrow(stmt: Any) -> Any:
        if request.args.get("open"):
            stmt = stmt.where(Activity.done_at.is_(None))
        if request.args.get("mine"):
            stmt = stmt.where(Activity.owner_id == policy().user.id)
        return stmt

    query, page = list_page(E, narrow)
    rows = [(a, displayed(E, a, FIELDS[E])) for a in page.items]
    return render_template("activities/list.html", page=page, rows=rows, query=query,
                           sorts=sorts_for(policy(), E),
                           kinds=ACTIVITY_KINDS, now=datetime.now(UTC))


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create() -> Any:
    account = policy().get(Entity.ACCOUNT, request.args.get("account_id", ""))
    policy().require(E, Action.CREATE)
    if request.method == "POST":
        try:
            records().create(E, dict(form_data(checkboxes=["done"]), account_id=str(account.id)))
        except ValidationFailed as exc:
            return _form(account, request.form, rejected(E, exc)), 422
        get_db().commit()
        flash("Activity logged.", "success")
        return redirect(url_for("accounts.show", account_id=account.id))
    return _form(account, {"kind": request.args.get("kind", "call")}, {})


@bp.post("/<uuid:activity_id>/done")
@login_required
def toggle_done(activity_id: uuid.UUID) -> Any:
    activity = policy().get(E, activity_id, Action.EDIT)
    records().update(E, activity.id, {"done": activity.done_at is None})
    get_db().commit()
    target = request.form.get("next", "")
    if target == "account":
        return redirect(url_for("accounts.show", account_id=activity.account_id))
    return redirect(url_for(".index", open=1, mine=1))


@bp.post("/<uuid:activity_id>/delete")
@login_required
def delete(activity_id: uuid.UUID) -> Any:
    return delete_from_account(E, activity_id, "Activity")


def _form(account: Any, values: Any, errors: dict[str, str]) -> str:
    return render_template("activities/form.html", account=account, values=values, errors=errors,
                           kinds=ACTIVITY_KINDS, editable=policy().editable_fields(E))
