"""Signing in with a smart card, and what happens when the card leaves the reader.

After the password, a person whose role requires a card gets a session in the
``password`` stage: it opens nothing but the card page. That page asks the
workstation's card agent (``appliance card-agent``) to have the card sign a
challenge bound to this session and this site; the server verifies the
signature against the card enrolled for that person, uses the challenge up,
and completes the session. A person who lost their card can use a one-time,
time-limited emergency code an officer issued instead.

The page then watches the card through the agent; when it is pulled out, the
session is locked at once and only the same card opens it again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Blueprint, Flask, current_app, g, jsonify, redirect, render_template, request, session, url_for
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import audit
from appliance.cards import AGENT_PORT
from appliance.cards.challenge import CardLoginFailed, ChallengeIssuer, normalize_origin
from appliance.cards.spec import key_fingerprint
from appliance.kernel.config import Settings
from appliance.kernel.db import get_db
from appliance.kernel.errors import Conflict, NotAuthenticated, NotFound, ValidationFailed
from crm.identity import Card, EmergencyCode, UsedNonce, User, UserSession
from crm.revocation import active_cards

bp = Blueprint("card_login", __name__)
EMERGENCY_MINUTES = 60


# -- configuration -----------------------------------------------------------
def agent_url(settings: Settings) -> str:
    return str(settings.get("card_agent_url") or f"http://127.0.0.1:{AGENT_PORT}")


def issuer(settings: Settings) -> ChallengeIssuer:
    """Challenges are MACed with a key derived for this purpose only from the session secret."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"citadel card login challenge v1").derive(settings.secret_key)
    return ChallengeIssuer(key)


def site_origin(settings: Settings) -> str:
    """The origin browsers see: configured behind a proxy, else the request's own."""
    return normalize_origin(str(settings.get("public_origin") or request.host_url.rstrip("/")))


def session_secret() -> str:
    """Binds a challenge to this browser session (the cookie's token, never stored)."""
    return str(session.get("sid", ""))


# -- cards -------------------------------------------------------------------
def enroll(db: Session, user: User, enrolment: Any, enrolled_by: str) -> Card:
    """Bind a card (read with ``appliance.cards.enrolment``) to ``user``."""
    if not enrolment.proven:
        raise ValidationFailed({"pin": "enrol with the card's PIN so the card proves it holds its keys"})
    auth = enrolment.authentication
    if db.scalars(select(Card).where(Card.fingerprint == auth.fingerprint)).first() is not None:
        raise Conflict(detail="This card is already enrolled; revoke it first to give it to someone else.")
    km = enrolment.key_management
    card = Card(user_id=user.id, card_id=enrolment.card_id, fingerprint=auth.fingerprint,
                algorithm=auth.algorithm.name if hasattr(auth.algorithm, "name") else str(auth.algorithm),
                public_key_pem=_pem(auth.public_key),
                certificate_der=auth.certificate.public_bytes(serialization.Encoding.DER),
                key_management_pem=_pem(km.public_key) if km is not None and km.can_seal else None,
                enrolled_by=enrolled_by)
    db.add(card)
    db.flush()
    audit.record(db, "card.enroll", user=enrolled_by, entity="user", entity_id=user.username,
                 meta={"card_id": card.card_id, "fingerprint": card.fingerprint,
                       "algorithm": card.algorithm, "can_seal": card.key_management_pem is not None})
    return card


def _pem(public_key: Any) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _load_key(pem: str) -> Any:
    return serialization.load_pem_public_key(pem.encode())


def claim_nonce(db: Session, nonce: str, expires_at: int) -> bool:
    """Remember a challenge as used; False if it already was (a replay)."""
    db.execute(delete(UsedNonce).where(UsedNonce.expires_at < datetime.now(UTC) - timedelta(minutes=5)))
    try:
        with db.begin_nested():
            db.execute(insert(UsedNonce).values(nonce=nonce,
                                                expires_at=datetime.fromtimestamp(expires_at, UTC)))
    except IntegrityError:
        return False
    return True


# -- client certificates (mTLS at nginx) -------------------------------------
def mtls_card(db: Session, user: User, settings: Settings) -> Card | None:
    """The user's enrolled card whose certificate nginx verified for this request, if any.

    Only with ``[mtls] enabled = true``: then the app must listen on loopback
    behind the appliance's nginx, which verifies PIV certificates against the
    configured CA and always overwrites these headers (provisioning does both).
    """
    config = settings.section("mtls")
    if not config.get("enabled"):
        return None
    if request.headers.get(config.get("verify_header", "X-Client-Cert-Verify")) != "SUCCESS":
        return None
    escaped = request.headers.get(config.get("cert_header", "X-Client-Cert"), "")
    try:
        certificate = x509.load_pem_x509_certificate(unquote(escaped).encode())
    except ValueError:
        return None
    fingerprint = key_fingerprint(certificate.public_key())
    return db.scalars(select(Card).where(Card.fingerprint == fingerprint, Card.user_id == user.id,
                                         Card.revoked_at.is_(None))).first()


