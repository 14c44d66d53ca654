"""The start page: what needs doing today."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, redirect, render_template, url_for
from sqlalchemy import func, literal, select

from appliance.kernel.db import get_db
from appliance.kernel.principal import login_required
from audit.requests import record_event
from crm.access import Action, Entity
from crm.current import policy
from crm.hooks import first_tool
from crm.models import OPEN_STAGES, Account, Activity, Deal

bp = Blueprint("home", __name__, template_folder="../templates")
#: What "recently updated accounts" shows of each, as the user may see it.
RECENT_FIELDS = ("name", "status", "city")


@bp.get("/")
@login_required
def index() -> Any:
    pol = policy()
    if not pol.may_do(Entity.ACCOUNT, Action.READ):  # officers, IT, auditors: their first tool
        tool = first_tool()
        return redirect(tool) if tool else render_template("home/staff_only.html")
    db = get_db()
    me = pol.user.id
    now = datetime.now(UTC)
    tasks = db.scalars(pol.select(Entity.ACTIVITY).where(
        Activity.owner_id == me, Activity.done_at.is_(None), Activity.due_at.is_not(None),
        Activity.due_at < now + timedelta(days=7)).order_by(Activity.due_at).limit(12)
    ).unique().all() if pol.may_do(Entity.ACTIVITY, Action.READ) else []
    # a sum of amounts tells about each of them: only for those who may read amounts
    amount_visible = pol.readable(Entity.DEAL, "amount")
    total = func.coalesce(func.sum(Deal.amount), 0) if amount_visible else literal(0)
    pipeline = db.execute(select(Deal.stage, func.count(), total)
                          .where(pol.where(Entity.DEAL), Deal.owner_id == me,
                                 Deal.stage.in_(OPEN_STAGES)).group_by(Deal.stage)).all() \
        if pol.may_do(Entity.DEAL, Action.READ) else []
    recent = db.scalars(pol.select(Entity.ACCOUNT).where(Account.owner_id == me)
                        .order_by(Account.updated_at.desc()).limit(8)).unique().all()
    record_event("record.search", entity="account", count=len(recent) + len(tasks),
                 meta={"context": "home", "ids": [str(a.id) for a in recent], "outside_book": 0})
    db.commit()
    by_stage = {stage: (count, amount) for stage, count, amount in pipeline}
    recent_shown = [(a, pol.present(Entity.ACCOUNT, a, only=RECENT_FIELDS)) for a in recent]
    tasks_shown = [(t, pol.present(Entity.ACTIVITY, t, only=("kind", "subject"))) for t in tasks]
    return render_template("home/index.html", tasks=tasks_shown, now=now, recent=recent_shown,
                           pipeline=[(s, *by_stage.get(s, (0, 0))) for s in OPEN_STAGES],
                           amount_visible=amount_visible)


@bp.get("/favicon.ico")
def favicon() -> Any:
    return redirect(url_for("static", filename="favicon.svg"))
