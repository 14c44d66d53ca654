"""When the database goes away (or fills up), people get a clear 503, never a 500."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import OperationalError

from appliance.kernel.db import make_engine, make_session_factory
from appliance.kernel.errors import DatabaseUnavailable, StorageFull
from appliance.kernel.http import database_trouble

NOWHERE = "postgresql://postgres@127.0.0.1:1/gone"  # nothing listens on port 1


@pytest.fixture
def database_gone(app):
    """From now on every request's session reaches a server that is not there."""
    working = app.extensions["citadel.sessions"]
    engine = make_engine(NOWHERE, connect_args={"connect_timeout": 2})
    app.extensions["citadel.sessions"] = make_session_factory(engine)
    yield
    app.extensions["citadel.sessions"] = working
    engine.dispose()


def test_signed_in_page_says_the_database_is_unreachable(app, make, login, database_gone_later):
    seller = make.user("alice")
    make.account(seller, name="Nordwind GmbH")
    browser = login("alice")
    database_gone_later()
    page = browser.get("/accounts")
    assert page.status_code == 503
    text = page.get_data(as_text=True)
    assert "database cannot be reached" in text and "tell IT" in text
    assert "Traceback" not in text and "sqlalchemy" not in text.lower()


@pytest.fixture
def database_gone_later(app, request):
    def go() -> None:
        request.getfixturevalue("database_gone")
    return go


def test_api_answers_503_with_its_error_shape(app, database_gone):
    answer = app.test_client().get("/api/v1/accounts", headers={"Authorization": "Bearer x"})
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "database_unavailable"


def test_health_check_says_unreachable(app, database_gone):
    answer = app.test_client().get("/healthz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["database"] == "unreachable"


def test_a_full_disk_is_named_as_such():
    full = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    assert isinstance(database_trouble(full), StorageFull)
    gone = OperationalError("SELECT", {}, sqlite3.OperationalError("unable to open database"))
    trouble = database_trouble(gone)
    assert isinstance(trouble, DatabaseUnavailable) and not isinstance(trouble, StorageFull)
    assert database_trouble(ValueError("not the database")) is None
