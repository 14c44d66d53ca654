"""Security headers on every answer the app gives: every route of the url_map as a signed-in
person and anonymously, static files, downloads, JSON, and error pages. A strict CSP (no
inline code, no framing), nosniff, no framing, HSTS while cookies are secure, and session
cookies that are Secure, HttpOnly and SameSite=Lax."""

from __future__ import annotations

from typing import Any

from appliance.app import create_app
from appliance.kernel.runtime import Appliance
from tests.factories import PASSWORD, csrf_token
from tests.security.routes import routes, targets

UNSAFE = ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "data: 'self'", " * ", " http: ",
          " https: ")


def problems(response: Any, *, hsts: bool = True) -> list[str]:
    """What is missing or too loose in one response's headers."""
    found = []
    headers = response.headers
    csp = headers.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d for d in (p.strip() for p in csp.split(";")) if d}
    if "frame-ancestors" not in directives or directives["frame-ancestors"] != "frame-ancestors 'none'":
        found.append(f"CSP frame-ancestors: {csp!r}")
    if "default-src" not in directives or directives["default-src"] != "default-src 'none'":
        found.append(f"CSP default-src: {csp!r}")
    for loose in UNSAFE:
        if loose.strip() and loose in f" {csp} ":
            found.append(f"CSP allows {loose.strip()}")
    script = directives.get("script-src", "script-src 'none'")
    if set(script.split()[1:]) - {"'self'", "'none'"}:
        found.append(f"CSP {script!r}")
    if headers.get("X-Content-Type-Options") != "nosniff":
        found.append("no nosniff")
    if headers.get("X-Frame-Options") != "DENY":
        found.append("no X-Frame-Options DENY")
    if hsts and "max-age=" not in headers.get("Strict-Transport-Security", ""):
        found.append("no HSTS")
    if not hsts and "Strict-Transport-Security" in headers:
        found.append("HSTS without secure cookies")
    for cookie in headers.getlist("Set-Cookie"):
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        if hsts and "secure" not in flags:
            found.append(f"cookie not Secure: {cookie[:40]}")
        if "httponly" not in flags or "samesite=lax" not in flags:
            found.append(f"cookie flags: {cookie[:60]}")
    return found


def _answers(app: Any, org: Any, db: Any, client: Any) -> dict[str, Any]:
    """One response for every GET route, a download, an error of each kind, a static file."""
    where = targets(org, db)
    answers = {route.url: client.get(route.url) for route in routes(app, where, frozenset({"GET"}))}
    answers["attachment"] = client.get(f"/attachments/{org.attachments['sam']}")
    answers["404"] = client.get("/no/such/page")
    answers["405"] = client.put("/accounts")
    answers["400 csrf"] = client.post("/accounts/new", data={"name": "x"})
    answers["413"] = client.post("/import", data=b"x" * (21 * 1024 * 1024),
                                 content_type="application/octet-stream")
    answers["api 401"] = app.test_client().get("/api/v1/accounts")
    answers["api 404"] = client.get("/api/v1/accounts/not-an-id")
    answers["static"] = client.get("/static/citadel.js")
    return answers


def test_every_answer_carries_the_security_headers(app, org, db, login):
    wrong = []
    for username in ("sam", "dora", "otto", "ivan"):
        for name, response in _answers(app, org, db, login(username)).items():
            wrong += [f"{name} as {username}: {p}" for p in problems(response)]
    anonymous = app.test_client()
    for name, response in _answers(app, org, db, anonymous).items():
        wrong += [f"{name} anonymously: {p}" for p in problems(response)]
    assert wrong == [], "\n".join(wrong)


def test_session_cookies_are_secure_httponly_and_lax(app, org):
    client = app.test_client()
    login_page = client.get("/login")
    signed_in = client.post("/login", data={"username": "sam", "password": PASSWORD,
                                            "csrf_token": csrf_token(client)})
    for response in (login_page, signed_in):
        cookies = response.headers.getlist("Set-Cookie")
        assert cookies and all(not problems(response) for _ in cookies), cookies
    cookie = client.get_cookie("citadel")
    assert cookie.secure and cookie.http_only and cookie.same_site == "Lax"


def test_without_secure_cookies_there_is_no_hsts_but_the_rest_holds(org, data_dir, monkeypatch):
    """The plain-HTTP demo: cookies cannot be Secure there, and HSTS would lock it out."""
    monkeypatch.setenv("CITADEL_SECURE_COOKIES", "false")
    plain = create_app(Appliance.open(data_dir), {"TESTING": True})
    client = plain.test_client()
    page = client.get("/login")
    assert problems(page, hsts=False) == []
    signed_in = client.post("/login", data={"username": "sam", "password": PASSWORD,
                                            "csrf_token": csrf_token(client)})
    assert problems(signed_in, hsts=False) == []
    assert problems(client.get("/accounts"), hsts=False) == []
