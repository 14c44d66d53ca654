"""``/healthz``: is this appliance able to serve? Answers without signing in,
and says nothing an outsider could use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, current_app
from sqlalchemy import text

from appliance.kernel.db import get_db
from appliance.schema import is_current
from appliance.sealed import state as sealed_state
from appliance.worker import last_heartbeat

bp = Blueprint("health", __name__)
STALE_WORKER = timedelta(minutes=2)


@bp.get("/healthz")
def healthz() -> Any:
    checks: dict[str, str] = {}
    db = get_db()
    try:
        db.execute(text("SELECT 1"))
        checks["database"] = "ok"
        checks["schema"] = "ok" if is_current(db.connection()) else "outdated"
    except Exception:  # any failure to reach the database is "down", never a 500
        checks["database"] = "unreachable"
    finally:
        db.rollback()
    beat = last_heartbeat(current_app.extensions["citadel.appliance"].data_dir)
    checks["worker"] = "ok" if beat and datetime.now(UTC) - beat < STALE_WORKER else \
        ("not running" if beat is None else "stalled")
    sealed, _why = sealed_state(current_app.extensions["citadel.appliance"].settings)
    checks["keys"] = "sealed" if sealed else "ok"
    # the worker and the seal are reported, but only the database decides "can serve"
    healthy = checks["database"] == "ok" and checks.get("schema") == "ok"
    return {"status": "ok" if healthy else "degraded", "checks": checks}, (200 if healthy else 503)
