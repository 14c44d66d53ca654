"""Uploading, downloading and deleting files on an account."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, flash, redirect, request, url_for

from appliance.kernel.db import get_db
from appliance.kernel.errors import BadRequest, Conflict
from appliance.kernel.http import accepts_uploads
from appliance.kernel.principal import login_required
from appliance.keys.errors import DecryptionFailed
from audit.requests import record_event
from crm import attachments
from crm.access import Action
from crm.current import policy

bp = Blueprint("attachments", __name__, template_folder="../templates")


class Damaged(Conflict):
    """This file is damaged or was altered on the appliance; restore it from a backup."""

    code = "attachment_damaged"


def _data_dir() -> Any:
    return current_app.extensions["citadel.appliance"].data_dir


@bp.post("/accounts/<uuid:account_id>/attachments")
@accepts_uploads
@login_required
def upload(account_id: uuid.UUID) -> Any:
    upload_ = request.files.get("file")
    if upload_ is None or not upload_.filename:
        flash("Choose a file to attach.", "error")
        return redirect(url_for("accounts.show", account_id=account_id))
    try:
        attachments.add(get_db(), policy(), _data_dir(), account_id, upload_.filename, upload_.stream,
                        request.remote_addr)
    except BadRequest as exc:
        get_db().rollback()
        flash(exc.message, "error")
        return redirect(url_for("accounts.show", account_id=account_id))
    get_db().commit()
    flash("File attached.", "success")
    return redirect(url_for("accounts.show", account_id=account_id))


@bp.get("/attachments/<uuid:attachment_id>")
@login_required
def download(attachment_id: uuid.UUID) -> Response:
    db = get_db()
    attachment = attachments.get(db, policy(), attachment_id)
    try:
        # files are at most 20 MB: check every byte before sending any, so a damaged file
        # gives a clear error rather than a truncated download
        content = b"".join(attachments.read(_data_dir(), attachment))
    except (DecryptionFailed, FileNotFoundError):
        raise Damaged() from None
    record_event("record.view", entity="attachment", entity_id=attachment.id, count=1,
                 meta={"download": True, "bytes": attachment.size,
                       "account": str(attachment.account_id)})
    db.commit()
    name = attachment.filename
    return Response(content, mimetype="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename=\"{quote(name)}\"; filename*=UTF-8''{quote(name)}",
        "Content-Security-Policy": "sandbox; default-src 'none'; frame-ancestors 'none'",
    })


@bp.post("/attachments/<uuid:attachment_id>/delete")
@login_required
def delete(attachment_id: uuid.UUID) -> Any:
    attachment = attachments.get(get_db(), policy(), attachment_id, Action.DELETE)
    account_id = attachment.account_id
    stored = attachments.remove(get_db(), policy(), _data_dir(), attachment_id, request.remote_addr)
    get_db().commit()
    stored.unlink(missing_ok=True)
    flash("Attachment deleted.", "success")
    return redirect(url_for("accounts.show", account_id=account_id))
