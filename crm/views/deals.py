"""Deals: the list, the pipeline board by stage, and the forms."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from sqlalchemy import func, literal, select

from appliance.kernel.db import get_db
from appliance.kernel.errors import ValidationFailed
from appliance.kernel.principal import login_required
from crm.access import FIELDS, Action, Entity
from crm.current import policy
from crm.models import CURRENCIES, DEAL_STAGES, OPEN_STAGES, Deal
from crm.queries import ListQuery, sorts_for
from crm.records import users_in_reach
from crm.views.common import (
    audit_list,
    delete_from_account,
    displayed,
    form_data,
    list_page,
    records,
    rejected,
)

bp = Blueprint("deals", __name__, url_prefix="/deals", template_folder="../templates")
E = Entity.DEAL
BOARD_CARDS = 25


@bp.get("")
@login_required
def index() -> str:
    query, page = list_page(E)
    rows = [(d, displayed(E, d, FIELDS[E])) for d in page.items]
    return render_template("deals/list.html", page=page, rows=rows, query=query,
                           sorts=sorts_for(policy(), E),
                           stages=DEAL_STAGES)


@bp.get("/board")
@login_required
def board() -> str:
    """The open pipeline: per stage, the count, the total and the biggest deals."""
    pol = policy()
    pol.require(E, Action.READ)
    db = get_db()
    visible = pol.where(E)
    # amounts order and sum the board only for those who may read them: a sum or an order
    # tells about the amounts behind it
    amount_visible = pol.readable(E, "amount")
    total = func.coalesce(func.sum(Deal.amount), 0) if amount_visible else literal(None)
    biggest = (Deal.amount.desc(), Deal.id) if amount_visible else (Deal.updated_at.desc(), Deal.id)
    totals = {stage: (count, amount) for stage, count, amount in db.execute(
        select(Deal.stage, func.count(), total)
        .where(visible, Deal.stage.in_(OPEN_STAGES)).group_by(Deal.stage))}
    columns = []
    shown: list[Any] = []
    for stage in OPEN_STAGES:
        deals = db.scalars(pol.select(E).where(Deal.stage == stage)
                           .order_by(*biggest).limit(BOARD_CARDS)).unique().all()
        shown.extend(deals)
        count, amount = totals.get(stage, (0, 0))
        columns.append({"stage": stage, "count": count, "amount": amount,
                        "deals": [(d, displayed(E, d, FIELDS[E])) for d in deals]})
    audit_list(E, ListQuery(sort="board"), shown, sum(c["count"] for c in columns))
    db.commit()
    return render_template("deals/board.html", columns=columns,
                           amount_visible=amount_visible)


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create() -> Any:
    account = policy().get(Entity.ACCOUNT, request.args.get("account_id", ""))
    policy().require(E, Action.CREATE)
    if request.method == "POST":
        try:
            deal = records().create(E, dict(form_data(), account_id=str(account.id)))
        except ValidationFailed as exc:
            return _form(account, None, request.form, rejected(E, exc)), 422
        get_db().commit()
        flash(f"Deal {deal.name} created.", "success")
        return redirect(url_for("accounts.show", account_id=account.id))
    return _form(account, None, {"stage": "lead", "currency": "EUR", "probability": 10}, {})


@bp.route("/<uuid:deal_id>/edit", methods=["GET", "POST"])
@login_required
def edit(deal_id: uuid.UUID) -> Any:
    deal = policy().get(E, deal_id, Action.EDIT)
    if request.method == "POST":
        try:
            records().update(E, deal.id, form_data())
        except ValidationFailed as exc:
            return _form(deal.account, deal, request.form, rejected(E, exc)), 422
        get_db().commit()
        flash("Deal saved.", "success")
        return redirect(request.form.get("next") == "board" and url_for(".board")
                        or url_for("accounts.show", account_id=deal.account_id))
    return _form(deal.account, deal, policy().present(E, deal), {})


@bp.post("/<uuid:deal_id>/stage")
@login_required
def move(deal_id: uuid.UUID) -> Any:
    """Move a deal to another stage from the board."""
    try:
        records().update(E, deal_id, {"stage": request.form.get("stage", "")})
    except ValidationFailed as exc:
        get_db().rollback()
        flash(f"Could not move the deal: {exc.message}", "error")
        return redirect(url_for(".board"))
    get_db().commit()
    return redirect(url_for(".board"))


@bp.post("/<uuid:deal_id>/delete")
@login_required
def delete(deal_id: uuid.UUID) -> Any:
    return delete_from_account(E, deal_id, "Deal")


def _form(account: Any, deal: Any, values: Any, errors: dict[str, str]) -> str:
    pol = policy()
    return render_template(
        "deals/form.html", account=account, deal=deal, values=values, errors=errors,
        stages=DEAL_STAGES, currencies=CURRENCIES, editable=pol.editable_fields(E),
        visible=pol.visible_fields(E),
        owners=users_in_reach(get_db(), pol, E, Action.REASSIGN if deal else Action.CREATE))
