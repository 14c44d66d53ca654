"""The Flask app factory: one appliance, one app, every subsystem via ``init_app``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from appliance import auth, card_login, db, sealed, security, web
from appliance.config import Settings
from appliance.runtime import Appliance


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
        MAX_CONTENT_LENGTH=web.BODY_LIMIT,  # uploads may send more (web.accepts_uploads)
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
    from crm.attachments import register_source

    register_source(appliance.data_dir)  # so key rotation finds the attachment files

    db.init_app(app, appliance.engine)
    security.init_app(app, settings)
    sealed.init_app(app, settings)
    auth.init_app(app, settings)
    card_login.init_app(app)
    web.init_app(app)
    _register_blueprints(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from appliance import api, health
    from audit import views as audit_views
    from backup import views as backup_views
    from crm.views import (
        accounts,
        activities,
        admin,
        attachments,
        contacts,
        deals,
        exports,
        home,
        imports,
        reports,
    )
    from dlp import views as dlp_views

    for module in (home, accounts, contacts, deals, activities, attachments, reports, imports, exports,
                   admin, audit_views, dlp_views, backup_views, health):
        app.register_blueprint(module.bp)
    api.init_app(app)
