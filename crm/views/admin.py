"""Administration: people, roles, the rights matrix and four-eyes approvals,
and the restrictions security officers apply (freeze, notice, offboarding)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from appliance.kernel.db import get_db
from appliance.kernel.errors import BadRequest, CitadelError, Conflict, Forbidden, NotFound, ValidationFailed
from appliance.kernel.paging import count_of
from appliance.kernel.permissions import Cap
from appliance.kernel.principal import login_required
from audit.requests import record_event
from crm.access import FIELDS, MODELS, Action, Entity, Level, Policy, Scope
from crm.current import policy
from crm.identity import Role, Team, User, UserRole
from crm.restrictions import Restrictions
from crm.rights import RightsChange, RightsService, describe, role_rights

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="../templates")
PEOPLE_CAPS = (Cap.USERS_ADMIN, Cap.USERS_RESTRICT, Cap.ROLES_ADMIN)


def _require_any(*caps: Cap) -> None:
    if not any(policy().holds(c) for c in caps):
        raise Forbidden(action="administer people")


# -- people ----------------------------------------------------------------
@bp.get("/users")
@login_required
def users() -> str:
    _require_any(*PEOPLE_CAPS)
    db = get_db()
    people = db.scalars(select(User).order_by(User.offboarded_at.is_not(None), User.full_name)).all()
    teams = {t.id: t.name for t in db.scalars(select(Team))}
    return render_template("admin/users.html", people=people, teams=teams,
                           roles=db.scalars(select(Role).order_by(Role.name)).all(),
                           can_add=policy().holds(Cap.USERS_ADMIN))


@bp.post("/users")
@login_required
def add() -> Any:
    policy().require_cap(Cap.USERS_ADMIN)
    db = get_db()
    form = request.form
    try:
        # a new person is a way of giving rights: roles that reach client data wait for a
        # second administrator, as any change of roles does
        user, pending = RightsService(db, policy(), request.remote_addr).create_user(
            current_app.extensions["citadel.hasher"],
            username=form.get("username", "").strip(),
            full_name=form.get("full_name", "").strip(),
            password=form.get("password", ""), roles=form.getlist("roles"),
            team=form.get("team") or None, email=form.get("email", "").strip())
        record_event("user.create", entity="user", entity_id=user.username,
                     meta={"roles": user.role_names, "team": form.get("team") or None,
                           "pending_change": pending.id if pending else None})
        db.commit()
    except (Forbidden, NotFound):
        raise  # refusals are audited by the error handler
    except CitadelError as exc:
        db.rollback()
        flash(exc.message, "error")
        return redirect(url_for(".users"))
    flash(f"User {user.username} added." + (
        " Their roles that reach client data wait for a second administrator in Rights changes."
        if pending else ""), "success")
    return redirect(url_for(".user", user_id=user.id))


@bp.get("/users/<int:user_id>")
@login_required
def user(user_id: int) -> str:
    _require_any(*PEOPLE_CAPS)
    db = get_db()
    person = db.get(User, user_id) or abort(404)
    others = db.scalars(select(User).where(User.id != person.id, User.active.is_(True),
                                           User.offboarded_at.is_(None))
                        .order_by(User.full_name)).all()
    return render_template(
        "admin/user.html", person=person, reach=reach_of(db, person), others=others,
        teams=db.scalars(select(Team).order_by(Team.name)).all(),
        roles=db.scalars(select(Role).order_by(Role.name)).all(),
        may_restrict=policy().holds(Cap.USERS_RESTRICT) and person.id != policy().user.id,
        may_assign=policy().holds(Cap.ROLES_ADMIN) and person.id != policy().user.id)


def reach_of(db: Any, person: User) -> dict[str, Any]:
    """What this person can reach: record counts per entity and action, and each field's level."""
    seen = Policy(db, person)
    counts = {}
    for entity in MODELS:
        counts[entity.value] = {
            action.value: (db.scalar(count_of(seen.select(entity, action)))
                           if seen.may_do(entity, action) else 0)
            for action in (Action.READ, Action.EDIT, Action.EXPORT, Action.PRINT)}
    totals = {e.value: db.scalar(select(func.count()).select_from(m)) for e, m in MODELS.items()}
    fields = {e.value: [(f, seen.level(e, f).value) for f in names] for e, names in FIELDS.items()}
    return {"counts": counts, "totals": totals, "fields": fields,
            "caps": sorted(seen.grants.caps), "frozen": seen.frozen, "notice": seen.on_notice,
            "per_export": seen.grants.export_per_export, "per_day": seen.grants.export_per_day}


@bp.post("/users/<int:user_id>/roles")
@login_required
def assign(user_id: int) -> Any:
    return _act(lambda: RightsService(get_db(), policy(), request.remote_addr)
                .propose_user_roles(user_id, request.form.getlist("roles")),
                url_for(".user", user_id=user_id), _change_message)


@bp.post("/users/<int:user_id>/team")
@login_required
def move(user_id: int) -> Any:
    """Move a person to another team: a rights change, with four eyes when they reach clients."""
    raw = request.form.get("team_id", "")
    try:
        team_id = int(raw) if raw else None
    except ValueError:
        team_id = -1  # no team has it: refused as an unknown team
    return _act(lambda: RightsService(get_db(), policy(), request.remote_addr)
                .propose_team(user_id, team_id),
                url_for(".user", user_id=user_id), _change_message)


