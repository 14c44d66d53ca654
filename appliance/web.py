"""What every view shares: the caller's access policy, the audit helper that
fills in who and from where, pagination, template filters, and the error
pages. No stack trace ever reaches a browser or an API client.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import Flask, current_app, g, jsonify, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy import Select, func, literal, select
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from werkzeug.exceptions import HTTPException, RequestURITooLarge
from werkzeug.routing import IntegerConverter

import audit
from appliance import keys
from appliance.auth import redirect_to_login
from appliance.db import get_db
from appliance.errors import (
    BadRequest,
    CitadelError,
    DatabaseUnavailable,
    Forbidden,
    NotAuthenticated,
    NotFound,
    StorageFull,
    ValidationFailed,
)
from crm.access import Action, Cap, Entity, Policy

log = logging.getLogger("citadel.web")

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
#: Beyond this the offset would not fit the database's 64-bit integers.
MAX_PAGE = 10**9
#: Lists for people count matching rows up to here, then say "10,000+".
COUNT_UP_TO = 10_000
#: The largest request body, unless the view takes uploads (``accepts_uploads``): a form or a
#: JSON document is far smaller, and a bigger one is refused before it is read.
BODY_LIMIT = 1024 * 1024
#: The largest upload (a CSV import, an attachment).
UPLOAD_LIMIT = 20 * 1024 * 1024
#: The longest address the app answers; the server in front lets longer ones through to here
#: (see appliance.server) so that they get this app's own error, not a bare one.
URL_LIMIT = 4096


def accepts_uploads(view: Any) -> Any:
    """Mark a view that takes file uploads: its body may be up to ``UPLOAD_LIMIT``."""
    view.accepts_uploads = True
    return view


def limit_request() -> None:
    """The size limits of this request: its body (larger for uploads) and its address."""
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "accepts_uploads", False):
        request.max_content_length = UPLOAD_LIMIT
    address = request.environ.get("RAW_URI") or request.full_path
    if len(address) > URL_LIMIT:
        raise RequestURITooLarge()


def policy() -> Policy:
    """The signed-in user's access policy, built once per request."""
    if "policy" not in g:
        if g.get("user") is None:
            raise NotAuthenticated()
        g.policy = Policy(get_db(), g.user)
    return g.policy


def appliance_settings() -> Any:
    """The running appliance's settings."""
    return current_app.extensions["citadel.appliance"].settings


def record_event(action: str, *, entity: str | None = None, entity_id: object = None,
                 count: int = 0, meta: dict[str, Any] | None = None) -> None:
    """``audit.record`` for the current request: who and from where filled in."""
    user = g.get("user")
    audit.record(get_db(), action, user=user.username if user else None,
                 ip=request.remote_addr, entity=entity, entity_id=entity_id, count=count,
                 meta=meta)


# -- pagination ------------------------------------------------------------
@dataclass
class Page:
    items: list[Any]
    total: int
    page: int
    per_page: int
    #: True when counting stopped at a cap: there are at least ``total`` rows.
    at_least: bool = False

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    def as_json(self, items: list[Any]) -> dict[str, Any]:
        return {"items": items, "total": self.total, "page": self.page, "per_page": self.per_page}


def page_args(default_per_page: int = DEFAULT_PER_PAGE) -> tuple[int, int]:
    """``page`` and ``per_page`` from the query string, checked."""
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", default_per_page))
    except ValueError:
        raise BadRequest(detail="page and per_page must be whole numbers") from None
    if page < 1:
        raise BadRequest(detail="page starts at 1")
    if page > MAX_PAGE:
        raise BadRequest(detail=f"page must be at most {MAX_PAGE}")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise BadRequest(detail=f"per_page must be between 1 and {MAX_PER_PAGE}")
    return page, per_page


def count_of(stmt: Select[Any]) -> Select[Any]:
    """``SELECT count(*)`` over the rows of ``stmt``, without its eager joins or ordering."""
    return stmt.order_by(None).with_only_columns(func.count(), maintain_column_froms=True)


