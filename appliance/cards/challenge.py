"""The server side of card login: challenges, the bytes a card signs, verification.

The server issues a token that binds a fresh nonce to the login's session and
to the site's origin, with an expiry, and MACs it so nobody can forge or
stretch one. The card agent has the card sign the token's to-be-signed bytes
(``to_be_signed``); the server checks MAC, expiry, session, origin and the
signature against the key enrolled for that card, then claims the nonce so the
same signature can never be used twice. Layout: docs/smart-cards.md.

    issuer = ChallengeIssuer(key)                       # 32-byte per-purpose key
    token = issuer.issue(session_id, "https://crm.example.com")
    ...agent signs...
    issuer.verify(token, signature, enrolled_public_key, session_id, origin,
                  claim=used_nonces.claim)              # raises on any failure

No pyscard here: this runs on the appliance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from appliance.cards import spec
from appliance.cards.spec import Algorithm
from appliance.kernel.errors import NotAuthenticated

#: Domain separator: these bytes are only ever signed as a Citadel card login.
DOMAIN = b"citadel card login v1\x00"
SESSION_DOMAIN = b"citadel login session\x00"
NONCE_SIZE = 32
MAC_SIZE = 32
MAX_ORIGIN = 255
_FIXED = struct.Struct(f">{NONCE_SIZE}sQQ32sH")  # nonce, issued, expires, session, origin len
DEFAULT_TTL = 120
CLOCK_SKEW = 30


class CardLoginFailed(NotAuthenticated):
    """Card sign-in failed: {detail}"""

    code = "card_login_failed"


class ChallengeInvalid(CardLoginFailed):
    """The card sign-in challenge is not valid ({detail}): start the sign-in again."""


class ChallengeExpired(CardLoginFailed):
    """The card sign-in challenge expired: start the sign-in again."""


class ChallengeMismatch(CardLoginFailed):
    """This challenge was issued for another {what}: start the sign-in again."""


class ChallengeReplayed(CardLoginFailed):
    """This challenge was already used: start the sign-in again."""


class SignatureInvalid(CardLoginFailed):
    """The card's signature does not match the enrolled card: use your own enrolled card."""


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in canonical form; ValueError if ``origin`` is not one."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{origin!r} is not an http(s) origin")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin!r} has more than scheme, host and port")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[parts.scheme]
    port = parts.port if parts.port not in (None, default) else None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def session_binding(session_id: str) -> bytes:
    """What the challenge carries for the session: a hash, so the token never reveals it."""
    return hashlib.sha256(SESSION_DOMAIN + session_id.encode("utf-8")).digest()


@dataclass(frozen=True)
class Challenge:
    """One login challenge; ``to_be_signed()`` is exactly what the card signs."""

    nonce: bytes
    issued_at: int
    expires_at: int
    session: bytes
    origin: str

    @property
    def nonce_id(self) -> str:
        """What to remember as used (until ``expires_at``) so the challenge works once."""
        return self.nonce.hex()

    def to_be_signed(self) -> bytes:
        origin = self.origin.encode("ascii")
        return DOMAIN + _FIXED.pack(self.nonce, self.issued_at, self.expires_at,
                                    self.session, len(origin)) + origin

    @classmethod
    def parse(cls, tbs: bytes) -> Challenge:
        """Read to-be-signed bytes strictly: wrong domain or length is invalid."""
        if not tbs.startswith(DOMAIN) or len(tbs) < len(DOMAIN) + _FIXED.size:
            raise ChallengeInvalid(detail="not a Citadel login challenge")
        fields = _FIXED.unpack_from(tbs, len(DOMAIN))
        origin = tbs[len(DOMAIN) + _FIXED.size:]
        if len(origin) != fields[4] or not origin.isascii():
            raise ChallengeInvalid(detail="origin field damaged")
        return cls(fields[0], fields[1], fields[2], fields[3], origin.decode("ascii"))


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def split_token(token: str) -> tuple[bytes, bytes]:
    """(to-be-signed bytes, MAC) of a token ``base64url(tbs) "." base64url(mac)``."""
    try:
        body, mac = token.split(".")
        tbs, tag = _b64decode(body), _b64decode(mac)
    except (ValueError, binascii.Error) as exc:
        raise ChallengeInvalid(detail="not a challenge token") from exc
    if len(tag) != MAC_SIZE:
        raise ChallengeInvalid(detail="not a challenge token")
    return tbs, tag


