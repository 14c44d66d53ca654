"""CSV import pages: upload, preview with row-level errors, confirm."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from appliance.kernel.db import get_db
from appliance.kernel.http import accepts_uploads
from appliance.kernel.principal import login_required
from crm import importer
from crm.access import Action, Entity
from crm.current import policy

bp = Blueprint("imports", __name__, url_prefix="/import", template_folder="../templates")


@bp.route("", methods=["GET", "POST"])
@accepts_uploads
@login_required
def upload() -> Any:
    policy().require(Entity.ACCOUNT, Action.CREATE)
    if request.method == "GET":
        return render_template("imports/upload.html", columns=importer.COLUMNS)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a CSV file to upload.", "error")
        return render_template("imports/upload.html", columns=importer.COLUMNS), 400
    content = upload.read()
    db = get_db()
    try:
        preview = importer.check(db, policy(), content, request.remote_addr)
    except importer.FileProblem as exc:
        db.rollback()
        flash(exc.message, "error")
        return render_template("imports/upload.html", columns=importer.COLUMNS), 400
    batch = importer.save_batch(db, policy(), upload.filename, content, len(preview.rows))
    db.commit()
    return render_template("imports/preview.html", preview=preview, batch=batch,
                           shown=preview.rows[:200]), (200 if preview.ok else 422)


@bp.post("/<batch_id>")
@login_required
def confirm(batch_id: str) -> Response:
    db = get_db()
    batch = importer.load_batch(db, policy(), batch_id)
    count = importer.commit(db, policy(), batch, request.remote_addr)
    db.commit()
    flash(f"Imported {count} accounts.", "success")
    return redirect(url_for("accounts.index", sort="-created"))
