"""The workstation card agent: a localhost HTTP service the Citadel web page calls.

It listens on 127.0.0.1 only and answers only the configured appliance
origin(s): a request with any other ``Origin`` (or none, or a foreign ``Host``,
which DNS rebinding would produce) gets 403 before the card is touched, and
CORS headers are only ever sent for an allowed origin. The PIN travels in a
POST body and is never logged.

    GET  /status                       readers, card present, card id, PIN tries left
    GET  /presence?since=N&wait=S      long-poll: answers when the card state moves
                                       past event N, or after S seconds (max 30)
    POST /sign {"challenge", "pin"}    the card signs the challenge with slot 9A

The challenge must name the requesting origin (``challenge.Challenge.origin``),
so one allowed site cannot obtain a signature meant for another.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization

from appliance.cards import AGENT_PORT, spec
from appliance.cards.challenge import normalize_origin, parse_token
from appliance.cards.errors import CardError
from appliance.cards.piv import PivSession
from appliance.cards.spec import Slot
from appliance.cards.transport import PcscContext, ReaderState
from appliance.kernel.errors import CitadelError

log = logging.getLogger("citadel.cards.agent")

AGENT_NAME = "citadel-card-agent"
API_VERSION = 1
DEFAULT_PORT = AGENT_PORT
MAX_BODY = 16 * 1024
MAX_WAIT = 30
ALLOWED_METHODS = "GET, POST, OPTIONS"


class AgentError(CitadelError):
    """{detail}"""

    http_status = 400
    code = "bad_request"


class CardAgent(ThreadingHTTPServer):
    """The HTTP server; one thread per request, each with its own PC/SC context."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, origins: list[str], reader: str | None = None,
                 port: int = DEFAULT_PORT) -> None:
        self.origins = frozenset(normalize_origin(origin) for origin in origins)
        if not self.origins:
            raise ValueError("the card agent needs at least one allowed origin")
        self.reader = reader
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", port), AgentHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()


def _card_summary(reader: str) -> dict[str, Any]:
    try:
        with PivSession.open(reader) as piv:
            identity = piv.identity()
            return {"card_id": identity.card_id, "pin_tries_left": piv.pin_status().tries_left}
    except CardError as exc:
        return {"card_id": None, "error": {"code": exc.code, "message": exc.message}}


def _pick_state(states: list[ReaderState], wanted: str | None) -> ReaderState | None:
    if wanted is not None:
        return next((state for state in states if state.reader == wanted), None)
    return next((state for state in states if state.present), states[0] if states else None)


