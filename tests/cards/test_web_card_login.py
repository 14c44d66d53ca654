"""Signing in to the web app with a smart card: real pcscd + vpcd + virtual card + card agent.

Scripted the way an attacker would try it: wrong and blocked PINs, a revoked card, a
replayed signature, a signature made for another session or site, garbage, an emergency
code used twice, a card pulled out mid-session.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from appliance.card_login import enroll, issue_emergency_code, issuer
from appliance.cards.agent import CardAgent
from appliance.cards.challenge import ChallengeIssuer, parse_token
from appliance.cards.enrolment import read_card_for_enrolment
from appliance.cards.piv import PivSession
from appliance.cards.spec import Slot, key_fingerprint
from audit.models import AuditEvent
from crm.identity import EmergencyCode, Role
from tests.cards.conftest import PIN
from tests.cards.test_agent import call
from tests.factories import PASSWORD, csrf_token

ORIGIN = "http://localhost"  # the Flask test client's own origin


@pytest.fixture
def agent(stack) -> Iterator[CardAgent]:
    server = CardAgent([ORIGIN], reader=stack.readers[0], port=0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def alice(make, db, card, reader_of):
    """Alice, staff, whose role requires a card; her virtual card is enrolled."""
    db.scalars(select(Role).where(Role.name == "staff")).one().card_required = True
    db.commit()
    user = make.user("alice")
    enroll(db, user, read_card_for_enrolment(reader_of(card), PIN), "ian")
    db.commit()
    return user


def _browser(app):
    client = app.test_client()
    return client


def _password_step(app):
    client = _browser(app)
    response = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 302 and response.headers["Location"].endswith("/login/card")
    page = client.get("/login/card").get_data(as_text=True)
    challenge = re.search(r'data-challenge="([^"]+)"', page).group(1)
    client.csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)
    return client, challenge


def _sign(agent, challenge, pin=PIN):
    return call(agent, "POST", "/sign", {"challenge": challenge, "pin": pin}, origin=ORIGIN)


def _submit(client, challenge, signed):
    return client.post("/login/card", json={"challenge": challenge, "signature": signed["signature"],
                                            "key_fingerprint": signed["key_fingerprint"]},
                       headers={"X-CSRFToken": client.csrf})


def _actions(db):
    return db.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()


def test_password_alone_opens_nothing_then_the_card_signs_in(app, alice, agent, db):
    client, challenge = _password_step(app)
    assert client.get("/accounts").status_code == 302
    assert client.get("/api/v1/accounts").status_code == 401
    status, _, signed = _sign(agent, challenge)
    assert status == 200, signed
    response = _submit(client, challenge, signed)
    assert response.status_code == 200 and response.json["ok"]
    assert client.get("/accounts").status_code == 200
    actions = _actions(db)
    assert actions.index("login.password") < actions.index("login")


def test_wrong_and_blocked_pin_let_nobody_in(app, alice, agent, card):
    client, challenge = _password_step(app)
    status, _, body = _sign(agent, challenge, pin="000000")
    assert status == 401 and "tries left" in body["error"]["message"]
    for _ in range(card.state.pin_tries_left):
        _sign(agent, challenge, pin="000000")
    status, _, body = _sign(agent, challenge)
    assert status in (401, 403, 423) and "blocked" in body["error"]["message"].lower()
    assert client.get("/accounts").status_code == 302


def test_a_signature_is_good_once_and_only_for_its_session(app, alice, agent, db):
    first, challenge = _password_step(app)
    _, _, signed = _sign(agent, challenge)
    other, _ = _password_step(app)
    # the same signature in another session: bound to the first session's cookie
    assert _submit(other, challenge, signed).status_code == 401
    assert _submit(first, challenge, signed).status_code == 200
    # and never twice
    replay, _ = _password_step(app)
    assert _submit(replay, challenge, signed).status_code == 401
    failures = db.scalars(select(AuditEvent).where(AuditEvent.action == "login.failed")).all()
    assert len(failures) == 2


def test_a_challenge_for_another_site_is_refused(app, alice, agent, appliance, card, reader_of):
    # the agent refuses to sign for a site other than the page asking
    foreign = ChallengeIssuer(b"k" * 32).issue("whatever", "https://evil.example")
    status, _, body = _sign(agent, foreign)
    assert status == 400 and "another site" in body["error"]["message"]
    # a card made to sign a genuine challenge for another origin (a rogue agent) fails here
    client, _ = _password_step(app)
    forged = issuer(appliance.settings).issue("whatever", "https://evil.example")
    with PivSession.open(reader_of(card)) as piv:
        piv.verify_pin(PIN)
        cert = piv.read_certificate(Slot.AUTHENTICATION)
        signature = piv.sign(parse_token(forged).to_be_signed(), Slot.AUTHENTICATION, cert.public_key())
    signed = {"signature": base64.b64encode(signature).decode(),
              "key_fingerprint": key_fingerprint(cert.public_key())}
    assert _submit(client, forged, signed).status_code == 401


def test_garbage_and_revoked_cards_are_refused(app, alice, agent, db):
    client, challenge = _password_step(app)
    _, _, signed = _sign(agent, challenge)
    garbage = dict(signed, signature=base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode())
    assert _submit(client, challenge, garbage).status_code == 401
    assert client.post("/login/card", json={"challenge": challenge, "signature": "%%%",
                                            "key_fingerprint": "x"},
                       headers={"X-CSRFToken": client.csrf}).status_code == 401
    from crm.revocation import revoke_cards

    revoke_cards(db, alice.id, "ian")
    db.commit()
    client, challenge = _password_step(app)
    _, _, signed = _sign(agent, challenge)
    assert _submit(client, challenge, signed).status_code == 401


def test_removing_the_card_locks_the_session_until_the_same_card_signs(app, alice, agent, db):
    client, challenge = _password_step(app)
    _, _, signed = _sign(agent, challenge)
    _submit(client, challenge, signed)
    assert client.get("/").status_code == 200
    locked = client.post("/session/lock", headers={"X-CSRFToken": csrf_token(client, "/")})
    assert locked.status_code == 200
    assert client.get("/accounts").headers["Location"].endswith("/login/card")
    page = client.get("/login/card").get_data(as_text=True)
    assert "Session locked" in page and "emergency" not in page.lower()
    challenge = re.search(r'data-challenge="([^"]+)"', page).group(1)
    client.csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)
    _, _, signed = _sign(agent, challenge)
    assert _submit(client, challenge, signed).status_code == 200
    assert client.get("/accounts").status_code == 200
    assert {"card.removed", "session.unlock"} <= set(_actions(db))


def test_emergency_code_works_once_and_expires(app, alice, db):
    code = issue_emergency_code(db, alice, "sofia", minutes=30)
    db.commit()
    client, _ = _password_step(app)
    response = client.post("/login/card", data={"emergency_code": code, "csrf_token": client.csrf})
    assert response.status_code == 302
    assert client.get("/accounts").status_code == 200
    again, _ = _password_step(app)
    assert again.post("/login/card", data={"emergency_code": code,
                                           "csrf_token": again.csrf}).status_code == 401
    late = issue_emergency_code(db, alice, "sofia", minutes=1)
    db.scalars(select(EmergencyCode).where(EmergencyCode.used_at.is_(None))).one().expires_at = \
        datetime.now(UTC) - timedelta(seconds=1)
    db.commit()
    third, _ = _password_step(app)
    assert third.post("/login/card", data={"emergency_code": late,
                                           "csrf_token": third.csrf}).status_code == 401
    issued = db.scalars(select(AuditEvent).where(AuditEvent.action == "card.emergency_code")).all()
    assert len(issued) == 2


def test_a_client_certificate_verified_by_nginx_is_the_card_step(app, alice, appliance, card, reader_of, db):
    """With [mtls] on, the proxy's verified PIV certificate of the user's own card suffices."""
    from urllib.parse import quote

    from cryptography.hazmat.primitives import serialization

    from appliance.cards.piv import PivSession
    from appliance.cards.spec import Slot

    with PivSession.open(reader_of(card)) as piv:
        pem = piv.read_certificate(Slot.AUTHENTICATION).public_bytes(serialization.Encoding.PEM).decode()
    appliance.settings.values["mtls"] = {"enabled": True}
    try:
        client = _browser(app)
        headers = {"X-Client-Cert-Verify": "SUCCESS", "X-Client-Cert": quote(pem)}
        response = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                               "csrf_token": csrf_token(client)}, headers=headers)
        assert response.status_code == 302 and not response.headers["Location"].endswith("/login/card")
        forged = _browser(app)
        response = forged.post("/login", data={"username": "alice", "password": PASSWORD,
                                               "csrf_token": csrf_token(forged)},
                               headers={"X-Client-Cert-Verify": "FAILED", "X-Client-Cert": quote(pem)})
        assert response.headers["Location"].endswith("/login/card")
    finally:
        appliance.settings.values.pop("mtls")
    last = db.scalars(select(AuditEvent).where(AuditEvent.action == "login")).all()[-1]
    assert "client certificate" in last.meta
