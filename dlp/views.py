"""The officer console: the alert queue, one alert with its evidence, and the responses."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from appliance.kernel import charts
from appliance.kernel.db import get_db
from appliance.kernel.errors import BadRequest, CitadelError, Conflict, ValidationFailed
from appliance.kernel.paging import page_args, paginate
from appliance.kernel.permissions import Cap
from appliance.kernel.principal import login_required
from audit import evidence
from audit.chain import canonical_json
from audit.config import AuditConfig
from audit.requests import record_event
from audit.signing import provider_for
from crm.current import policy
from crm.identity import User
from crm.restrictions import Restrictions
from dlp import console
from dlp.alerts import OPEN, SEVERITIES, STATUSES, Alert, Triage
from dlp.responses import RESPONSES, respond

bp = Blueprint("alerts", __name__, url_prefix="/alerts", template_folder="templates")


def _triage() -> Triage:
    policy().require_cap(Cap.ALERTS_TRIAGE)
    return Triage(get_db(), policy().user.username, request.remote_addr)


@bp.get("")
@login_required
def index() -> str:
    policy().require_cap(Cap.ALERTS_READ)
    status = request.args.get("status", "open")
    stmt = select(Alert)
    if status == "open":
        stmt = stmt.where(Alert.status.in_(OPEN))
    elif status in STATUSES:
        stmt = stmt.where(Alert.status == status)
    if request.args.get("severity") in SEVERITIES:
        stmt = stmt.where(Alert.severity == request.args["severity"])
    if request.args.get("user"):
        stmt = stmt.where(Alert.user == request.args["user"])
    if request.args.get("mine"):
        stmt = stmt.where(Alert.assignee == policy().user.username)
    page = paginate(stmt.order_by(Alert.score.desc(), Alert.opened_at.desc()), *page_args())
    return render_template("alerts/index.html", page=page, status=status, statuses=STATUSES,
                           severities=SEVERITIES, counts=console.open_counts(get_db()),
                           can_triage=policy().holds(Cap.ALERTS_TRIAGE))


@bp.get("/<int:alert_id>")
@login_required
def show(alert_id: int) -> str:
    policy().require_cap(Cap.ALERTS_READ)
    db = get_db()
    alert = Triage(db, policy().user.username).get(alert_id)
    timeline = console.risk_timeline(db, alert.user)
    chart = charts.lines(timeline["labels"], [
        (alert.user, timeline["mine"]), ("own 30-day median", timeline["baseline"]),
        (f"peers' median ({timeline['peer_count']})", timeline["peers"])],
        title=f"Client records touched per day by {alert.user}")
    events = [e for e in (evidence_event(db, seq) for seq in alert.event_seqs[:200]) if e]
    records, total = console.records_in_evidence(db, alert.event_seqs)
    record_event("alert.view", entity="alert", entity_id=alert.id,
                 meta={"subject": alert.user, "records_shown": len(records)})
    db.commit()
    person = db.scalars(select(User).where(User.username == alert.user)).first()
    return render_template("alerts/show.html", alert=alert, chart=chart, events=events,
                           records=records, records_total=total, person=person,
                           responses=RESPONSES, can_triage=policy().holds(Cap.ALERTS_TRIAGE),
                           statuses=STATUSES)


def evidence_event(db: Any, seq: int) -> dict[str, Any] | None:
    from audit.query import get_event

    event = get_event(db, seq)
    return console.for_officers(event) if event else None


@bp.post("/<int:alert_id>/status")
@login_required
def set_status(alert_id: int) -> Any:
    return _act(alert_id, lambda t: t.set_status(alert_id, request.form.get("status", ""),
                                                 request.form.get("reason", "")))


@bp.post("/<int:alert_id>/assign")
@login_required
def assign(alert_id: int) -> Any:
    who = request.form.get("assignee") or None
    return _act(alert_id, lambda t: t.assign(alert_id, who))


@bp.post("/<int:alert_id>/comment")
@login_required
def comment(alert_id: int) -> Any:
    return _act(alert_id, lambda t: t.comment(alert_id, request.form.get("body", "")))


@bp.post("/<int:alert_id>/respond/<what>")
@login_required
def take_response(alert_id: int, what: str) -> Any:
    if what not in RESPONSES:
        raise BadRequest(detail=f"unknown response {what}")
    triage = _triage()
    alert = triage.get(alert_id)
    restrictions = Restrictions(get_db(), policy(), request.remote_addr)
    return _act(alert_id, lambda t: respond(get_db(), t, restrictions, alert, what,
                                            request.form.get("reason", "") or f"alert {alert.id}"))


@bp.post("/dismiss")
@login_required
def bulk_dismiss() -> Any:
    triage = _triage()
    ids = [int(i) for i in request.form.getlist("alert_id") if i.isdigit()]
    try:
        done = triage.bulk_dismiss(ids, request.form.get("reason", ""))
        get_db().commit()
    except ValidationFailed as exc:
        get_db().rollback()
        flash(exc.message, "error")
        return redirect(url_for(".index"))
    flash(f"{done} alert(s) dismissed.", "success")
    return redirect(url_for(".index"))


@bp.get("/<int:alert_id>/evidence.json")
@login_required
def packet(alert_id: int) -> Response:
    """A signed evidence packet for HR or legal: the alert, its events with inclusion proofs
    (an audit evidence bundle), and a signature over both by the audit key."""
    policy().require_cap(Cap.ALERTS_READ)
    db = get_db()
    alert = Triage(db, policy().user.username).get(alert_id)
    settings = current_app.extensions["citadel.appliance"].settings
    # the events as officers may see them: their place in the log proved, record details withheld
    bundle = evidence.bundle(db, settings, seqs=alert.event_seqs[:5000],
                             redact=console.for_officers)
    records, total = console.records_in_evidence(db, alert.event_seqs)
    body = {"format": "citadel-evidence-packet-v1", "created": datetime.now(UTC).isoformat(),
            "alert": alert.public(), "notes": [{"at": n.created_at.isoformat(), "by": n.author,
                                                "kind": n.kind, "text": n.body} for n in alert.notes],
            "records": records, "records_total": total,
            "bundle_sha256": hashlib.sha256(canonical_json(bundle).encode()).hexdigest()}
    signer = provider_for(AuditConfig.from_settings(settings)).signer()
    signature = signer.sign(canonical_json(body).encode())
    record_event("alert.evidence", entity="alert", entity_id=alert.id,
                 meta={"subject": alert.user, "events": len(alert.event_seqs)})
    db.commit()
    document = {"packet": body, "key": signer.key_id, "signature": signature.hex(), "bundle": bundle}
    return Response(json.dumps(document, indent=1), mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="alert-{alert.id}-evidence.json"'})


def _act(alert_id: int, run: Any) -> Any:
    triage = _triage()
    try:
        run(triage)
        get_db().commit()
    except (Conflict, ValidationFailed) as exc:
        get_db().rollback()
        flash(exc.message, "error")
    except CitadelError:
        get_db().rollback()
        raise
    return redirect(url_for(".show", alert_id=alert_id))