class AgentHandler(BaseHTTPRequestHandler):
    """Origin gate first, then the three endpoints."""

    server: CardAgent
    protocol_version = "HTTP/1.1"
    server_version = AGENT_NAME

    # -- gate --------------------------------------------------------------------------

    def _allowed_origin(self) -> str | None:
        """The request's Origin if allowed and the Host is ours, else None."""
        host = (self.headers.get("Host") or "").lower()
        if host not in {f"127.0.0.1:{self.server.port}", f"localhost:{self.server.port}"}:
            return None
        origin = self.headers.get("Origin")
        if origin is None:
            return None
        try:
            canonical = normalize_origin(origin)
        except ValueError:
            return None
        return origin if canonical in self.server.origins else None

    def _refuse(self) -> None:
        origin = self.headers.get("Origin", "none")
        log.warning("refused %s %s from origin %r", self.command, self._path(), origin[:100])
        self._send(HTTPStatus.FORBIDDEN, {"error": {"code": "origin_refused",
                                                    "message": "This site may not use the card."}})

    def _path(self) -> str:
        return urlsplit(self.path).path

    # -- responses ---------------------------------------------------------------------

    def _send(self, status: int, body: dict[str, Any] | None, origin: str | None = None,
              extra: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        # One request per connection: an unread body (refused early) never leaks into the next.
        self.close_connection = True
        self.send_header("Connection", "close")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Vary", "Origin")
        if origin is not None:
            self.send_header("Access-Control-Allow-Origin", origin)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_error(self, exc: CitadelError, origin: str) -> None:
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if hasattr(exc, "tries_left"):
            error["tries_left"] = exc.tries_left
        self._send(exc.http_status, {"error": error}, origin)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.info("%s %s %s", self.command, self._path(), code)  # never the body: it has the PIN

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug(format, *args)

    # -- verbs -------------------------------------------------------------------------

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server naming
        origin = self._allowed_origin()
        method = self.headers.get("Access-Control-Request-Method", "")
        if origin is None or method not in ("GET", "POST"):
            self._refuse()
            return
        extra = {"Access-Control-Allow-Methods": ALLOWED_METHODS,
                 "Access-Control-Allow-Headers": "Content-Type",
                 "Access-Control-Max-Age": "600"}
        if self.headers.get("Access-Control-Request-Private-Network") == "true":
            extra["Access-Control-Allow-Private-Network"] = "true"
        self._send(HTTPStatus.NO_CONTENT, None, origin, extra)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch({"/status": self._status, "/presence": self._presence})

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch({"/sign": self._sign})

    def _dispatch(self, routes: dict[str, Any]) -> None:
        origin = self._allowed_origin()
        if origin is None:
            self._refuse()
            return
        route = routes.get(self._path())
        if route is None:
            self._send(HTTPStatus.NOT_FOUND, {"error": {"code": "not_found",
                                                        "message": "No such endpoint."}}, origin)
            return
        try:
            self._send(HTTPStatus.OK, route(), origin)
        except CitadelError as exc:
            self._send_error(exc, origin)
        except Exception:
            log.exception("card agent failure on %s", self._path())
            self._send_error(CardError(detail="the card agent failed; see its log"), origin)

    # -- endpoints ---------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        with PcscContext() as context:
            states = context.states()
        state = _pick_state(states, self.server.reader)
        present = bool(state and state.present)
        return {"agent": AGENT_NAME, "version": API_VERSION,
                "readers": [s.reader for s in states],
                "reader": state.reader if state else None, "card_present": present,
                "events": state.events if state else 0,
                "card": _card_summary(state.reader) if state and present else None}

    def _presence(self) -> dict[str, Any]:
        query = parse_qs(urlsplit(self.path).query)
        try:
            since = int(query["since"][0]) if "since" in query else None
            wait = min(float(query.get("wait", ["0"])[0]), MAX_WAIT)
        except ValueError as exc:
            raise AgentError(detail="since and wait must be numbers") from exc
        wanted = self.server.reader or query.get("reader", [None])[0]
        deadline = time.monotonic() + max(wait, 0)
        with PcscContext() as context:
            state = _pick_state(context.states(), wanted)
            while state is not None and (since is None or state.events == since):
                left = deadline - time.monotonic()
                if left <= 0 or self.server.stopping.is_set():
                    break
                state = context.wait_change(state, int(min(left, 1.0) * 1000))
        if state is None:
            return {"reader": wanted, "card_present": False, "events": since or 0}
        return {"reader": state.reader, "card_present": state.present, "events": state.events}

    def _read_json(self) -> dict[str, Any]:
        if self.headers.get_content_type() != "application/json":
            raise AgentError(detail="send JSON (Content-Type: application/json)")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError as exc:
            raise AgentError(detail="bad Content-Length") from exc
        if not 0 < length <= MAX_BODY:
            raise AgentError(detail=f"the body must be 1 to {MAX_BODY} bytes")
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as exc:
            raise AgentError(detail="the body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise AgentError(detail="the body must be a JSON object")
        return body

    def _sign(self) -> dict[str, Any]:
        body = self._read_json()
        token, pin = body.get("challenge"), body.get("pin")
        if not isinstance(token, str) or not isinstance(pin, str):
            raise AgentError(detail="send {\"challenge\": \"...\", \"pin\": \"...\"}")
        challenge = parse_token(token)
        if challenge.origin != normalize_origin(self.headers["Origin"]):
            raise AgentError(detail="this challenge was issued for another site")
        with PivSession.open(self.server.reader) as piv:
            piv.verify_pin(pin)
            certificate = piv.read_certificate(Slot.AUTHENTICATION)
            public_key = certificate.public_key()
            algorithm = spec.algorithm_of(public_key)
            signature = piv.sign(challenge.to_be_signed(), Slot.AUTHENTICATION, public_key)
            card_id = piv.identity().card_id
        der = certificate.public_bytes(serialization.Encoding.DER)
        return {"signature": base64.b64encode(signature).decode(),
                "certificate": base64.b64encode(der).decode(),
                "algorithm": algorithm.signature_name, "card_id": card_id,
                "key_fingerprint": spec.key_fingerprint(public_key)}
