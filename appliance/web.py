"""The web app's shared face: template filters, the navigation each person may use,
banners, and the error pages and answers. No stack trace ever reaches a browser or an
API client. (Paging, JSON bodies and error answers themselves are the kernel's.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import Flask, g, jsonify, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from appliance import keys
from appliance.auth import redirect_to_login
from appliance.kernel.db import get_db
from appliance.kernel.errors import (
    CitadelError,
    DatabaseUnavailable,
    Forbidden,
    NotAuthenticated,
    NotFound,
    ValidationFailed,
)
from appliance.kernel.http import (
    URL_LIMIT,
    IdConverter,
    database_trouble,
    error_response,
    limit_request,
    refuse_unusable_input,
    too_large_message,
    wants_json,
)
from appliance.kernel.permissions import Cap
from audit.requests import record_event
from crm.access import Action, Entity, Policy
from crm.current import policy

log = logging.getLogger("citadel.web")


# -- templates -------------------------------------------------------------
def _money(value: Any, currency: str = "") -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    amount = f"{Decimal(value):,.0f}".replace(",", "\u202f")
    return f"{amount} {currency}".strip()


def _day(value: date | datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%d %b %Y")


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%d %b %Y %H:%M UTC")


def _query_with(**changes: Any) -> str:
    """The current query string with some arguments replaced (for sort and page links)."""
    args = request.args.to_dict()
    args.update({k: v for k, v in changes.items() if v is not None})
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
    from urllib.parse import urlencode

    return "?" + urlencode(args)


# -- navigation -------------------------------------------------------------
@dataclass
class NavLink:
    endpoint: str
    label: str
    active: bool


#: (section, [(endpoint, label, who may see it)]); a right is (entity, action) or a capability.
NAVIGATION: list[tuple[str | None, list[tuple[str, str, Any]]]] = [
    (None, [("home.index", "Today", None)]),
    ("CRM", [
        ("accounts.index", "Accounts", (Entity.ACCOUNT, Action.READ)),
        ("contacts.index", "Contacts", (Entity.CONTACT, Action.READ)),
        ("deals.board", "Pipeline", (Entity.DEAL, Action.READ)),
        ("deals.index", "Deals", (Entity.DEAL, Action.READ)),
        ("activities.index", "Activities", (Entity.ACTIVITY, Action.READ)),
        ("reports.index", "Reports", (Entity.REPORT, Action.READ)),
        ("imports.upload", "Import", (Entity.ACCOUNT, Action.CREATE)),
        ("exports.index", "Export requests", (Entity.ACCOUNT, Action.EXPORT)),
    ]),
    ("Security", [
        ("alerts.index", "Alerts", Cap.ALERTS_READ),
        ("audit.index", "Audit trail", Cap.AUDIT_READ),
    ]),
    ("Administration", [
        ("admin.users", "People", (Cap.USERS_ADMIN, Cap.USERS_RESTRICT, Cap.ROLES_ADMIN)),
        ("admin.roles", "Roles", Cap.ROLES_ADMIN),
        ("admin.changes", "Rights changes", Cap.ROLES_ADMIN),
        ("backups.index", "Backups", Cap.BACKUPS_ADMIN),
    ]),
]


def navigation() -> list[tuple[str | None, list[NavLink]]]:
    """The sections and links the signed-in user may use, the current one marked."""
    pol = policy()
    sections = []
    for section, links in NAVIGATION:
        shown = [NavLink(endpoint, label, _is_current(endpoint)) for endpoint, label, right in links
                 if _may_see(pol, right)]
        if shown:
            sections.append((section, shown))
    return sections


def first_tool() -> str | None:
    """Where a person whose role works with no client records starts: their first menu entry."""
    for _section, links in navigation():
        for link in links:
            if link.endpoint != "home.index":
                return url_for(link.endpoint)
    return None


def _may_see(pol: Policy, right: Any) -> bool:
    """A right is None (everyone), (entity, action), a capability, or a tuple of capabilities."""
    if right is None:
        return True
    if isinstance(right, tuple) and isinstance(right[0], Entity):
        return pol.may_do(*right)
    caps = right if isinstance(right, tuple) else (right,)
    return any(pol.holds(cap) for cap in caps)


def _is_current(endpoint: str) -> bool:
    current = request.endpoint or ""
    if current == endpoint:
        return True
    blueprint = endpoint.split(".")[0]
    return endpoint.endswith(".index") and current.startswith(blueprint + ".") \
        and current not in {e for _, links in NAVIGATION for e, _, _ in links}


@dataclass
class Banner:
    kind: str
    text: str


def banners() -> list[Banner]:
    shown = []
    if keys.in_demo_mode():
        shown.append(Banner("demo", "Demo appliance: demo data and demo passwords, auto-unsealed "
                                    "with a local key file. Never put real clients in it."))
    return shown


# -- errors ----------------------------------------------------------------
def _audit_denial(exc: CitadelError) -> None:
    """A refused attempt is itself evidence: record it (never the values sent), nothing else."""
    if g.get("user") is None:
        return
    if isinstance(exc, Forbidden | NotFound):
        action, meta = "access.denied", {"reason": exc.code}
    elif isinstance(exc, ValidationFailed):
        action, meta = "input.rejected", {"fields": sorted(exc.errors)}
    else:
        return
    db = get_db()
    db.rollback()
    record_event(action, meta={"method": request.method, "path": request.path[:200], **meta})
    db.commit()


def _database_down(trouble: DatabaseUnavailable, exc: BaseException) -> Any:
    """503 with what to do; the page is drawn without the signed-in user's menu, which
    would need the database."""
    log.warning("%s on %s %s: %s", trouble.code, request.method, request.path,
                str(exc).splitlines()[0][:300])
    try:
        get_db().rollback()
    except Exception:  # noqa: BLE001 - the connection is gone already; nothing to undo
        log.debug("rollback after a database failure failed too", exc_info=True)
    g.user = None
    return error_response(trouble.http_status, trouble.code, trouble.message)


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = IdConverter  # before any blueprint adds its routes
    # first of all: the CSRF check and the sign-in read the body, under this request's limit
    app.before_request_funcs.setdefault(None, []).insert(0, limit_request)
    app.before_request(refuse_unusable_input)
    app.jinja_env.filters.update(money=_money, day=_day, when=_when)
    app.jinja_env.globals.update(query_with=_query_with, navigation=navigation, banners=banners,
                                 can_search=lambda: policy().may_do(Entity.ACCOUNT, Action.READ))

    @app.errorhandler(CitadelError)
    def _citadel_error(exc: CitadelError) -> Any:
        if isinstance(exc, NotAuthenticated) and not wants_json():
            return redirect_to_login()
        get_db().rollback()
        _audit_denial(exc)
        body = error_response(exc.http_status, exc.code, exc.message)
        if getattr(exc, "errors", None) and wants_json():
            payload, status = body
            data = payload.get_json()
            data["error"]["fields"] = exc.errors
            return jsonify(data), status
        return body

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> Any:
        return error_response(400, "csrf", "This form has expired or did not come from Citadel. "
                                           "Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        messages = {
            404: "There is nothing at this address.",
            405: "This address does not accept that method.",
            413: too_large_message(),
            414: f"This address is too long ({URL_LIMIT:,} characters at most). Search with "
                 "fewer words or filters.",
        }
        status = exc.code or 500
        body, code = error_response(status, exc.name.lower().replace(" ", "_"),
                                    messages.get(status, exc.description or exc.name))
        return body, code, [h for h in exc.get_headers() if h[0] == "Allow"]  # a 405 names what works

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        trouble = database_trouble(exc)
        if trouble is not None:
            return _database_down(trouble, exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "Something went wrong on our side. "
                                               "It has been logged; try again in a moment.")
