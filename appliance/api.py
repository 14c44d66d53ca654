"""The JSON API, ``/api/v1``: the same records and rights as the web UI.

The blueprint and its authentication live here; each package adds its own
resources to ``bp`` (``crm.api``, ``audit.api``, ``dlp.api``).

Callers authenticate with a bearer token (``appliance user token``) or with
the browser session; a session caller must send the CSRF token
(``X-CSRFToken``) on every change. Errors always answer
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, g, request

from appliance.auth import user_for_token
from appliance.db import get_db
from appliance.errors import NotAuthenticated
from appliance.security import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC = frozenset({"api.openapi"})


@bp.before_request
def authenticate() -> None:
    """Bearer token first; otherwise the session, which must carry the CSRF token to change things."""
    if request.endpoint in PUBLIC:
        return
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        user = user_for_token(get_db(), token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise NotAuthenticated("The bearer token is missing, wrong or revoked.")
        g.user, g.api_auth = user, "token"
        get_db().commit()
        return
    if g.get("user") is None:
        raise NotAuthenticated("Send 'Authorization: Bearer <token>' (see `appliance user token`).")
    g.api_auth = "session"
    if request.method not in SAFE_METHODS:
        csrf.protect()


def init_app(app: Flask) -> None:
    # each package's resources register their routes on ``bp``
    from audit import api as audit_api  # noqa: F401
    from crm.api import misc, openapi, records  # noqa: F401
    from dlp import api as dlp_api  # noqa: F401
    from dlp import beacons  # noqa: F401

    csrf.exempt(bp)
    app.register_blueprint(bp)
