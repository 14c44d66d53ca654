"""The audit helper for web requests: who and from where come from the request."""

from __future__ import annotations

from typing import Any

from flask import g, request

from appliance.kernel.db import get_db
from audit.log import record


def record_event(action: str, *, entity: str | None = None, entity_id: object = None,
                 count: int = 0, meta: dict[str, Any] | None = None) -> None:
    """``audit.record`` for the current request: who and from where filled in."""
    user = g.get("user")
    record(get_db(), action, user=user.username if user else None,
           ip=request.remote_addr, entity=entity, entity_id=entity_id, count=count,
           meta=meta)
