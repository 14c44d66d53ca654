"""The JSON API: tokens, pagination, one error shape, bad bodies."""

import pytest
from sqlalchemy import select

from appliance.auth import issue_token
from audit.models import AuditEvent
from crm.people import find_user
from dlp.watermark import plain


@pytest.fixture
def api(app, make, db):
    """A client that sends alice's bearer token."""
    make.user("alice")
    token = issue_token(db, find_user(db, "alice"), "test")
    db.commit()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def test_requests_without_a_valid_token_get_401_json(app, api):
    anonymous = app.test_client()
    response = anonymous.get("/api/v1/accounts")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthenticated"
    forged = anonymous.get("/api/v1/accounts", headers={"Authorization": "Bearer ctl_forged"})
    assert forged.status_code == 401 and "revoked" in forged.json["error"]["message"]


def test_crud_round_trip(api, db):
    created = api.post("/api/v1/accounts", json={"name": "Polar AB", "country": "se",
                                                 "email": "hej@polar.example"})
    assert created.status_code == 201
    account = created.json
    assert account["country"] == "SE" and account["email"] == "hej@polar.example"
    contact = api.post("/api/v1/contacts", json={"account_id": account["id"], "first_name": "Liv",
                                                 "last_name": "Berg"})
    assert contact.status_code == 201
    page = api.get("/api/v1/accounts?q=polar")
    assert page.json["total"] == 1 and page.json["items"][0]["name"] == "Polar AB"
    assert set(page.json) == {"items", "total", "page", "per_page"}
    patched = api.patch(f"/api/v1/accounts/{account['id']}", json={"city": "Malmö"})
    assert patched.status_code == 200 and patched.json["city"] == "Malmö"
    assert api.delete(f"/api/v1/accounts/{account['id']}").status_code == 204
    assert api.get(f"/api/v1/accounts/{account['id']}").status_code == 404
    reads = db.scalars(select(AuditEvent).where(AuditEvent.action == "api.read")).all()
    assert reads and all(e.user == "alice" for e in reads)


@pytest.mark.parametrize("body, field", [
    ({"name": 42}, "name"),
    ({"name": "X", "email": ["a"]}, "email"),
    ({"name": "X", "owner_id": "me"}, "owner_id"),
    ({"name": "X", "password_hash": "x"}, "password_hash"),
    ({}, "name"),
])
def test_wrong_types_and_unknown_fields_get_422_with_the_field(api, body, field):
    response = api.post("/api/v1/accounts", json=body)
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]


def test_non_object_bodies_and_absurd_pages(api):
    assert api.post("/api/v1/accounts", data="nope", content_type="text/plain").status_code == 400
    assert api.post("/api/v1/accounts", json=[1, 2]).status_code == 400
    big = api.get("/api/v1/accounts?per_page=1000000")
    assert big.status_code == 400 and "per_page" in big.json["error"]["message"]
    assert api.get("/api/v1/accounts/not-an-id").status_code == 404
    assert api.get("/api/v1/nothing-here").status_code == 404
    assert api.get("/api/v1/nothing-here").json["error"]["code"] == "not_found"


def test_session_callers_need_the_csrf_header_to_change_things(app, make, login):
    make.user("alice")
    client = login("alice")
    assert client.get("/api/v1/accounts").status_code == 200
    refused = client.post("/api/v1/accounts", json={"name": "Via session"})
    assert refused.status_code == 400 and refused.json["error"]["code"] == "csrf"
    allowed = client.post("/api/v1/accounts", json={"name": "Via session"},
                          headers={"X-CSRFToken": client.csrf})
    assert allowed.status_code == 201


def test_openapi_document_describes_every_resource(app):
    doc = app.test_client().get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.")
    for path in ("/accounts", "/accounts/{record_id}", "/contacts", "/deals", "/activities",
                 "/exports", "/reports", "/users"):
        assert path in doc["paths"]


def test_export_through_the_api(api, make, db):
    alice = find_user(db, "alice")
    make.account(alice, name="Exported Oy")
    response = api.post("/api/v1/exports", json={"resource": "accounts", "q": "exported"})
    assert response.status_code == 200
    assert "Exported Oy" in plain(response.get_data(as_text=True))  # marks undone
    assert response.headers["X-Export-Rows"] == "1"
    assert api.get("/api/v1/exports").json["total"] == 1


def test_reports_through_the_api(api, make, db):
    alice = find_user(db, "alice")
    make.deal(make.account(alice), alice, stage="won", amount=5000)
    funnel = api.get("/api/v1/reports/funnel").json
    won = next(r for r in funnel["rows"] if r["stage"] == "won")
    assert won["count"] == 1 and won["amount"] == "5000.00"
