"""Password guessing: the sign-in limit holds per user across addresses and per address
across users, spoofed forwarding headers do not reset it, spelling the name differently does
not get round it, and whoever is locked out learns nothing: not whether the user exists, not
whether the password was right."""

from __future__ import annotations

import re
from typing import Any

from appliance.app import create_app
from appliance.kernel.runtime import Appliance
from tests.factories import PASSWORD, csrf_token

LIMIT = 5  # login_max_failures by default


def attempt(app: Any, username: str, password: str, ip: str, **headers: str) -> Any:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    token = csrf_token(client)
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": token}, headers=headers)


def page(response: Any) -> tuple[int, str]:
    """What the person sees, without what differs by design (their own input, the form token)."""
    text = response.get_data(as_text=True)
    text = re.sub(r'name="csrf_token" value="[^"]*"', "", text)
    text = re.sub(r'(id="username"[^>]*value=")[^"]*"', r"\1", text)
    return response.status_code, text


def test_one_user_from_many_addresses_is_stopped(app, org):
    for n in range(LIMIT):
        assert attempt(app, "sam", "wrong guess", f"10.1.0.{n}").status_code == 401
    assert attempt(app, "sam", PASSWORD, "10.1.0.99").status_code == 429
    for spelling in ("SAM", " sam ", "Sam", "sam\t"):
        assert attempt(app, spelling, PASSWORD, "10.1.1.1").status_code in (401, 429), spelling
    assert attempt(app, "tina", PASSWORD, "10.1.0.98").status_code == 302  # others still can


def test_one_address_trying_many_users_is_stopped(app, org):
    for name in ("sam", "tina", "sven", "sue", "mona"):
        assert attempt(app, name, "wrong guess", "10.2.0.1").status_code == 401
    assert attempt(app, "dora", PASSWORD, "10.2.0.1").status_code == 429
    assert attempt(app, "dora", PASSWORD, "10.2.0.2").status_code == 302  # others still can


def test_forwarding_headers_do_not_reset_the_count(app, org, data_dir, monkeypatch):
    for n in range(LIMIT):
        attempt(app, f"nobody{n}", "x", "10.3.0.1", **{"X-Forwarded-For": f"192.0.2.{n}"})
    assert attempt(app, "dora", PASSWORD, "10.3.0.1",
                   **{"X-Forwarded-For": "192.0.2.200"}).status_code == 429
    # behind the appliance's proxy, only the address the proxy saw counts: the proxy appends
    # it to whatever the client claimed
    monkeypatch.setenv("CITADEL_TRUSTED_PROXIES", "1")
    proxied = create_app(Appliance.open(data_dir), {"TESTING": True})
    for n in range(LIMIT):
        attempt(proxied, "sven", "wrong guess", "127.0.0.1",
                **{"X-Forwarded-For": f"192.0.2.{n}, 10.4.0.1"})
    assert attempt(proxied, "mona", PASSWORD, "127.0.0.1",
                   **{"X-Forwarded-For": "192.0.2.250, 10.4.0.1"}).status_code == 429
    assert attempt(proxied, "mona", PASSWORD, "127.0.0.1",
                   **{"X-Forwarded-For": "10.4.0.2"}).status_code == 302


def test_a_locked_out_guesser_learns_nothing(app, org):
    # before any lock: a wrong password and an unknown user look the same
    assert page(attempt(app, "sam", "wrong guess", "10.5.0.1")) == \
        page(attempt(app, "nosuchuser", "wrong guess", "10.5.0.2"))
    # lock an address, then ask about an existing user (right and wrong password) and a
    # made-up one: the same answer each time
    for _ in range(LIMIT):
        attempt(app, "tina", "wrong guess", "10.6.0.1")
    answers = {page(attempt(app, name, password, "10.6.0.1")) for name, password in (
        ("sam", PASSWORD), ("sam", "wrong guess"), ("nosuchuser", "whatever"), ("tina", PASSWORD))}
    assert len(answers) == 1 and next(iter(answers))[0] == 429
    # lock a user name, existing or not: from a fresh address, the same answer
    for n in range(LIMIT):
        attempt(app, "sven", "wrong guess", f"10.7.0.{n}")
        attempt(app, "ghost", "wrong guess", f"10.8.0.{n}")
    assert page(attempt(app, "sven", PASSWORD, "10.9.0.1")) == \
        page(attempt(app, "ghost", PASSWORD, "10.9.0.2"))
