"""Accounts: the client list, an account's page, and its forms."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from appliance.kernel.db import get_db
from appliance.kernel.errors import ValidationFailed
from appliance.kernel.paging import page_args, paginate
from appliance.kernel.principal import login_required
from appliance.kernel.runtime import appliance_settings
from audit.query import field_history
from audit.requests import record_event
from crm import attachments, sharing
from crm.access import FIELDS, Action, Entity, Level, Policy, mask
from crm.current import policy
from crm.exports import ExportCapExceeded, export_records, print_records
from crm.identity import Team, User
from crm.models import ACCOUNT_STATUSES, Account, AccountShare, Activity, Contact, Deal
from crm.queries import ListQuery, build, filters_for, sorts_for
from crm.records import read_history_value, users_in_reach
from crm.views.common import audit_view, displayed, form_data, list_page, records, rejected

bp = Blueprint("accounts", __name__, url_prefix="/accounts", template_folder="../templates")
E = Entity.ACCOUNT
#: The fields the list shows beside the name (each as the viewer may see it).
LIST_FIELDS = ("name", "status", "phone", "email", "city", "country", "owner_id")
#: The account page's header line and the autocomplete show these.
HEADER_FIELDS = ("name", "status", "industry", "city", "country", "owner_id", "team_id")
SUGGEST_FIELDS = ("name", "city")


@bp.get("")
@login_required
def index() -> str:
    query, page = list_page(E)
    rows = [(a, displayed(E, a, LIST_FIELDS)) for a in page.items]
    return render_template("accounts/list.html", page=page, query=query, rows=rows,
                           sorts=sorts_for(policy(), E), filters=filters_for(policy(), E),
                           statuses=ACCOUNT_STATUSES, teams=_teams(),
                           owners=users_in_reach(get_db(), policy(), E, Action.READ))


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create() -> Any:
    policy().require(E, Action.CREATE)
    if request.method == "POST":
        try:
            account = records().create(E, form_data())
        except ValidationFailed as exc:
            return _form(None, request.form, rejected(E, exc)), 422
        get_db().commit()
        flash(f"Account {account.name} created.", "success")
        return redirect(url_for(".show", account_id=account.id))
    return _form(None, {}, {})


@bp.get("/<uuid:account_id>")
@login_required
def show(account_id: uuid.UUID) -> str:
    pol = policy()
    account = pol.get(E, account_id)
    db = get_db()
    contacts = db.scalars(pol.select(Entity.CONTACT).where(Contact.account_id == account.id)
                          .order_by(Contact.last_name)).all() if pol.may_do(Entity.CONTACT, "read") else []
    deals = db.scalars(pol.select(Entity.DEAL).where(Deal.account_id == account.id)
                       .order_by(Deal.updated_at.desc())).unique().all() \
        if pol.may_do(Entity.DEAL, "read") else []
    timeline = db.scalars(pol.select(Entity.ACTIVITY).where(Activity.account_id == account.id)
                          .order_by(Activity.created_at.desc()).limit(100)).unique().all() \
        if pol.may_do(Entity.ACTIVITY, "read") else []
    audit_view(E, account, related=len(contacts) + len(deals) + len(timeline))
    db.commit()
    can_share = sharing.may_share(pol, account)
    return render_template(
        "accounts/detail.html", account=account, shown=pol.present(E, account),
        header=displayed(E, account, HEADER_FIELDS),
        contacts=[(c, pol.present(Entity.CONTACT, c)) for c in contacts],
        deals=[(d, displayed(Entity.DEAL, d, FIELDS[Entity.DEAL])) for d in deals],
        timeline=[(a, displayed(Entity.ACTIVITY, a, FIELDS[Entity.ACTIVITY])) for a in timeline],
        can_edit=_may(account, Action.EDIT), can_delete=_may(account, Action.DELETE),
        can_print=_may(account, Action.PRINT), history=_history(account),
        can_share=can_share, shares=_shares(account) if can_share else [],
        files=attachments.visible(db, pol, account),
        can_attach=pol.scope_reaches(Entity.ATTACHMENT, Action.CREATE, owner_id=account.owner_id,
                                     team_id=account.team_id),
    )


@bp.route("/<uuid:account_id>/edit", methods=["GET", "POST"])
@login_required
def edit(account_id: uuid.UUID) -> Any:
    account = policy().get(E, account_id, Action.EDIT)
    if request.method == "POST":
        try:
            records().update(E, account.id, form_data())
        except ValidationFailed as exc:
            return _form(account, request.form, rejected(E, exc)), 422
        get_db().commit()
        flash("Changes saved.", "success")
        return redirect(url_for(".show", account_id=account.id))
    return _form(account, policy().present(E, account), {})


@bp.post("/<uuid:account_id>/delete")
@login_required
def delete(account_id: uuid.UUID) -> Any:
    account = policy().get(E, account_id, Action.DELETE)
    name = account.name
    records().delete(E, account.id)
    get_db().commit()
    flash(f"Account {name} deleted.", "success")
    return redirect(url_for(".index"))


@bp.get("/<uuid:account_id>/shares")
@login_required
def shares(account_id: uuid.UUID) -> str:
    """The share form, on its own page: whom one may share with is a list of colleagues
    each checked against their rights, too dear to build on every view of the account."""
    account = sharing.require_sharer(policy(), account_id)
    rules = _share_rules()
    return render_template("accounts/share.html", account=account, shares=_shares(account),
                           grantees=_grantees(rules), rules=rules,
                           latest=f"{rules.latest(datetime.now(UTC)):%Y-%m-%d}")


@bp.post("/<uuid:account_id>/shares")
@login_required
def add_share(account_id: uuid.UUID) -> Any:
    form = request.form
    grantee = form.get("grantee", "")
    kind, _, raw_id = grantee.partition(":")
    try:
        expires = form.get("expires_on") or None
        expires_at = datetime.combine(date.fromisoformat(expires), time(23, 59), UTC) \
            if expires else None
        made = sharing.share(get_db(), policy(), account_id,
                             user_id=int(raw_id) if kind == "user" else None,
                             team_id=int(raw_id) if kind == "team" else None,
                             level=form.get("level", "read"), expires_at=expires_at,
                             ip=request.remote_addr, rules=_share_rules())
    except (ValueError, ValidationFailed) as exc:
        get_db().rollback()
        flash(getattr(exc, "message", "Choose whom to share with and a valid date."), "error")
        return redirect(url_for(".shares", account_id=account_id))
    get_db().commit()
    flash("Account shared." if isinstance(made, AccountShare) else
          "A share with a team waits for a second administrator's approval.", "success")
    return redirect(url_for(".show", account_id=account_id))


@bp.post("/<uuid:account_id>/shares/<int:share_id>/delete")
@login_required
def remove_share(account_id: uuid.UUID, share_id: int) -> Any:
    sharing.unshare(get_db(), policy(), share_id, request.remote_addr, account_id=account_id)
    get_db().commit()
    flash("Share removed.", "success")
    return redirect(url_for(".show", account_id=account_id))


@bp.post("/export")
@login_required
def export() -> Any:
    query = ListQuery.from_args(E, request.form)
    fmt = "xlsx" if request.form.get("format") == "xlsx" else "csv"
    try:
        result = export_records(get_db(), policy(), E, query, fmt, request.remote_addr,
                                settings=appliance_settings())
    except ExportCapExceeded as exc:
        get_db().rollback()
        record_event("export.refused", entity=E.value, count=exc.facts.get("rows", 0),
                     meta={"reason": "cap", "limit": exc.facts.get("limit")})
        get_db().commit()
        return render_template("exports/over_cap.html", message=exc.message, entity=E.value,
                               rows=exc.facts.get("rows", 0), query=query), 403
    get_db().commit()
    return Response(result.content, content_type=result.mimetype, headers={
        "Content-Disposition": f'attachment; filename="{result.filename}"'})


@bp.post("/print")
@login_required
def print_list() -> str:
    query = ListQuery.from_args(E, request.form)
    page, per_page = page_args()
    items = paginate(build(policy(), E, query, Action.PRINT), page, per_page).items
    rows, footer = print_records(get_db(), policy(), E, items, request.remote_addr, "account list",
                                 settings=appliance_settings())
    get_db().commit()
    return render_template("accounts/print_list.html", rows=rows, footer=footer,
                           fields=policy().visible_fields(E))


@bp.get("/<uuid:account_id>/print")
@login_required
def print_one(account_id: uuid.UUID) -> str:
    account = policy().get(E, account_id, Action.PRINT)
    rows, footer = print_records(get_db(), policy(), E, [account], request.remote_addr, "account page",
                                 settings=appliance_settings())
    contacts = get_db().scalars(policy().select(Entity.CONTACT)
                                .where(Contact.account_id == account.id)).all()
    get_db().commit()
    shown = next(r for r in rows if r["id"] == str(account.id))
    return render_template("accounts/print_one.html", shown=shown, account=account, footer=footer,
                           contacts=[policy().present(Entity.CONTACT, c) for c in contacts])


@bp.get("/suggest")
@login_required
def suggest() -> Any:
    """Autocomplete: a few accounts by name, within the user's reach."""
    query = ListQuery(q=request.args.get("q", "")[:100], sort="name")
    if len(query.q) < 2:
        return {"items": []}
    items = get_db().scalars(build(policy(), E, query).limit(10)).unique().all()
    record_event("record.search", entity=E.value, count=len(items),
                 meta={"ids": [str(a.id) for a in items], "context": "autocomplete",
                       "q_len": len(query.q)})
    get_db().commit()
    pol = policy()
    return {"items": [{"id": str(a.id), **pol.present(E, a, only=SUGGEST_FIELDS)} for a in items]}


