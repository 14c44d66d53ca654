"""The Flask app factory: one appliance, one app, every subsystem via ``init_app``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from appliance import api, auth, card_login, health, sealed, security, web
from appliance.kernel import db, http
from appliance.kernel.config import Settings
from appliance.kernel.runtime import Appliance


def create_app(appliance: Appliance | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the web app for ``appliance`` (default: the one in ``CITADEL_DATA_DIR``)."""
    appliance = appliance or Appliance(Settings.load())
    settings = appliance.settings
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="citadel",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=bool(settings["secure_cookies"]),
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings["session_max_hours"]),
        MAX_CONTENT_LENGTH=http.BODY_LIMIT,  # uploads may send more (http.accepts_uploads)
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=False,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    proxies = int(settings["trusted_proxies"])
    if proxies:  # behind the appliance's nginx: client address and scheme come from it
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    app.extensions["citadel.appliance"] = appliance

    db.init_app(app, appliance.engine)
    security.init_app(app, settings)
    sealed.init_app(app, settings)
    auth.init_app(app, settings)
    card_login.init_app(app)
    web.init_app(app)
    _add_domains(app)
    return app


def _add_domains(app: Flask) -> None:
    """Every package adds its pages, API resources and OpenAPI part; the CRM's calls into leak
    monitoring are connected here, the one place that knows both."""
    import audit
    import backup
    import crm
    import dlp
    from crm import hooks as crm_hooks
    from dlp import watermark
    from dlp.trace import canary_positions

    crm_hooks.watermark.provide(watermark)
    crm_hooks.canary_positions.provide(canary_positions)
    crm_hooks.first_tool.provide(web.first_tool)
    parent = api.create_api()
    for domain in (audit, crm, dlp, backup):
        domain.init_app(app, parent)
    app.register_blueprint(health.bp)
    api.register(app, parent)
