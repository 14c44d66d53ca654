"""Report pages, with their charts."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from appliance.kernel import charts
from appliance.kernel.db import get_db
from appliance.kernel.principal import login_required
from audit.requests import record_event
from crm import reports
from crm.access import Action, Entity
from crm.current import policy

bp = Blueprint("reports", __name__, url_prefix="/reports", template_folder="../templates")


@bp.get("")
@login_required
def index() -> str:
    policy().require(Entity.REPORT, Action.READ)
    return render_template("reports/index.html", reports=reports.REPORTS)


@bp.get("/<key>")
@login_required
def show(key: str) -> str:
    if key not in reports.REPORTS:
        abort(404)
    report = reports.run(get_db(), policy(), key)
    record_event("report.run", entity="deal" if key != "overdue" else "activity",
                 count=report.records, meta={"report": key})
    get_db().commit()
    return render_template(f"reports/{key}.html", report=report, chart=_chart(report))


def _chart(report: reports.Report) -> str:
    if report.key == "funnel":
        # without the right to read amounts, the funnel's shape is its counts
        return charts.hbars([(r["stage"], r["count"] if r["amount"] is None else r["amount"])
                             for r in report.rows], title=report.title)
    if report.key == "revenue":
        top = report.rows[:6]
        series = [(r["owner"], r["months"]) for r in top]
        if len(report.rows) > 6:
            rest = [sum((r["months"][i] for r in report.rows[6:]), 0)
                    for i in range(len(report.extra["months"]))]
            series.append(("Others", rest))
        return charts.columns(report.extra["months"], series, title=report.title)
    return charts.hbars([(r["owner"], r["count"]) for r in report.rows[:15]], title=report.title)
