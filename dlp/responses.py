"""One-click responses to an alert: each acts on the person at once and is noted on the alert.

- ``freeze``: read-only from the next request on, in every session and token;
- ``notice``: start the notice period (tighter export caps, closer watch);
- ``revoke_tokens``: every API token of the person stops working;
- ``card_reauth``: every open session is locked until the person's card signs again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.kernel.errors import NotFound
from crm.identity import ApiToken, User, UserSession
from crm.restrictions import Restrictions
from dlp.alerts import Alert, Triage

RESPONSES = {
    "freeze": "Freeze (read-only now)",
    "notice": "Start notice period",
    "revoke_tokens": "Revoke API tokens",
    "card_reauth": "Require card re-authentication",
}


def respond(db: Session, triage: Triage, restrictions: Restrictions, alert: Alert, what: str,
            reason: str) -> Any:
    person = db.scalars(select(User).where(User.username == alert.user)).first()
    if person is None:
        raise NotFound(entity="user")
    if what == "freeze":
        restrictions.freeze(person.id, reason)
    elif what == "notice":
        restrictions.notice(person.id, reason)
    elif what == "revoke_tokens":
        restrictions.target(person.id)  # the same right and self-check as every restriction
        now = datetime.now(UTC)
        for token in db.scalars(select(ApiToken).where(ApiToken.user_id == person.id,
                                                       ApiToken.revoked_at.is_(None))):
            token.revoked_at = now
    elif what == "card_reauth":
        restrictions.target(person.id)
        now = datetime.now(UTC)
        for row in db.scalars(select(UserSession).where(UserSession.user_id == person.id,
                                                        UserSession.revoked_at.is_(None))):
            row.locked_at = now
    return triage.responded(alert.id, RESPONSES[what])
