"""Card login challenges: layout, issue, and verification against real card signatures."""

from __future__ import annotations

import base64
import secrets
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from appliance.cards import challenge as ch
from appliance.cards.challenge import ChallengeIssuer, MemoryNonceLedger
from appliance.cards.errors import UnsupportedAlgorithm
from appliance.cards.piv import PivSession
from appliance.cards.spec import Slot
from appliance.cards.virtual import VirtualCard
from tests.cards.conftest import PIN

ORIGIN = "https://crm.example.com"
SESSION = "pre-auth-session-42"


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(clock: Clock) -> ChallengeIssuer:
    return ChallengeIssuer(secrets.token_bytes(32), ttl=120, clock=clock)


@pytest.fixture
def ledger(clock: Clock) -> MemoryNonceLedger:
    return MemoryNonceLedger(clock)


def card_sign(token: str, reader: str | None = None) -> tuple[bytes, object]:
    """What the agent does: the card signs the token's to-be-signed bytes."""
    with PivSession.open(reader) as piv:
        piv.verify_pin(PIN)
        public_key = piv.read_certificate().public_key()
        return piv.sign(ch.parse_token(token).to_be_signed(), public_key=public_key), public_key


def test_layout_is_as_documented(issuer: ChallengeIssuer, clock: Clock) -> None:
    token = issuer.issue(SESSION, "HTTPS://CRM.example.com:443/")
    tbs = ch.parse_token(token).to_be_signed()
    assert tbs[:22] == b"citadel card login v1\x00"
    nonce, issued, expires, session, origin_len = struct.unpack(">32sQQ32sH", tbs[22:104])
    assert (issued, expires) == (int(clock.now), int(clock.now) + 120)
    assert session == ch.session_binding(SESSION)
    assert tbs[104:] == ORIGIN.encode() and origin_len == len(ORIGIN)
    assert ch.nonce_id(token) == nonce.hex()
    assert SESSION.encode() not in base64.urlsafe_b64decode(token.split(".")[0] + "==")


@pytest.mark.parametrize("fixture", ["card", "rsa_card"])
def test_card_login_round_trip(request, fixture: str, issuer: ChallengeIssuer,
                               ledger: MemoryNonceLedger, reader_of) -> None:
    card: VirtualCard = request.getfixturevalue(fixture)
    token = issuer.issue(SESSION, ORIGIN)
    signature, _ = card_sign(token, reader_of(card))
    enrolled = card.state.keys[Slot.AUTHENTICATION].public_key()
    login = issuer.verify(token, signature, enrolled, SESSION, ORIGIN, ledger.claim)
    assert login.nonce_id == ch.nonce_id(token)
    assert login.algorithm.label == ("p256" if fixture == "card" else "rsa2048")


def test_replayed_challenge_is_refused(card: VirtualCard, issuer: ChallengeIssuer,
                                       ledger: MemoryNonceLedger) -> None:
    token = issuer.issue(SESSION, ORIGIN)
    signature, key = card_sign(token)
    issuer.verify(token, signature, key, SESSION, ORIGIN, ledger.claim)
    with pytest.raises(ch.ChallengeReplayed):
        issuer.verify(token, signature, key, SESSION, ORIGIN, ledger.claim)


def test_signature_for_another_session_or_site_is_refused(
        card: VirtualCard, issuer: ChallengeIssuer, ledger: MemoryNonceLedger) -> None:
    token = issuer.issue(SESSION, ORIGIN)
    signature, key = card_sign(token)
    with pytest.raises(ch.ChallengeMismatch, match="session"):
        issuer.verify(token, signature, key, "attacker-session", ORIGIN, ledger.claim)
    with pytest.raises(ch.ChallengeMismatch, match="site"):
        issuer.verify(token, signature, key, SESSION, "https://evil.example", ledger.claim)
    # Refusals burn nothing: the rightful login still works once.
    issuer.verify(token, signature, key, SESSION, ORIGIN, ledger.claim)


