"""Exports above a cap become requests that a manager approves or denies.

The requester states why; a manager (``exports:approve``) whose reach covers
the requester decides; an approved request lets its requester run that one
export, once, within a day, above their cap (never above the hard limit).
Every step is an audit event.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String, Uuid, select
from sqlalchemy.orm import Mapped, Session, mapped_column

import audit
from appliance.kernel.errors import Conflict, Forbidden, NotFound, ValidationFailed
from appliance.kernel.orm import new_id, utcnow
from appliance.kernel.permissions import Cap
from appliance.keys import encrypted_field
from crm.access import Action, Entity, Policy
from crm.base import Base
from crm.identity import User
from crm.models import Record
from crm.queries import ListQuery

VALID_FOR = timedelta(days=1)


class ExportRequest(Record, Base):
    __tablename__ = "export_requests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    entity: Mapped[str] = mapped_column(String(32))
    query = encrypted_field()  # the list's search and filters may name a client
    rows: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str] = mapped_column(String(500), default="")

    @property
    def list_query(self) -> ListQuery:
        return ListQuery(**json.loads(self.query))


def request_export(db: Session, policy: Policy, entity: Entity, query: ListQuery, rows: int,
                   reason: str, ip: str | None = None) -> ExportRequest:
    policy.require(entity, Action.EXPORT)
    if len(reason.strip()) < 10:
        raise ValidationFailed({"reason": "say in a sentence why you need this export"})
    req = ExportRequest(user_id=policy.user.id, entity=entity.value,
                        query=json.dumps(query.__dict__), rows=rows, reason=reason.strip()[:500])
    db.add(req)
    db.flush()
    audit.record(db, "export.request", user=policy.user.username, ip=ip, entity=entity.value,
                 count=rows, meta={"request": str(req.id), "reason": req.reason})
    return req


def pending_for(db: Session, policy: Policy) -> list[ExportRequest]:
    """Requests this manager may decide: from people within their reach, never their own."""
    if not policy.has(Cap.EXPORTS_APPROVE):
        return []
    requests = db.scalars(select(ExportRequest).where(ExportRequest.status == "pending")
                          .order_by(ExportRequest.requested_at)).all()
    return [r for r in requests if _may_decide(db, policy, r)]


def decide(db: Session, policy: Policy, request_id: uuid.UUID, approve: bool, note: str = "",
           ip: str | None = None) -> ExportRequest:
    req = db.get(ExportRequest, request_id)
    if req is None or not _may_decide(db, policy, req):
        raise NotFound(entity="export request")
    if req.status != "pending":
        raise Conflict(detail=f"This request is already {req.status}.")
    req.status = "approved" if approve else "denied"
    req.decided_by, req.decided_at, req.decision_note = policy.user.id, datetime.now(UTC), note[:500]
    requester = db.get(User, req.user_id)
    audit.record(db, "export.approve" if approve else "export.deny", user=policy.user.username,
                 ip=ip, entity=req.entity, count=req.rows,
                 meta={"request": str(req.id), "requester": requester.username, "note": note[:500]})
    return req


def approved_request(db: Session, policy: Policy, request_id: uuid.UUID) -> ExportRequest:
    """The requester's own approved, unused, unexpired request."""
    req = db.get(ExportRequest, request_id)
    if req is None or req.user_id != policy.user.id:
        raise NotFound(entity="export request")
    if req.status != "approved":
        raise Forbidden(action=f"run an export request that is {req.status}")
    if req.decided_at is None or datetime.now(UTC) - req.decided_at > VALID_FOR:
        raise Forbidden(action="run an approval older than a day; ask again")
    return req


def _may_decide(db: Session, policy: Policy, req: ExportRequest) -> bool:
    if not policy.has(Cap.EXPORTS_APPROVE) or req.user_id == policy.user.id:
        return False
    requester = db.get(User, req.user_id)
    return requester is not None and policy.allows(
        Entity(req.entity), Action.EXPORT, owner_id=requester.id, team_id=requester.team_id)
