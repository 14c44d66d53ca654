"""HTTP plumbing every blueprint shares: the JSON body of a request, the error answer
(JSON for the API, a page for people), ids in URLs, text the database cannot keep
refused at the door, and a database outage told apart from a bug."""

from __future__ import annotations

from typing import Any

from flask import current_app, jsonify, render_template, request
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from werkzeug.exceptions import RequestURITooLarge
from werkzeug.routing import IntegerConverter

from appliance.kernel.errors import BadRequest, DatabaseUnavailable, StorageFull

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


def too_large_message() -> str:
    """What a 413 says: the limit this request was under."""
    limit = request.max_content_length or BODY_LIMIT
    if limit >= UPLOAD_LIMIT:
        return f"That upload is too large ({limit // 2**20} MB at most). Split the file or " \
               "make it smaller."
    return f"The request is too large ({limit // 2**20} MB at most). Send less at once."


def json_body() -> dict[str, Any]:
    """The request's JSON object; anything else is a bad request."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest(detail="Send a JSON object as the request body "
                                "(Content-Type: application/json).")
    return body


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_response(status: int, code: str, message: str) -> Any:
    if wants_json():
        return jsonify({"error": {"code": code, "message": message}}), status
    return render_template("errors/error.html", status=status, message=message), status


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
