"""Who is asking: password sign-in, server-side sessions and API tokens.

A browser session is a random token in the signed session cookie; only its
SHA-256 is stored, in ``user_sessions``. The row is the authority: freezing,
offboarding or signing out revokes it and the cookie is worthless at once.
Sign-in failures are rate-limited from the audit log itself, per address and
per user name, so the limit holds across every worker process.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

import audit
from appliance.card_login import mtls_card
from appliance.kernel.config import Settings
from appliance.kernel.db import get_db, reads_first
from appliance.kernel.errors import TooManyRequests
from audit.models import AuditEvent
from crm.access import Grants
from crm.identity import ApiToken, User, UserSession

F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("auth", __name__)

#: Paths served without a signed-in user.
PUBLIC_PREFIXES = ("/static/", "/healthz", "/login", "/sealed", "/api/")


# -- passwords -------------------------------------------------------------
def password_hasher(settings: Settings) -> PasswordHasher:
    """Argon2id with the appliance's cost (cheaper only when a test asks for it)."""
    cost = settings.section("argon2")
    return PasswordHasher(
        time_cost=cost.get("time_cost", 3),
        memory_cost=cost.get("memory_cost", 65536),
        parallelism=cost.get("parallelism", 2),
    )


def check_password(hasher: PasswordHasher, user: User | None, password: str) -> bool:
    """True if ``password`` is the user's; spends the same time when there is no such user."""
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None and stored is not _DUMMY_HASH


_DUMMY_HASH = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=2).hash("not a password")


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# -- sessions --------------------------------------------------------------
def start_session(db: Session, user: User, stage: str = "complete") -> str:
    """A new server-side session for ``user``; returns the token for the cookie."""
    token = secrets.token_urlsafe(32)
    db.add(UserSession(
        token_hash=token_hash(token), user_id=user.id, ip=request.remote_addr or "",
        user_agent=(request.user_agent.string or "")[:300], stage=stage,
    ))
    return token


def issue_token(db: Session, user: User, name: str) -> str:
    """A new API bearer token for ``user``; only its hash is kept."""
    token = "ctl_" + secrets.token_urlsafe(32)
    db.add(ApiToken(token_hash=token_hash(token), user_id=user.id, name=name))
    return token


def user_for_token(db: Session, token: str) -> User | None:
    row = db.scalars(select(ApiToken).where(
        ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None))).first()
    if row is None or not row.user.can_sign_in:
        return None
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
        row.last_used_at = now
    return row.user


def load_session_user() -> None:
    """Attach the signed-in user (or None) to ``g`` for this request."""
    g.user = None
    g.user_session = None
    g.pending_session = None
    token = session.get("sid")
    if not token:
        return
    db = get_db()
    row = db.scalars(select(UserSession).options(joinedload(UserSession.user))
                     .where(UserSession.token_hash == token_hash(token))).first()
    settings: Settings = current_app.extensions["citadel.appliance"].settings
    now = datetime.now(UTC)
    idle = timedelta(minutes=settings["session_idle_minutes"])
    longest = timedelta(hours=settings["session_max_hours"])
    if (row is None or row.revoked_at is not None or not row.user.can_sign_in
            or now - row.last_seen_at > idle or now - row.created_at > longest):
        if row is not None and row.revoked_at is None:
            row.revoked_at, row.revoked_reason = now, "expired"
            db.commit()
        session.clear()
        return
    if row.stage != "complete" or row.locked_at is not None:
        g.pending_session = row  # only the card page opens for it
        return
    if now - row.last_seen_at > timedelta(seconds=30):
        row.last_seen_at = now
    g.user, g.user_session = row.user, row


# -- rate limit ------------------------------------------------------------
def check_rate_limit(db: Session, username: str, ip: str, settings: Settings) -> None:
    """Refuse sign-in after too many recent failures from this address or for this name."""
    window = settings["login_window_minutes"]
    since = datetime.now(UTC) - timedelta(minutes=window)
    recent = select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "login.failed", AuditEvent.ts >= since)
    by_ip = db.scalar(recent.where(AuditEvent.ip == ip)) or 0
    by_name = db.scalar(recent.where(AuditEvent.user == username)) or 0
    if max(by_ip, by_name) >= settings["login_max_failures"]:
        raise TooManyRequests(minutes=window)


def safe_next(target: str | None) -> str:
    """Only same-site paths may follow sign-in: no open redirects."""
    if not target:
        return url_for("home.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return url_for("home.index")
    return target


# -- views -----------------------------------------------------------------
@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if g.get("user") is not None and request.method == "GET":
        return redirect(safe_next(request.args.get("next")))
    if request.method == "GET":
        return render_template("auth/login.html", next=request.args.get("next", ""))
    db = get_db()
    settings: Settings = current_app.extensions["citadel.appliance"].settings
    username = (request.form.get("username") or "").strip()[:64]
    password = request.form.get("password") or ""
    ip = request.remote_addr or ""
    check_rate_limit(db, username, ip, settings)
    user = db.scalars(select(User).where(User.username == username)).first()
    hasher: PasswordHasher = current_app.extensions["citadel.hasher"]
    if not check_password(hasher, user, password) or user is None or not user.can_sign_in:
        audit.record(db, "login.failed", user=username or None, ip=ip,
                     meta={"reason": "bad credentials"})
        db.commit()
        flash("Wrong user name or password.", "error")
        return render_template("auth/login.html", next=request.form.get("next", ""),
                               username=username), 401
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    needs_card = Grants.load(db, user).card_required
    verified_card = mtls_card(db, user, settings) if needs_card else None
    if verified_card is not None:  # nginx verified this card's certificate: the card step is done
        needs_card = False
    session.clear()  # a fresh session: no fixation
    session["sid"] = start_session(db, user, stage="password" if needs_card else "complete")
    session.permanent = True
    user.last_login_at = datetime.now(UTC)
    if needs_card:
        audit.record(db, "login.password", user=user.username, ip=ip, meta={"next": "card"})
        db.commit()
        return redirect(url_for("card_login.card_page"))
    method = "password+client certificate" if verified_card is not None else "password"
    audit.record(db, "login", user=user.username, ip=ip,
                 meta={"method": method, "card_id": verified_card.card_id if verified_card else None})
    db.commit()
    return redirect(safe_next(request.form.get("next")))


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    db = get_db()
    row = g.get("user_session") or g.get("pending_session")
    if row is not None:
        row.revoked_at = datetime.now(UTC)
        row.revoked_reason = "logout"
        audit.record(db, "logout", user=row.user.username, ip=request.remote_addr)
        db.commit()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["citadel.hasher"] = password_hasher(settings)
    app.register_blueprint(bp)

    @app.before_request
    def _reads_first() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            g.reads_first = reads_first()
            g.reads_first.__enter__()

    @app.teardown_request
    def _end_reads_first(_exc: BaseException | None) -> None:
        scope = g.pop("reads_first", None)
        if scope is not None:
            scope.__exit__(None, None, None)

    @app.before_request
    def _load_user() -> None:
        if request.path.startswith("/static/"):
            g.user = None
            return
        load_session_user()

    @app.context_processor
    def _inject_user() -> dict[str, Any]:
        row = g.get("user_session")
        return {"current_user": g.get("user"),
                "card_watch": bool(row is not None and row.card_fingerprint)}


def redirect_to_login() -> Any:
    if g.get("pending_session") is not None:
        return redirect(url_for("card_login.card_page"))
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
