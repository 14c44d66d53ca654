"""The card agent over real HTTP, with virtual cards behind pcscd + vpcd."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509

from appliance.cards.agent import CardAgent
from appliance.cards.challenge import ChallengeIssuer, MemoryNonceLedger
from appliance.cards.spec import Slot, key_fingerprint
from appliance.cards.stack import PcscStack
from appliance.cards.virtual import VirtualCard
from tests.cards.conftest import PIN

ORIGIN = "https://citadel.example.com"


@pytest.fixture
def agent(stack: PcscStack) -> Iterator[CardAgent]:
    server = CardAgent([ORIGIN, "http://127.0.0.1:8000"], reader=stack.readers[0], port=0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def call(agent: CardAgent, method: str, path: str, body: Any = None,
         origin: str | None = ORIGIN, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=timeout)
    sent = {"Host": f"127.0.0.1:{agent.port}", **(headers or {})}
    if origin is not None:
        sent["Origin"] = origin
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    connection.request(method, path, body=payload, headers=sent)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response.status, dict(response.headers), json.loads(raw) if raw else None


def test_status_reports_the_card(agent: CardAgent, card: VirtualCard) -> None:
    status, headers, body = call(agent, "GET", "/status")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert body["card_present"] is True
    assert body["card"] == {"card_id": card.card_id, "pin_tries_left": 3}
    assert body["reader"] == agent.reader


@pytest.mark.parametrize("origin", ["https://evil.example", "null", None,
                                    "https://citadel.example.com.evil.example",
                                    "http://citadel.example.com"])
def test_other_origins_are_refused_without_touching_the_card(
        agent: CardAgent, card: VirtualCard, origin: str | None) -> None:
    seen = card.applet.commands_seen
    for method, path, body in (("GET", "/status", None), ("GET", "/presence", None),
                               ("POST", "/sign", {"challenge": "x", "pin": PIN})):
        status, headers, answer = call(agent, method, path, body, origin=origin)
        assert status == 403
        assert answer["error"]["code"] == "origin_refused"
        assert "Access-Control-Allow-Origin" not in headers
    assert card.applet.commands_seen == seen


def test_foreign_host_header_is_refused(agent: CardAgent, card: VirtualCard) -> None:
    # What a DNS-rebinding page would send, even with a matching Origin forged elsewhere.
    status, _, _ = call(agent, "GET", "/status", headers={"Host": f"evil.example:{agent.port}"})
    assert status == 403


def test_preflight(agent: CardAgent) -> None:
    ask = {"Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type",
           "Access-Control-Request-Private-Network": "true"}
    status, headers, _ = call(agent, "OPTIONS", "/sign", origin=ORIGIN, headers=ask)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert headers["Access-Control-Allow-Private-Network"] == "true"
    status, headers, _ = call(agent, "OPTIONS", "/sign", origin="https://evil.example",
                              headers=ask)
    assert status == 403 and "Access-Control-Allow-Origin" not in headers


def test_login_round_trip_through_the_agent(agent: CardAgent, card: VirtualCard) -> None:
    issuer, ledger = ChallengeIssuer(secrets.token_bytes(32)), MemoryNonceLedger()
    token = issuer.issue("session-1", ORIGIN)
    status, headers, body = call(agent, "POST", "/sign", {"challenge": token, "pin": PIN})
    assert status == 200, body
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    certificate = x509.load_der_x509_certificate(base64.b64decode(body["certificate"]))
    enrolled = card.state.keys[Slot.AUTHENTICATION].public_key()
    assert body["key_fingerprint"] == key_fingerprint(enrolled)
    assert key_fingerprint(certificate.public_key()) == key_fingerprint(enrolled)
    assert body["card_id"] == card.card_id
    assert body["algorithm"] == "ecdsa-p256-sha256"
    issuer.verify(token, base64.b64decode(body["signature"]), enrolled, "session-1", ORIGIN,
                  ledger.claim)


def test_wrong_pin_through_the_agent(agent: CardAgent, card: VirtualCard) -> None:
    token = ChallengeIssuer(secrets.token_bytes(32)).issue("s", ORIGIN)
    status, _, body = call(agent, "POST", "/sign", {"challenge": token, "pin": "000000"})
    assert status == 401
    assert body["error"]["code"] == "wrong_pin" and body["error"]["tries_left"] == 2
    assert "000000" not in json.dumps(body)


def test_challenge_for_another_allowed_site_is_refused(agent: CardAgent,
                                                       card: VirtualCard) -> None:
    seen = card.applet.commands_seen
    token = ChallengeIssuer(secrets.token_bytes(32)).issue("s", "http://127.0.0.1:8000")
    status, _, body = call(agent, "POST", "/sign", {"challenge": token, "pin": PIN})
    assert status == 400 and "another site" in body["error"]["message"]
    assert card.applet.commands_seen == seen


@pytest.mark.parametrize(("body", "headers"), [
    ({"challenge": "not-a-token", "pin": PIN}, None),
    ({"pin": PIN}, None),
    (["challenge"], None),
    ({"challenge": "x", "pin": PIN}, {"Content-Type": "text/plain"}),
])
def test_bad_sign_requests(agent: CardAgent, card: VirtualCard, body: Any,
                           headers: dict[str, str] | None) -> None:
    status, _, answer = call(agent, "POST", "/sign", body, headers=headers)
    assert status in (400, 401)
    assert answer["error"]["message"]


def test_sign_without_a_card(agent: CardAgent, card: VirtualCard, stack: PcscStack) -> None:
    stack.remove(card)
    token = ChallengeIssuer(secrets.token_bytes(32)).issue("s", ORIGIN)
    status, _, body = call(agent, "POST", "/sign", {"challenge": token, "pin": PIN})
    assert status == 409 and body["error"]["code"] == "card_absent"
    status, _, body = call(agent, "GET", "/status")
    assert status == 200 and body["card_present"] is False and body["card"] is None


def test_presence_long_poll_notices_removal(agent: CardAgent, card: VirtualCard) -> None:
    _, _, before = call(agent, "GET", "/presence")
    assert before["card_present"] is True
    answers: list[Any] = []
    poll = threading.Thread(target=lambda: answers.append(
        call(agent, "GET", f"/presence?since={before['events']}&wait=20")))
    poll.start()
    card.remove()
    poll.join(25)
    status, _, after = answers[0]
    assert status == 200
    assert after["card_present"] is False and after["events"] != before["events"]


def test_presence_answers_at_once_when_the_client_is_behind(agent: CardAgent,
                                                            card: VirtualCard) -> None:
    _, _, now = call(agent, "GET", "/presence")
    _, _, answer = call(agent, "GET", f"/presence?since={now['events'] - 1}&wait=20")
    assert answer == now


def test_unknown_path(agent: CardAgent) -> None:
    status, _, body = call(agent, "GET", "/admin")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_agent_binds_loopback_only(agent: CardAgent) -> None:
    assert agent.server_address[0] == "127.0.0.1"