def _may(account: Any, action: Action) -> bool:
    return policy().may_act_on(E, account, action)


def _history(account: Any) -> list[dict[str, Any]]:
    """The account's field changes, newest first, as this user may see each field."""
    pol = policy()
    shown = []
    for change in reversed(field_history(get_db(), E.value, account.id)):
        level = pol.level(E, change["field"]) if change["field"] in FIELDS[E] else Level.READ
        if level is Level.HIDDEN:
            continue
        old, new = (read_history_value(Account.__tablename__, account.id, change["field"], v)
                    for v in (change["old"], change["new"]))
        if level is Level.MASKED:
            old, new = mask(change["field"], old), mask(change["field"], new)
        shown.append({**change, "old": old, "new": new})
        if len(shown) == 50:
            break
    return shown


def _shares(account: Any) -> list[tuple[Any, str]]:
    """The account's live shares, each with whom it is shared with."""
    db = get_db()
    found = sharing.shares_of(db, account)
    if not found:
        return []
    users = {u.id: u.full_name for u in db.scalars(
        select(User).where(User.id.in_({sh.user_id for sh in found if sh.user_id})))}
    teams = {t.id: t.name for t in db.scalars(
        select(Team).where(Team.id.in_({sh.team_id for sh in found if sh.team_id})))}
    return [(sh, users.get(sh.user_id, "") if sh.user_id else f"Team {teams.get(sh.team_id)}")
            for sh in found]


def _share_rules() -> sharing.ShareRules:
    return sharing.ShareRules.from_settings(appliance_settings())


def _grantees(rules: sharing.ShareRules) -> list[tuple[str, str]]:
    """Whom the user may share with: colleagues who can read accounts at all, and the teams
    the sharing rules allow."""
    pol, db = policy(), get_db()
    people = db.scalars(select(User).where(User.active.is_(True), User.offboarded_at.is_(None),
                                           User.id != pol.user.id).order_by(User.full_name))
    return [(f"user:{u.id}", u.full_name) for u in people if Policy(db, u).may_do(E, Action.READ)] \
        + [(f"team:{t.id}", f"Team {t.name}") for t in sharing.share_teams(db, pol, rules)]


def _teams() -> list[Team]:
    return list(get_db().scalars(select(Team).order_by(Team.name)))


def _form(account: Any, values: Any, errors: dict[str, str]) -> str:
    pol = policy()
    return render_template(
        "accounts/form.html", account=account, values=values, errors=errors,
        statuses=ACCOUNT_STATUSES, editable=pol.editable_fields(E),
        visible=pol.visible_fields(E),
        owners=users_in_reach(get_db(), pol, E, Action.REASSIGN if account else Action.CREATE),
    )
