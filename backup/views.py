"""The IT page for backups: the last proven backup, sizes over time, the next run, the
target's health, and a button to ask the worker for a backup now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, url_for

from appliance.kernel import charts
from appliance.kernel.db import get_db
from appliance.kernel.errors import CitadelError
from appliance.kernel.permissions import Cap
from appliance.kernel.principal import login_required, require
from audit.requests import record_event

bp = Blueprint("backups", __name__, url_prefix="/backups", template_folder="templates")
REQUEST_FILE = "backup-requested"


def _appliance() -> Any:
    return current_app.extensions["citadel.appliance"]


@bp.get("")
@login_required
def index() -> str:
    require(Cap.BACKUPS_ADMIN)
    from backup.cli import _missing, _missing_row, _repository, _rows
    from backup.ledger import summary
    from backup.settings import BackupSettings

    appliance = _appliance()
    section = appliance.settings.section("backup")
    status: dict[str, Any] = {"configured": bool(section), "rows": [], "error": None}
    if section:
        try:
            settings = BackupSettings.from_section(section)
            status["next_run"] = settings.next_run(datetime.now(UTC))
            with _repository(appliance, None) as (_settings, repo):
                status["rows"] = _rows(repo)
                missing = _missing(appliance, repo.target)  # deleted or rolled back: IT must see it
            listed = {r["archive_id"] for r in status["rows"]}
            status["rows"] = sorted(status["rows"] + [_missing_row(m) for m in missing if m.archive_id not in listed],
                                    key=lambda r: r["archive_id"])
            status["target"] = "reachable"
            if missing:
                status["error"] = f"The target lacks archives the audit log records: {summary(missing)}."
        except CitadelError as exc:
            status["error"], status["target"] = exc.message, "unavailable"
    rows = status["rows"]
    verified = [r for r in rows if r.get("good")]
    status["last_verified"] = verified[-1] if verified else None
    sized = [r for r in rows if r.get("size")][-30:]
    chart = charts.columns([r["archive_id"][4:13] for r in sized],
                           [("stored MB", [r["size"] / 1e6 for r in sized])], title="Archive sizes") if sized else ""
    status["requested"] = (appliance.data_dir / REQUEST_FILE).exists()
    return render_template("backups/index.html", status=status, chart=chart)


@bp.post("/run")
@login_required
def request_run() -> Any:
    require(Cap.BACKUPS_ADMIN)
    (_appliance().data_dir / REQUEST_FILE).write_text(datetime.now(UTC).isoformat())
    record_event("backup.request", meta={"via": "web"})
    get_db().commit()
    flash("The worker will start a backup within a minute; its drill follows.", "success")
    return redirect(url_for(".index"))
