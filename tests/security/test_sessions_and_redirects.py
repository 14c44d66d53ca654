"""Session fixation and open redirects.

A session cookie an attacker obtained or planted before sign-in is worthless after it; a
signed-in cookie copied before sign-out is worthless after it; a forged or tampered cookie
signs nobody in. No redirect the app answers with, after sign-in or anywhere else, leaves
the site, however the target is spelled.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

from tests.factories import PASSWORD, csrf_token
from tests.security.routes import CHANGING, routes, targets

#: Ways to spell "somewhere else" that browsers follow.
OFFSITE = (
    "https://evil.example/", "//evil.example", "///evil.example", "/\\evil.example",
    "\\\\evil.example", "/\\/evil.example", "\\/evil.example", "/\t/evil.example",
    "/\n/evil.example", " //evil.example", "https:evil.example", "http:/evil.example",
    "javascript:alert(document.domain)", "data:text/html,<script>x</script>",
    "http://localhost@evil.example", "//evil.example@localhost", "//evil%2Eexample",
    "https://evil.example\\@localhost", "/%2F%2Fevil.example", "\u3000//evil.example",
)


def on_site(location: str | None) -> bool:
    """Would a browser following this Location stay on the site? (Browsers drop tabs and
    new lines and read backslashes as slashes.)"""
    if location is None:
        return True
    cleaned = "".join(c for c in location if c not in "\t\r\n").replace("\\", "/").strip()
    target = urlsplit(urljoin("http://localhost/somewhere/", cleaned))
    return target.scheme in ("http", "https") and target.netloc == "localhost"


def _login(client: Any, username: str = "sam", **extra: str) -> Any:
    return client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf_token": csrf_token(client), **extra})


def _cookie(client: Any) -> str:
    return client.get_cookie("citadel").value


def _with_cookie(app: Any, value: str) -> Any:
    client = app.test_client()
    client.set_cookie("citadel", value)
    return client


# -- fixation ------------------------------------------------------------------------
def test_a_cookie_planted_before_sign_in_is_worthless_after_it(app, org):
    victim = app.test_client()
    csrf_token(victim)
    planted = _cookie(victim)  # the attacker holds a copy
    assert _login(victim).status_code == 302
    assert _cookie(victim) != planted
    assert victim.get("/").status_code == 200
    attacker = _with_cookie(app, planted)
    assert attacker.get("/").status_code == 302
    assert attacker.get("/api/v1/users/me").status_code == 401


def test_a_cookie_copied_before_sign_out_is_worthless_after_it(app, org):
    victim = app.test_client()
    _login(victim)
    copied = _cookie(victim)
    assert _with_cookie(app, copied).get("/").status_code == 200
    victim.post("/logout", data={"csrf_token": csrf_token(victim, "/")})
    assert _with_cookie(app, copied).get("/").status_code == 302


def test_signing_in_again_gives_a_new_session(app, org):
    client = app.test_client()
    _login(client)
    first = _cookie(client)
    client.post("/login", data={"username": "tina", "password": PASSWORD,
                                "csrf_token": csrf_token(client, "/")})
    assert _cookie(client) != first
    me = client.get("/api/v1/users/me")
    assert me.status_code == 200 and me.json["username"] == "tina"


def test_forged_and_tampered_cookies_sign_nobody_in(app, org):
    from flask.sessions import SecureCookieSessionInterface
    from itsdangerous import URLSafeTimedSerializer

    client = app.test_client()
    _login(client)
    value = _cookie(client)
    flipped = value[:-3] + ("A" if value[-3] != "A" else "B") + value[-2:]
    wrong_key = URLSafeTimedSerializer(
        "not the secret", salt="cookie-session", serializer=SecureCookieSessionInterface.serializer,
        signer_kwargs={"key_derivation": "hmac", "digest_method": SecureCookieSessionInterface.digest_method})
    interface = SecureCookieSessionInterface()
    right_key = interface.get_signing_serializer(app)
    guessed_sid = right_key.dumps({"sid": "A" * 43})  # a well-signed cookie naming no session
    for forged in (flipped, wrong_key.dumps({"sid": "x"}), "garbage", guessed_sid):
        attacker = _with_cookie(app, forged)
        assert attacker.get("/").status_code == 302
        assert attacker.get("/api/v1/users/me").status_code == 401


# -- open redirects -----------------------------------------------------------------
def test_sign_in_never_sends_anyone_off_site(app, org):
    wrong = []
    for target in OFFSITE:
        client = app.test_client()
        response = _login(client, next=target)
        if response.status_code != 302 or not on_site(response.headers.get("Location")):
            wrong.append(f"POST next={target!r}: {response.headers.get('Location')}")
        again = client.get("/login", query_string={"next": target})
        if not on_site(again.headers.get("Location")):
            wrong.append(f"GET next={target!r}: {again.headers.get('Location')}")
    assert wrong == []
    client = app.test_client()
    assert _login(client, next="/accounts?q=x").headers["Location"].endswith("/accounts?q=x")


def test_the_sign_in_page_keeps_only_a_path_to_come_back_to(app, org):
    client = app.test_client()
    bounced = client.get("//evil.example/accounts")
    assert on_site(bounced.headers.get("Location"))
    response = _login(client, next="//evil.example/accounts")
    assert on_site(response.headers["Location"])


def test_no_changing_route_redirects_off_site(app, org, db, login):
    """Every POST route, with every parameter a redirect could be read from set off-site."""
    client = login("dora")
    evil = "https://evil.example/"
    wrong, tried = [], 0
    for route in routes(app, targets(org, db), CHANGING):
        if route.url.startswith("/api/") or route.endpoint in ("auth.logout", "auth.login"):
            continue
        for method in route.methods:
            response = client.open(route.url + "?next=" + evil, method=method, headers={
                "Referer": evil}, data={"csrf_token": client.csrf, "next": evil, "return": evil,
                                        "return_to": evil, "redirect": evil, "url": evil})
            tried += 1
            if response.status_code in (301, 302, 303, 307, 308) and \
                    not on_site(response.headers.get("Location")):
                wrong.append(f"{method} {route.rule}: {response.headers.get('Location')}")
    assert wrong == []
    assert tried >= 30
    assert on_site(client.post("/logout", data={"csrf_token": client.csrf, "next": evil})
                   .headers.get("Location"))


def test_no_page_redirects_in_a_loop(app, org, db, login):
    """Every GET route, followed to its end, anonymously and as each kind of person (a loop
    makes the browser give up: ERR_TOO_MANY_REDIRECTS)."""
    from werkzeug.test import ClientRedirectError

    where = targets(org, db)
    wrong = []
    for who, client in (("anonymous", app.test_client()), *((n, login(n)) for n in (
            "sam", "dora", "otto", "ivan"))):
        for route in routes(app, where, frozenset({"GET"})):
            try:
                response = client.get(route.url, follow_redirects=True)
            except ClientRedirectError as exc:
                wrong.append(f"{route.url} as {who}: {exc}")
                continue
            if len(response.history) > 2 or response.status_code >= 500:
                wrong.append(f"{route.url} as {who}: {len(response.history)} redirects, "
                             f"{response.status_code}")
    assert wrong == [], "\n".join(wrong)
