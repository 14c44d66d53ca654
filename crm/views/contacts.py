"""Contacts: the people at clients, reached through their account."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from appliance.kernel.db import get_db
from appliance.kernel.errors import ValidationFailed
from appliance.kernel.principal import login_required
from crm.access import Action, Entity
from crm.current import policy
from crm.queries import sorts_for
from crm.views.common import delete_from_account, form_data, list_page, records, rejected

bp = Blueprint("contacts", __name__, url_prefix="/contacts", template_folder="../templates")
E = Entity.CONTACT


@bp.get("")
@login_required
def index() -> str:
    query, page = list_page(E)
    rows = [(c, policy().present(E, c)) for c in page.items]
    return render_template("contacts/list.html", page=page, rows=rows, query=query,
                           sorts=sorts_for(policy(), E))


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create() -> Any:
    account = policy().get(Entity.ACCOUNT, request.args.get("account_id", ""))
    policy().require(E, Action.CREATE)
    if request.method == "POST":
        try:
            records().create(E, dict(form_data(), account_id=str(account.id)))
        except ValidationFailed as exc:
            return _form(account, None, request.form, rejected(E, exc)), 422
        get_db().commit()
        flash("Contact added.", "success")
        return redirect(url_for("accounts.show", account_id=account.id))
    return _form(account, None, {}, {})


@bp.route("/<uuid:contact_id>/edit", methods=["GET", "POST"])
@login_required
def edit(contact_id: uuid.UUID) -> Any:
    contact = policy().get(E, contact_id, Action.EDIT)
    if request.method == "POST":
        try:
            records().update(E, contact.id, form_data())
        except ValidationFailed as exc:
            return _form(contact.account, contact, request.form, rejected(E, exc)), 422
        get_db().commit()
        flash("Contact saved.", "success")
        return redirect(url_for("accounts.show", account_id=contact.account_id))
    return _form(contact.account, contact, policy().present(E, contact), {})


@bp.post("/<uuid:contact_id>/delete")
@login_required
def delete(contact_id: uuid.UUID) -> Any:
    return delete_from_account(E, contact_id, "Contact")


def _form(account: Any, contact: Any, values: Any, errors: dict[str, str]) -> str:
    return render_template("contacts/form.html", account=account, contact=contact, values=values,
                           errors=errors, editable=policy().editable_fields(E),
                           visible=policy().visible_fields(E))
