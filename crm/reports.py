"""Reports: the sales funnel, revenue by owner and month, overdue tasks.

Every figure is computed only over records the user may read: the policy's
filter is part of each aggregate query, so counts and sums never include
what the person could not open. A report groups by and sums only fields the
person may read in clear: a sum of hidden amounts, or counts per hidden stage,
would tell what the deal pages hide. A report whose grouping the person may
not read is refused; a measure they may not read is left out (``None``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.orm import Session

from appliance.kernel.db import is_postgres
from appliance.kernel.errors import Forbidden
from crm.access import Action, Entity, Policy
from crm.identity import User
from crm.models import DEAL_STAGES, Activity, Deal

REPORTS = {
    "funnel": "Sales funnel",
    "revenue": "Revenue by owner and month",
    "overdue": "Overdue tasks",
}


@dataclass
class Report:
    key: str
    title: str
    rows: list[dict[str, Any]]
    records: int
    extra: dict[str, Any]


def run(db: Session, policy: Policy, key: str, *, months: int = 12) -> Report:
    policy.require(Entity.REPORT, Action.READ)
    builders = {"funnel": funnel, "revenue": revenue, "overdue": overdue}
    return builders[key](db, policy, months=months)


def require_readable(policy: Policy, entity: Entity, names: tuple[str, ...], report: str) -> None:
    """Refuse a report that groups by (or is about) fields the user may not read."""
    unread = [n for n in names if not policy.readable(entity, n)]
    if unread:
        raise Forbidden(action=f"run the {report} report: it is built on the {entity.value} "
                               f"field(s) {', '.join(unread)}, which your role does not show")


def funnel(db: Session, policy: Policy, **_: Any) -> Report:
    """Deals per stage: how many, how much, weighted by probability."""
    require_readable(policy, Entity.DEAL, ("stage",), "funnel")
    visible = policy.where(Entity.DEAL, Action.READ)
    sums = policy.readable(Entity.DEAL, "amount")
    weighs = sums and policy.readable(Entity.DEAL, "probability")
    amount = func.coalesce(func.sum(Deal.amount), 0) if sums else literal(None)
    weighted = func.coalesce(func.sum(Deal.amount * Deal.probability / 100.0), 0) \
        if weighs else literal(None)
    result = {stage: (count, total, weight) for stage, count, total, weight in db.execute(
        select(Deal.stage, func.count(), amount, weighted).where(visible).group_by(Deal.stage))}
    rows = [{"stage": s, "count": result.get(s, (0, 0, 0))[0],
             "amount": Decimal(result.get(s, (0, 0, 0))[1]) if sums else None,
             "weighted": Decimal(result.get(s, (0, 0, 0))[2]).quantize(Decimal("1"))
             if weighs else None}
            for s in DEAL_STAGES]
    won, lost = result.get("won", (0,))[0], result.get("lost", (0,))[0]
    win_rate = won / (won + lost) if won + lost else None
    total = sum(r["count"] for r in rows)
    return Report("funnel", REPORTS["funnel"], rows, total, {"win_rate": win_rate})


def revenue(db: Session, policy: Policy, *, months: int = 12) -> Report:
    """Won deals' amounts per owner and month, over the last ``months`` months."""
    require_readable(policy, Entity.DEAL, ("amount", "stage", "owner_id"), "revenue")
    now = datetime.now(UTC)
    first = now.year * 12 + now.month - 1 - (months - 1)
    since = datetime(first // 12, first % 12 + 1, 1, tzinfo=UTC)
    month = _month(db, Deal.closed_at)
    visible = policy.where(Entity.DEAL, Action.READ)
    query = (select(Deal.owner_id, month.label("month"), func.count(), func.sum(Deal.amount))
             .where(visible, Deal.stage == "won", Deal.closed_at >= since)
             .group_by(Deal.owner_id, month))
    per_owner: dict[int, dict[str, Decimal]] = defaultdict(dict)
    records = 0
    for owner_id, key, count, amount in db.execute(query):
        per_owner[owner_id][key] = Decimal(amount or 0)
        records += count
    names = {u.id: u.full_name for u in db.scalars(select(User).where(User.id.in_(per_owner)))}
    labels = _month_labels(since, months)
    rows = sorted(({"owner": names.get(oid, "?"), "months": [by.get(m, Decimal(0)) for m in labels],
                    "total": sum(by.values(), Decimal(0))} for oid, by in per_owner.items()),
                  key=lambda r: r["total"], reverse=True)
    totals = [sum((r["months"][i] for r in rows), Decimal(0)) for i in range(len(labels))]
    return Report("revenue", REPORTS["revenue"], rows, records,
                  {"months": labels, "totals": totals})


def overdue(db: Session, policy: Policy, **_: Any) -> Report:
    """Open tasks past their due date, per owner, oldest first."""
    require_readable(policy, Entity.ACTIVITY, ("kind", "due_at", "done_at", "owner_id"), "overdue")
    now = datetime.now(UTC)
    visible = policy.where(Entity.ACTIVITY, Action.READ)
    late = (Activity.kind == "task", Activity.done_at.is_(None), Activity.due_at < now)
    per_owner = db.execute(select(Activity.owner_id, func.count()).where(visible, *late)
                           .group_by(Activity.owner_id)).all()
    names = {u.id: u.full_name for u in db.scalars(
        select(User).where(User.id.in_([o for o, _ in per_owner])))}
    rows = sorted(({"owner": names.get(o, "?"), "count": c} for o, c in per_owner),
                  key=lambda r: r["count"], reverse=True)
    oldest = db.scalars(select(Activity).where(visible, *late).order_by(Activity.due_at)
                        .limit(50)).unique().all()
    return Report("overdue", REPORTS["overdue"], rows, sum(r["count"] for r in rows),
                  {"oldest": [(a, policy.present(Entity.ACTIVITY, a, only=("subject",)))
                              for a in oldest], "now": now})


def _month(db: Session, column: Any) -> ColumnElement[str]:
    if is_postgres(db):
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


def _month_labels(since: datetime, months: int) -> list[str]:
    labels, year, month = [], since.year, since.month
    for _ in range(months):
        labels.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return labels