@bp.post("/users/<int:user_id>/<any(freeze, unfreeze, notice):what>")
@login_required
def restrict(user_id: int, what: str) -> Any:
    reason = request.form.get("reason", "").strip()
    done = {"freeze": "frozen: read-only, no export, no print, from now on",
            "unfreeze": "released", "notice": "in a notice period: tighter caps, closer watch"}

    def run() -> Any:
        return getattr(Restrictions(get_db(), policy(), request.remote_addr), what)(user_id, reason)

    return _act(run, url_for(".user", user_id=user_id),
                lambda person: f"{person.username} is {done[what]}.")


@bp.post("/users/<int:user_id>/offboard")
@login_required
def offboard(user_id: int) -> Any:
    try:
        successor = int(request.form.get("successor_id", "0"))
    except ValueError:
        successor = 0

    def run() -> Any:
        return Restrictions(get_db(), policy(), request.remote_addr).offboard(
            user_id, successor, request.form.get("reason", "").strip())

    return _act(run, url_for(".user", user_id=user_id),
                lambda moved: "Offboarded: sessions and tokens revoked; reassigned "
                              + ", ".join(f"{n} {k}s" for k, n in moved.items()) + ".")


# -- roles and the rights matrix ---------------------------------------------
@bp.get("/roles")
@login_required
def roles() -> str:
    policy().require_cap(Cap.ROLES_ADMIN)
    db = get_db()
    listed = db.scalars(select(Role).order_by(Role.name)).all()
    holders = dict(db.execute(select(UserRole.role_id, func.count())
                              .group_by(UserRole.role_id)).all())
    return render_template("admin/roles.html", roles=listed, holders=holders,
                           rights={r.id: role_rights(r) for r in listed})


@bp.route("/roles/<int:role_id>", methods=["GET", "POST"])
@login_required
def role(role_id: int) -> Any:
    policy().require_cap(Cap.ROLES_ADMIN)
    db = get_db()
    found = db.get(Role, role_id) or abort(404)
    if request.method == "POST":
        return _act(lambda: RightsService(db, policy(), request.remote_addr)
                    .propose_role(role_id, _submitted_rights()),
                    url_for(".role", role_id=role_id), _change_message)
    current = role_rights(found)
    scopes = {(e, a): s for e, a, s in current["grants"]}
    levels = {(e, f): lv for e, f, lv in current["fields"]}
    exact = {(e, f) for e, f in current["exact_match"]}
    return render_template("admin/role.html", role=found, scopes=scopes, levels=levels, exact=exact,
                           rights=current, entities=list(Entity), actions=list(Action),
                           scope_choices=list(Scope), level_choices=list(Level), fields=FIELDS,
                           caps=list(Cap), holds=found in policy().user.roles)


def _submitted_rights() -> dict[str, Any]:
    form = request.form
    grants = [[e.value, a.value, form.get(f"scope:{e.value}:{a.value}", "none")]
              for e in Entity for a in Action]
    fields = [[e.value, f, form.get(f"level:{e.value}:{f}", "edit")]
              for e, names in FIELDS.items() for f in names]
    exact = [[e.value, f] for e, names in FIELDS.items() for f in names
             if form.get(f"exact:{e.value}:{f}") == "1"]
    return {"grants": grants, "fields": fields, "exact_match": exact, "caps": form.getlist("caps"),
            "export_rows_per_export": form.get("export_rows_per_export", "0"),
            "export_rows_per_day": form.get("export_rows_per_day", "0"),
            "card_required": form.get("card_required") == "1"}


@bp.get("/changes")
@login_required
def changes() -> str:
    policy().require_cap(Cap.ROLES_ADMIN)
    db = get_db()
    rows = db.scalars(select(RightsChange).order_by(RightsChange.status != "pending",
                                                    RightsChange.requested_at.desc())
                      .limit(100)).all()
    names = {u.id: u.username for u in db.scalars(select(User))}
    roles_by_id = {r.id: r.name for r in db.scalars(select(Role))}
    return render_template("admin/changes.html", rows=rows, names=names, roles=roles_by_id,
                           titles={c.id: _title(c, names, roles_by_id) for c in rows},
                           parsed={c.id: (describe(json.loads(c.before)), describe(json.loads(c.after)))
                                   for c in rows})


@bp.post("/changes/<int:change_id>/<any(approve, reject):decision>")
@login_required
def decide(change_id: int, decision: str) -> Any:
    def run() -> Any:
        svc = RightsService(get_db(), policy(), request.remote_addr)
        if decision == "approve":
            return svc.approve(change_id)
        return svc.reject(change_id, request.form.get("reason", ""))

    return _act(run, url_for(".changes"), lambda c: f"Change {c.id} {c.status}.")


# -- helpers ---------------------------------------------------------------
def _title(change: RightsChange, names: dict[int, str], roles: dict[int, str]) -> str:
    """What a rights change is about, in a few words."""
    if change.kind == "role":
        return f"role {roles.get(change.role_id, '?')}"
    if change.kind == "user_team":
        return f"team of {names.get(change.user_id, '?')}"
    if change.kind == "share":
        return "a share with a team"
    return f"roles of {names.get(change.user_id, '?')}"


def _change_message(change: RightsChange) -> str:
    if change.status == "applied":
        return "Rights changed."
    return "This change needs a second administrator: it is waiting in Rights changes."


def _act(run: Any, back: str, message: Any) -> Any:
    """Run a state change and go back to the page with its outcome.

    A refusal (403, 404) propagates to the error handler, which audits it; a
    conflict or a validation problem is shown on the page.
    """
    db = get_db()
    try:
        result = run()
        db.commit()
    except (Conflict, ValidationFailed, BadRequest) as exc:
        db.rollback()
        flash(exc.message, "error")
        return redirect(back)
    flash(message(result), "success")
    return redirect(back)