def paginate(stmt: Select[Any], page: int, per_page: int, *, scalars: bool = True,
             count_up_to: int | None = None) -> Page:
    """One page of ``stmt`` and the count of its rows.

    ``count_up_to`` stops counting there (pages for people say "10,000+"): counting a
    hundred thousand visible rows exactly costs more than showing fifty of them.
    """
    db = get_db()
    if count_up_to is None:
        total, at_least = db.scalar(count_of(stmt)) or 0, False
    else:
        capped = stmt.order_by(None).with_only_columns(literal(1), maintain_column_froms=True)
        total = db.scalar(select(func.count()).select_from(capped.limit(count_up_to + 1).subquery())) or 0
        at_least = total > count_up_to
        total = min(total, count_up_to)
    window = stmt.limit(per_page).offset((page - 1) * per_page)
    rows = db.scalars(window).unique().all() if scalars else db.execute(window).all()
    return Page(list(rows), total, page, per_page, at_least)


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
        return pol.can(*right)
    caps = right if isinstance(right, tuple) else (right,)
    return any(pol.has(cap) for cap in caps)


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
def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_response(status: int, code: str, message: str) -> Any:
    if wants_json():
        return jsonify({"error": {"code": code, "message": message}}), status
    return render_template("errors/error.html", status=status, message=message), status


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


#: Ids in URLs (``<int:...>``) are 32-bit unless a route asks for more (``<int(largest=...):...>``).
MAX_INT_ID = 2**31 - 1
#: The largest audit sequence number (a 64-bit column).
MAX_SEQ = 2**63 - 1


class IdConverter(IntegerConverter):
    """``<int:...>`` for ids: a number larger than the id columns hold is an address with
    nothing at it (404), never a query the database refuses (500). It becomes -1, an id no
    row has (a URL never gives a negative one), so the route still matches whatever the
    method, and its view answers 404."""

    def __init__(self, url_map: Any, *args: Any, largest: int = MAX_INT_ID, **kwargs: Any) -> None:
        super().__init__(url_map, *args, **kwargs)
        self.largest = largest

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        return number if number <= self.largest else -1


def _unusable(value: Any) -> bool:
    """Does ``value`` hold text the database cannot keep: a NUL character, or half of a UTF-16
    pair (which JSON can spell as ``\\ud800``)? Walks nested data without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item or not item.isascii() and not _encodes(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def refuse_unusable_input() -> None:
    """Text with NUL characters or broken Unicode can be neither stored nor searched (the
    databases refuse it), and JSON nested beyond what the parser takes cannot be read: refuse
    them at the door, whatever part of the request carries them."""
    parts: list[Any] = [request.path, list(request.args.items(multi=True))]
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        parts.append(list(request.form.items(multi=True)))
        if request.is_json:
            try:
                parts.append(request.get_json(silent=True))
            except RecursionError:
                raise BadRequest(detail="The JSON body is nested too deeply.") from None
    if _unusable(parts):
        raise BadRequest(detail="The request contains a NUL character or broken Unicode; "
                                "remove it and try again.")


def database_trouble(exc: BaseException) -> DatabaseUnavailable | None:
    """The error to show when ``exc`` means the database is down, unreachable or full."""
    down = isinstance(exc, OperationalError | DisconnectionError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)
    if not down:
        return None
    original = getattr(exc, "orig", None)
    if getattr(original, "sqlstate", None) == "53100" or "disk is full" in str(original):
        return StorageFull()
    return DatabaseUnavailable()


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


def _too_large() -> str:
    limit = request.max_content_length or BODY_LIMIT
    if limit >= UPLOAD_LIMIT:
        return f"That upload is too large ({limit // 2**20} MB at most). Split the file or " \
               "make it smaller."
    return f"The request is too large ({limit // 2**20} MB at most). Send less at once."


def init_app(app: Flask) -> None:
    app.url_map.converters["int"] = IdConverter  # before any blueprint adds its routes
    # first of all: the CSRF check and the sign-in read the body, under this request's limit
    app.before_request_funcs.setdefault(None, []).insert(0, limit_request)
    app.before_request(refuse_unusable_input)
    app.jinja_env.filters.update(money=_money, day=_day, when=_when)
    app.jinja_env.globals.update(query_with=_query_with, navigation=navigation, banners=banners,
                                 can_search=lambda: policy().can(Entity.ACCOUNT, Action.READ))

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
            413: _too_large(),
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
