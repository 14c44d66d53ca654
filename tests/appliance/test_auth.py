"""Signing in and out: passwords, sessions, rate limits, redirects, headers."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from audit.models import AuditEvent
from crm.identity import UserSession
from tests.factories import PASSWORD, csrf_token


def _client(app):
    client = app.test_client()
    return client


def _post_login(client, username, password, **extra):
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_token(client), **extra})


def test_sign_in_and_out(app, make, db):
    make.user("alice")
    client = _client(app)
    assert client.get("/").status_code == 302
    assert _post_login(client, "alice", PASSWORD).status_code == 302
    assert client.get("/").status_code == 200
    logout = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert logout.status_code == 302
    assert client.get("/").status_code == 302
    actions = db.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    assert actions[:1] == ["login"] and "logout" in actions


def test_wrong_password_is_refused_and_audited(app, make, db):
    make.user("alice")
    client = _client(app)
    response = _post_login(client, "alice", "wrong password!")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)
    assert _post_login(client, "nobody", "whatever").status_code == 401
    failed = db.scalars(select(AuditEvent).where(AuditEvent.action == "login.failed")).all()
    assert [e.user for e in failed] == ["alice", "nobody"]


def test_too_many_failures_are_rate_limited_even_with_the_right_password(app, make):
    make.user("alice")
    client = _client(app)
    for _ in range(5):
        assert _post_login(client, "alice", "wrong password!").status_code == 401
    response = _post_login(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert "wait 15 minutes" in response.get_data(as_text=True)


def test_session_cookie_is_replaced_at_sign_in(app, make):
    """No fixation: a session id planted before sign-in is never the signed-in one."""
    make.user("alice")
    client = _client(app)
    csrf_token(client)
    before = client.get_cookie("citadel").value
    _post_login(client, "alice", PASSWORD)
    after = client.get_cookie("citadel")
    assert after is not None and after.value != before
    assert after.secure and after.http_only and after.same_site == "Lax"


def test_revoked_session_is_worthless(app, make, db, login):
    alice = make.user("alice")
    client = login("alice")
    for row in db.scalars(select(UserSession).where(UserSession.user_id == alice.id)):
        row.revoked_at = datetime.now(UTC)
    db.commit()
    assert client.get("/").status_code == 302


def test_idle_session_expires(app, make, db, login):
    alice = make.user("alice")
    client = login("alice")
    for row in db.scalars(select(UserSession).where(UserSession.user_id == alice.id)):
        row.last_seen_at = datetime.now(UTC) - timedelta(hours=2)
    db.commit()
    assert client.get("/").status_code == 302


def test_no_open_redirect_after_sign_in(app, make):
    make.user("alice")
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example", "javascript:x"):
        client = _client(app)
        response = _post_login(client, "alice", PASSWORD, next=target)
        assert response.headers["Location"] in ("/", "http://localhost/", "https://localhost/")
    client = _client(app)
    response = _post_login(client, "alice", PASSWORD, next="/accounts?q=x")
    assert response.headers["Location"].endswith("/accounts?q=x")


def test_forms_without_csrf_token_are_refused(app, make, login):
    make.user("alice")
    client = login("alice")
    response = client.post("/accounts/new", data={"name": "Sneaky GmbH"})
    assert response.status_code == 400
    assert "Reload the page" in response.get_data(as_text=True)


def test_security_headers(app, make, login):
    make.user("alice")
    response = login("alice").get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=" in response.headers["Strict-Transport-Security"]
    assert response.headers["Cache-Control"] == "no-store"


def test_no_stack_trace_reaches_the_browser(app, make, login, monkeypatch):
    make.user("alice")
    client = login("alice")
    import crm.views.reports as reports_view

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(reports_view.reports, "run", explode)
    response = client.get("/reports/funnel")
    text = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "secret internals" not in text and "Traceback" not in text
    assert "Something went wrong" in text


@pytest.mark.parametrize(("role", "start"), [("security_officer", "/alerts"), ("it_admin", "/admin/users"),
                                             ("auditor", "/alerts")])
def test_people_without_client_records_start_at_their_first_tool(make, login, role, start):
    make.user("someone", roles=(role,))
    answer = login("someone").get("/")
    assert answer.status_code == 302 and answer.headers["Location"] == start