def parse_token(token: str) -> Challenge:
    """The challenge in ``token`` without checking its MAC (what the card agent needs)."""
    return Challenge.parse(split_token(token)[0])


def nonce_id(token: str) -> str:
    """The id of the token's nonce: store it as used once a login succeeds."""
    return parse_token(token).nonce_id


def verify_signature(public_key: PublicKeyTypes, signature: bytes, message: bytes) -> Algorithm:
    """Check a card signature over ``message`` (SHA-256; ECDSA P-256 or RSA-2048 PKCS#1 v1.5)."""
    algorithm = spec.algorithm_of(public_key)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise SignatureInvalid() from exc
    return algorithm


@dataclass(frozen=True)
class VerifiedLogin:
    """A login challenge answered correctly; ``nonce_id`` has been claimed."""

    nonce_id: str
    expires_at: int
    algorithm: Algorithm


class ChallengeIssuer:
    """Issues and verifies login challenges with a per-purpose 32-byte MAC key."""

    def __init__(self, key: bytes, ttl: int = DEFAULT_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        if len(key) < 32:
            raise ValueError("the challenge key must be at least 32 bytes")
        self._key, self.ttl, self._clock = key, ttl, clock

    def _mac(self, tbs: bytes) -> bytes:
        return hmac.new(self._key, tbs, hashlib.sha256).digest()

    def issue(self, session_id: str, origin: str) -> str:
        """A token for this session and site, valid ``ttl`` seconds."""
        canonical = normalize_origin(origin)
        if len(canonical) > MAX_ORIGIN:
            raise ValueError("origin too long")
        now = int(self._clock())
        challenge = Challenge(secrets.token_bytes(NONCE_SIZE), now, now + self.ttl,
                              session_binding(session_id), canonical)
        tbs = challenge.to_be_signed()
        return f"{_b64encode(tbs)}.{_b64encode(self._mac(tbs))}"

    def open(self, token: str) -> Challenge:
        """The challenge in ``token`` if this issuer made it and it has not expired."""
        tbs, tag = split_token(token)
        if not hmac.compare_digest(tag, self._mac(tbs)):
            raise ChallengeInvalid(detail="not issued by this appliance")
        challenge = Challenge.parse(tbs)
        now = self._clock()
        if now > challenge.expires_at:
            raise ChallengeExpired()
        if challenge.issued_at > now + CLOCK_SKEW:
            raise ChallengeInvalid(detail="issued in the future")
        return challenge

    def verify(self, token: str, signature: bytes, public_key: PublicKeyTypes,
               session_id: str, origin: str,
               claim: Callable[[str, int], bool]) -> VerifiedLogin:
        """Check everything, then ``claim(nonce_id, expires_at)`` the nonce.

        ``public_key`` must be the key enrolled for the card, never one the
        client sent. ``claim`` must atomically record the nonce id as used and
        return False if it already was (a unique key in a table does that).
        """
        challenge = self.open(token)
        if not hmac.compare_digest(challenge.session, session_binding(session_id)):
            raise ChallengeMismatch(what="session")
        if challenge.origin != normalize_origin(origin):
            raise ChallengeMismatch(what="site")
        algorithm = verify_signature(public_key, signature, challenge.to_be_signed())
        if not claim(challenge.nonce_id, challenge.expires_at):
            raise ChallengeReplayed()
        return VerifiedLogin(challenge.nonce_id, challenge.expires_at, algorithm)


class MemoryNonceLedger:
    """Used nonce ids in memory (one process), forgotten once their challenge expired."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def claim(self, nonce: str, expires_at: int) -> bool:
        """Record ``nonce`` as used; False if it already was."""
        with self._lock:
            now = self._clock()
            self._used = {n: e for n, e in self._used.items() if e >= now}
            if nonce in self._used:
                return False
            self._used[nonce] = expires_at
            return True