# -- emergency codes ---------------------------------------------------------
def issue_emergency_code(db: Session, user: User, issued_by: str, minutes: int = EMERGENCY_MINUTES) -> str:
    """A one-time code to sign in without the card, for ``minutes``; only its hash is kept."""
    if not 1 <= minutes <= 24 * 60:
        raise ValidationFailed({"minutes": "must be between 1 and 1440"})
    code = "-".join(secrets.token_hex(3).upper() for _ in range(3))
    db.add(EmergencyCode(user_id=user.id, code_hash=_code_hash(code), issued_by=issued_by,
                         expires_at=datetime.now(UTC) + timedelta(minutes=minutes)))
    audit.record(db, "card.emergency_code", user=issued_by, entity="user", entity_id=user.username,
                 meta={"minutes": minutes})
    return code


def _code_hash(code: str) -> bytes:
    return hashlib.sha256(code.strip().upper().encode()).digest()


def use_emergency_code(db: Session, user: User, code: str) -> bool:
    row = db.scalars(select(EmergencyCode).where(EmergencyCode.code_hash == _code_hash(code),
                                                 EmergencyCode.user_id == user.id)).first()
    if row is None or row.used_at is not None or row.expires_at < datetime.now(UTC):
        return False
    row.used_at = datetime.now(UTC)
    return True


# -- the sign-in page ---------------------------------------------------------
def _pending() -> UserSession:
    row = g.get("pending_session")
    if row is None:
        raise NotAuthenticated()
    return row


@bp.get("/login/card")
def card_page() -> Any:
    if g.get("user") is not None:  # already signed in: nothing to do here (and no redirect loop)
        return redirect(url_for("home.index"))
    row = _pending()
    settings = current_app.extensions["citadel.appliance"].settings
    token = issuer(settings).issue(session_secret(), site_origin(settings))
    return render_template("auth/card.html", challenge=token, agent=agent_url(settings),
                           person=row.user, locked=row.locked_at is not None,
                           has_card=bool(active_cards(get_db(), row.user_id)))


@bp.post("/login/card")
def card_submit() -> Any:
    row = _pending()
    db = get_db()
    user = row.user
    body = request.get_json(silent=True) if request.is_json else request.form
    body = body or {}
    ip = request.remote_addr
    if body.get("emergency_code"):
        if row.locked_at is not None or not use_emergency_code(db, user, str(body["emergency_code"])):
            return _failed(db, user, ip, "emergency code not valid", "That code is not valid or has expired.")
        _complete(db, row, None, ip, "password+emergency code")
        return redirect(url_for("home.index"))
    try:
        card = _verify(db, row, body)
    except CardLoginFailed as exc:
        return _failed(db, user, ip, exc.code, exc.message)
    _complete(db, row, card, ip, "password+card")
    return jsonify({"ok": True, "next": url_for("home.index")})


def _verify(db: Session, row: UserSession, body: Any) -> Card:
    settings = current_app.extensions["citadel.appliance"].settings
    token, fingerprint = body.get("challenge"), body.get("key_fingerprint")
    try:
        signature = base64.b64decode(str(body.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise CardLoginFailed(detail="the signature is not base64") from None
    if not isinstance(token, str) or not isinstance(fingerprint, str):
        raise CardLoginFailed(detail="send the challenge, the signature and the key fingerprint")
    card = db.scalars(select(Card).where(Card.fingerprint == fingerprint, Card.user_id == row.user_id,
                                         Card.revoked_at.is_(None))).first()
    if card is None:
        raise CardLoginFailed(detail="this card is not enrolled for you, or it was revoked")
    if row.locked_at is not None and row.card_fingerprint not in (None, card.fingerprint):
        raise CardLoginFailed(detail="this session was opened with another card")
    issuer(settings).verify(token, signature, _load_key(card.public_key_pem), session_secret(),
                            site_origin(settings), claim=lambda nonce, exp: claim_nonce(db, nonce, exp))
    return card


def _complete(db: Session, row: UserSession, card: Card | None, ip: str | None, method: str) -> None:
    now = datetime.now(UTC)
    unlocking = row.locked_at is not None
    row.stage, row.locked_at, row.last_seen_at = "complete", None, now
    if card is not None:
        row.card_fingerprint = card.fingerprint
        card.last_used_at = now
    audit.record(db, "session.unlock" if unlocking else "login", user=row.user.username, ip=ip,
                 meta={"method": method, "card_id": card.card_id if card else None})
    db.commit()


def _failed(db: Session, user: User, ip: str | None, reason: str, message: str) -> Any:
    db.rollback()
    audit.record(db, "login.failed", user=user.username, ip=ip, meta={"reason": reason, "step": "card"})
    db.commit()
    if request.is_json:
        return jsonify({"error": {"code": "card_login_failed", "message": message}}), 401
    return render_template("auth/card_failed.html", message=message), 401


@bp.post("/session/lock")
def lock() -> Any:
    """The card left the reader: lock this session until the same card signs again."""
    row = g.get("user_session") or g.get("pending_session")
    if row is None or row.card_fingerprint is None:
        raise NotFound(entity="card session")
    db = get_db()
    if row.locked_at is None:
        row.locked_at = datetime.now(UTC)
        audit.record(db, "card.removed", user=row.user.username, ip=request.remote_addr,
                     meta={"fingerprint": row.card_fingerprint})
        db.commit()
    return jsonify({"locked": True, "next": url_for("card_login.card_page")})


def init_app(app: Flask) -> None:
    settings = app.extensions["citadel.appliance"].settings
    app.jinja_env.globals["card_agent_url"] = lambda: agent_url(settings)
    app.register_blueprint(bp)  # the card page's JSON posts carry the CSRF token in a header