def test_expired_challenge_is_refused(card: VirtualCard, issuer: ChallengeIssuer,
                                      ledger: MemoryNonceLedger, clock: Clock) -> None:
    token = issuer.issue(SESSION, ORIGIN)
    signature, key = card_sign(token)
    clock.now += 121
    with pytest.raises(ch.ChallengeExpired):
        issuer.verify(token, signature, key, SESSION, ORIGIN, ledger.claim)


def test_garbage_signatures_are_refused(issuer: ChallengeIssuer, ledger: MemoryNonceLedger,
                                        card: VirtualCard, rsa_card: VirtualCard) -> None:
    token = issuer.issue(SESSION, ORIGIN)
    ec_key = card.state.keys[Slot.AUTHENTICATION].public_key()
    rsa_key = rsa_card.state.keys[Slot.AUTHENTICATION].public_key()
    well_formed = encode_dss_signature(secrets.randbelow(2**255) + 1, secrets.randbelow(2**255) + 1)
    for key, garbage in ((ec_key, b""), (ec_key, secrets.token_bytes(70)), (ec_key, well_formed),
                         (rsa_key, secrets.token_bytes(256)), (rsa_key, b"\x00")):
        with pytest.raises(ch.SignatureInvalid):
            issuer.verify(token, garbage, key, SESSION, ORIGIN, ledger.claim)


def test_signature_from_another_card_is_refused(card: VirtualCard, rsa_card: VirtualCard,
                                                issuer: ChallengeIssuer,
                                                ledger: MemoryNonceLedger) -> None:
    token = issuer.issue(SESSION, ORIGIN)
    signature, _ = card_sign(token)  # Alice's card signs
    bob = rsa_card.state.keys[Slot.AUTHENTICATION].public_key()
    with pytest.raises(ch.SignatureInvalid):
        issuer.verify(token, signature, bob, SESSION, ORIGIN, ledger.claim)


def test_forged_or_foreign_tokens_are_refused(issuer: ChallengeIssuer, clock: Clock) -> None:
    token = issuer.issue(SESSION, ORIGIN)
    body, mac = token.split(".")
    tbs = bytearray(base64.urlsafe_b64decode(body + "=="))
    tbs[69] ^= 0x01  # move the expiry (bytes 62..69)
    forged = base64.urlsafe_b64encode(bytes(tbs)).rstrip(b"=").decode() + "." + mac
    other = ChallengeIssuer(secrets.token_bytes(32), clock=clock).issue(SESSION, ORIGIN)
    for bad in (forged, other, "", "abc", token + "x", body + ".", "a.b.c"):
        with pytest.raises(ch.ChallengeInvalid):
            issuer.open(bad)


def test_unsupported_enrolled_key_is_refused(issuer: ChallengeIssuer,
                                             ledger: MemoryNonceLedger) -> None:
    token = issuer.issue(SESSION, ORIGIN)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(UnsupportedAlgorithm):
        issuer.verify(token, b"sig", p384, SESSION, ORIGIN, ledger.claim)


def test_ledger_forgets_expired_nonces(clock: Clock) -> None:
    ledger = MemoryNonceLedger(clock)
    assert ledger.claim("n1", int(clock.now) + 10)
    assert not ledger.claim("n1", int(clock.now) + 10)
    clock.now += 11
    assert ledger.claim("n1", int(clock.now) + 10)


@pytest.mark.parametrize(("raw", "canonical"), [
    ("https://CRM.Example.com", "https://crm.example.com"),
    ("https://crm.example.com:443/", "https://crm.example.com"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://[::1]:80", "http://[::1]"),
])
def test_origins_are_canonical(raw: str, canonical: str) -> None:
    assert ch.normalize_origin(raw) == canonical


@pytest.mark.parametrize("bad", ["null", "file:///etc", "https://x.com/path", "https://u@x.com",
                                 "https://x.com?q", "javascript:alert(1)", ""])
def test_non_origins_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        ch.normalize_origin(bad)
