"""Cross-site request forgery: every state-changing route of the app, found in its url_map,
refuses a request from a signed-in browser that lacks the session's CSRF token, and the API
refuses session calls without the X-CSRFToken header. (That no GET changes anything is
checked by the page sweep in test_xss.py.)"""

from __future__ import annotations

from sqlalchemy import func, select

from audit.models import AuditEvent
from tests.factories import csrf_token
from tests.security.routes import CHANGING, routes, targets

REFUSAL = "did not come from Citadel"
def _events(db) -> int:
    db.rollback()
    return db.scalar(select(func.count()).select_from(AuditEvent))


def test_every_form_refuses_a_post_without_the_sessions_token(app, org, db, login):
    victim = login("dora")
    stranger = login("mona")  # a valid token, but of another session
    forged = {"missing": {}, "made up": {"csrf_token": "IjEyMyI.forged.token"},
              "another session's": {"csrf_token": stranger.csrf}}
    web = [r for r in routes(app, targets(org, db), CHANGING) if not r.url.startswith("/api/")]
    before, wrong = _events(db), []
    for route in web:
        for method in route.methods:
            for kind, data in forged.items():
                response = victim.open(route.url, method=method, data={**data, "name": "Forged"})
                if response.status_code != 400 or REFUSAL not in response.get_data(as_text=True):
                    wrong.append(f"{method} {route.rule} with {kind} token: {response.status_code}")
    assert wrong == []
    assert _events(db) == before, "a forged request reached a view"
    assert len(web) >= 35, [r.rule for r in web]


def test_sign_in_sign_out_and_card_forms_need_the_token_too(org, client, login):
    csrf_token(client)  # an anonymous session exists, but its token is not sent
    assert client.post("/login", data={"username": "sam", "password": "x"}).status_code == 400
    signed_in = login("sam")
    for path in ("/logout", "/session/lock", "/login/card"):
        response = signed_in.post(path, data={})
        assert response.status_code == 400 and REFUSAL in response.get_data(as_text=True), path
    assert signed_in.get("/").status_code == 200, "a forged sign-out ended the session"


def test_api_refuses_session_changes_without_the_csrf_header(app, org, db, login):
    session, stranger = login("dora"), login("mona")
    api = [r for r in routes(app, targets(org, db), CHANGING) if r.url.startswith("/api/")]
    before, wrong = _events(db), []
    for route in api:
        for method in route.methods:
            for headers in ({}, {"X-CSRFToken": "forged"}, {"X-CSRFToken": stranger.csrf}):
                response = session.open(route.url, method=method, json={"name": "Forged"},
                                        headers=headers)
                body = response.get_json(silent=True) or {}
                if response.status_code != 400 or body.get("error", {}).get("code") != "csrf":
                    wrong.append(f"{method} {route.url} {headers}: {response.status_code}")
    assert wrong == []
    assert _events(db) == before
    assert len(api) >= 12


def test_api_takes_session_changes_with_the_header_and_bearer_calls_without_it(app, org, db,
                                                                                login):
    session = login("dora")
    account = org.records[next(iter(org.records))][0]
    ok = session.patch(f"/api/v1/accounts/{account}", json={"city": "Oslo"},
                       headers={"X-CSRFToken": session.csrf})
    assert ok.status_code == 200 and ok.json["city"] == "Oslo"
    bearer = org.api(app, "dora").patch(f"/api/v1/accounts/{account}", json={"city": "Bergen"})
    assert bearer.status_code == 200 and bearer.json["city"] == "Bergen"
