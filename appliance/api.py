"""The JSON API, ``/api/v1``: the same records and rights as the web UI.

``create_api()`` makes the parent blueprint, which authenticates every call and
serves the OpenAPI document; each package nests its own resources under it
(``<package>.init_app(app, api)``).

Callers authenticate with a bearer token (``appliance user token``) or with
the browser session; a session caller must send the CSRF token
(``X-CSRFToken``) on every change. Errors always answer
``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, current_app, g, request

from appliance.auth import user_for_token
from appliance.kernel import openapi
from appliance.kernel.db import get_db
from appliance.kernel.errors import NotAuthenticated
from appliance.security import csrf

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC = frozenset({"api.openapi"})


def create_api() -> Blueprint:
    """The ``/api/v1`` parent blueprint, fresh for each app."""
    api = Blueprint("api", __name__, url_prefix="/api/v1")
    api.before_request(authenticate)
    api.add_url_rule("/openapi.json", "openapi", openapi_document, methods=["GET"])
    return api


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


def openapi_document() -> Any:
    return openapi.document(current_app)


def register(app: Flask, api: Blueprint) -> None:
    """Register ``api`` (with whatever the packages nested under it) on ``app``.

    The app-wide CSRF check is waived for every API view: ``authenticate`` asks a
    session caller for the token itself, and a bearer token needs none.
    """
    app.register_blueprint(api)
    for endpoint, view in app.view_functions.items():
        if endpoint.startswith("api."):
            csrf.exempt(view)
