"""Ending a person's access at once: their sessions, API tokens and smart cards.

The rows are the CRM's (``crm.identity``); sign-in (``appliance.auth``), card login and
offboarding (``crm.restrictions``) all revoke through here.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from crm.identity import ApiToken, Card, UserSession


def revoke_sessions(db: Session, user_id: int, reason: str, *, tokens: bool = False) -> int:
    """End every session (and optionally every API token) of a user, now."""
    now = datetime.now(UTC)
    live = db.scalars(select(UserSession).where(
        UserSession.user_id == user_id, UserSession.revoked_at.is_(None))).all()
    for row in live:
        row.revoked_at, row.revoked_reason = now, reason
    if tokens:
        for tok in db.scalars(select(ApiToken).where(
                ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))):
            tok.revoked_at = now
    return len(live)


def active_cards(db: Session, user_id: int) -> list[Card]:
    return list(db.scalars(select(Card).where(Card.user_id == user_id, Card.revoked_at.is_(None))))


def revoke_cards(db: Session, user_id: int, by: str, card_id: str | None = None) -> int:
    """Revoke a user's cards (or one of them) and lock the sessions they opened."""
    now = datetime.now(UTC)
    revoked = 0
    for card in active_cards(db, user_id):
        if card_id is not None and card.card_id != card_id:
            continue
        card.revoked_at = now
        revoked += 1
        for row in db.scalars(select(UserSession).where(UserSession.card_fingerprint == card.fingerprint,
                                                        UserSession.revoked_at.is_(None))):
            row.revoked_at, row.revoked_reason = now, "card revoked"
        audit.record(db, "card.revoke", user=by, entity="user", entity_id=card.user.username,
                     meta={"card_id": card.card_id, "fingerprint": card.fingerprint})
    return revoked
