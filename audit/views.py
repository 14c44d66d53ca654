"""The officer's and auditor's view of the audit trail: search, per-person timelines,
one event with its proof, and exports for a SIEM or a lawyer.

Reading the audit trail is itself recorded. Field values of client records are
not shown here (only which fields changed): people who may see the record see
its history on the record's own page.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request, stream_with_context

from appliance.kernel import charts
from appliance.kernel.db import get_db
from appliance.kernel.errors import CitadelError
from appliance.kernel.http import MAX_SEQ
from appliance.kernel.paging import page_args
from appliance.kernel.permissions import Cap
from appliance.kernel.principal import login_required, require
from audit import evidence
from audit.api import _shown, criteria_from
from audit.query import MAX_PER_PAGE, get_event, search, user_timeline
from audit.requests import record_event
from audit.store import latest_checkpoint

bp = Blueprint("audit", __name__, url_prefix="/audit", template_folder="templates")
EXPORT_LIMIT = 200_000


def _require() -> None:
    require(Cap.AUDIT_READ)


@bp.get("")
@login_required
def index() -> str:
    _require()
    criteria = criteria_from(request.args)
    page_no, per_page = page_args(100)
    page = search(get_db(), criteria, page=page_no, per_page=min(per_page, MAX_PER_PAGE))
    record_event("audit.search", meta={"criteria": _shown(criteria), "results": page.total})
    checkpoint = latest_checkpoint(get_db())
    get_db().commit()
    return render_template("audit/index.html", page=page, args=request.args,
                           checkpoint=checkpoint, pages=max(1, -(-page.total // page.per_page)))


@bp.get("/users/<username>")
@login_required
def person(username: str) -> str:
    _require()
    since = datetime.now(UTC) - timedelta(days=30)
    days = user_timeline(get_db(), username, since=since)
    labels = [(since + timedelta(days=i + 1)).date().isoformat() for i in range(30)]
    per_action: dict[str, dict[str, int]] = defaultdict(dict)
    for row in days:
        per_action[row["action"]][row["day"]] = row["count"]
    busiest = sorted(per_action, key=lambda a: -sum(per_action[a].values()))[:6]
    chart = charts.columns(labels, [(a, [per_action[a].get(d, 0) for d in labels]) for a in busiest],
                           title=f"{username}: events per day") if busiest else ""
    recent = search(get_db(), criteria_from({"user": username}), per_page=50)
    record_event("audit.search", meta={"criteria": {"user": username}, "context": "timeline"})
    get_db().commit()
    return render_template("audit/person.html", username=username, chart=chart, recent=recent,
                           totals={a: sum(v.values()) for a, v in per_action.items()})


@bp.get(f"/events/<int(largest={MAX_SEQ}):seq>")
@login_required
def event(seq: int) -> str:
    _require()
    found = get_event(get_db(), seq) or abort(404)
    settings = current_app.extensions["citadel.appliance"].settings
    try:
        proof = evidence.prove(get_db(), settings, seq)
    except CitadelError as exc:
        proof = {"error": exc.message}
    record_event("audit.view", meta={"seq": seq})
    get_db().commit()
    return render_template("audit/event.html", event=found, proof=proof, meta=_without_values(found))


@bp.get("/export.jsonl")
@login_required
def export() -> Response:
    """The matching events as JSON lines (DESIGN.md's event shape plus seq), oldest first."""
    _require()
    criteria = criteria_from(request.args)
    first = search(get_db(), criteria, per_page=1)
    if first.total > EXPORT_LIMIT:
        abort(400, f"{first.total} events match; narrow the dates (at most {EXPORT_LIMIT})")
    record_event("audit.export", count=0, meta={"criteria": _shown(criteria),
                                                "events": first.total})
    get_db().commit()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return Response(stream_with_context(_lines(criteria)), mimetype="application/jsonl",
                    headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.jsonl"'})


def _lines(criteria: Any) -> Iterator[str]:
    page_no = 1
    oldest_first = type(criteria)(**{**criteria.__dict__, "newest_first": False})
    while True:
        page = search(get_db(), oldest_first, page=page_no, per_page=MAX_PER_PAGE)
        for item in page.items:
            yield json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"
        if page_no * MAX_PER_PAGE >= page.total:
            return
        page_no += 1


def _without_values(event_: dict[str, Any]) -> dict[str, Any]:
    """An event's meta with field values of client records replaced by the field names."""
    meta = dict(event_["meta"]) if isinstance(event_["meta"], dict) else {"value": event_["meta"]}
    if isinstance(meta.get("changes"), dict):
        meta["changes"] = sorted(meta["changes"])
    if isinstance(meta.get("ids"), list):
        meta["ids"] = f"{len(meta['ids'])} record ids"
    return meta
