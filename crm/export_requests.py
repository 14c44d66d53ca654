"""Exports above a cap become requests that a manager approves or denies.

The requester states why; a manager (``exports:approve``) whose reach covers
the requester decides; an approved request lets its requester run that one
export, once, within a day, above their cap (never above the hard limit).
Every step is an audit event.

What a request covers is computed by the server when it is made, never taken
from the requester: the entity, the list's search and filters, the columns,
the number of rows and a SHA-256 digest of the record ids. The approver sees
that; running the approval checks that the export would still be exactly that
(same ids, same columns), or refuses and asks for a new request.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String, Text, Uuid, select
from sqlalchemy.orm import Mapped, Session, mapped_column

import audit
from appliance.kernel.errors import BadRequest, Conflict, Forbidden, NotFound, ValidationFailed
from appliance.kernel.orm import new_id, utcnow
from appliance.kernel.permissions import Cap
from appliance.keys import encrypted_field
from crm.access import MODELS, Action, Entity, Policy
from crm.base import Base
from crm.identity import User
from crm.models import Record
from crm.queries import ListQuery, build

VALID_FOR = timedelta(days=1)
#: What can be exported (and so requested).
EXPORTABLE = (Entity.ACCOUNT, Entity.CONTACT, Entity.DEAL, Entity.ACTIVITY)


class ApprovalOutdated(Conflict):
    """This export is no longer what was approved: {what} changed since the request ({approved}
    approved, {now} now). Ask for approval again from the list as it is now."""

    code = "approval_outdated"


@dataclass(frozen=True)
class Coverage:
    """What an export of a list would give its user right now."""

    entity: str
    query: str
    fields: list[str]
    rows: int
    ids_sha256: str


def coverage(db: Session, policy: Policy, entity: Entity, query: ListQuery) -> Coverage:
    """The rows (as a digest of their ids) and columns exporting ``query`` would give now."""
    model = MODELS[entity]
    stmt = build(policy, entity, query, Action.EXPORT).with_only_columns(model.id).order_by(None)
    ids = sorted(str(i) for i in db.scalars(stmt))
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    return Coverage(entity.value, query_json(query), policy.visible_fields(entity), len(ids),
                    digest)


def query_json(query: ListQuery) -> str:
    """A list query as stored text: the same query always gives the same text."""
    return json.dumps(query.__dict__, sort_keys=True)


def exportable(name: str) -> Entity:
    """The entity named ``name``, if it can be exported; else a clear refusal."""
    if name not in {e.value for e in EXPORTABLE}:
        raise BadRequest(detail="Choose what to export: one of "
                                f"{', '.join(e.value for e in EXPORTABLE)}.")
    return Entity(name)


class ExportRequest(Record, Base):
    __tablename__ = "export_requests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    entity: Mapped[str] = mapped_column(String(32))
    query = encrypted_field()  # the list's search and filters may name a client
    rows: Mapped[int] = mapped_column(Integer)
    #: The columns and a SHA-256 digest of the record ids the request covered when made.
    fields: Mapped[str] = mapped_column(Text, default="[]")
    ids_sha256: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str] = mapped_column(String(500), default="")

    @property
    def list_query(self) -> ListQuery:
        return ListQuery(**json.loads(self.query))

    @property
    def field_list(self) -> list[str]:
        return json.loads(self.fields)

    def check_still(self, now: Coverage) -> None:
        """Refuse to run unless the export would be exactly what was approved."""
        if now.entity != self.entity or now.query != query_json(self.list_query):
            raise ApprovalOutdated(what="the list", approved=self.entity, now=now.entity)
        if now.fields != self.field_list:
            raise ApprovalOutdated(what="the columns you may export",
                                   approved=", ".join(self.field_list), now=", ".join(now.fields))
        if now.ids_sha256 != self.ids_sha256:
            raise ApprovalOutdated(what="the records in the list", approved=f"{self.rows} rows",
                                   now=f"{now.rows} rows")


def request_export(db: Session, policy: Policy, entity: Entity, query: ListQuery,
                   reason: str, ip: str | None = None) -> ExportRequest:
    """Ask for an export above the cap; what it covers is computed here, now."""
    entity = exportable(Entity(entity).value)
    policy.require(entity, Action.EXPORT)
    if len(reason.strip()) < 10:
        raise ValidationFailed({"reason": "say in a sentence why you need this export"})
    covered = coverage(db, policy, entity, query)
    req = ExportRequest(user_id=policy.user.id, entity=entity.value, query=covered.query,
                        rows=covered.rows, fields=json.dumps(covered.fields),
                        ids_sha256=covered.ids_sha256, reason=reason.strip()[:500])
    db.add(req)
    db.flush()
    audit.record(db, "export.request", user=policy.user.username, ip=ip, entity=entity.value,
                 count=covered.rows,
                 meta={"request": str(req.id), "reason": req.reason, "fields": covered.fields,
                       "ids_sha256": covered.ids_sha256,
                       "filtered": bool(query.q or query.filters)})
    return req


def pending_for(db: Session, policy: Policy) -> list[ExportRequest]:
    """Requests this manager may decide: from people within their reach, never their own."""
    if not policy.holds(Cap.EXPORTS_APPROVE):
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
                 meta={"request": str(req.id), "requester": requester.username, "note": note[:500],
                       "fields": req.field_list, "ids_sha256": req.ids_sha256})
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
    if not policy.holds(Cap.EXPORTS_APPROVE) or req.user_id == policy.user.id:
        return False
    requester = db.get(User, req.user_id)
    return requester is not None and policy.scope_reaches(
        Entity(req.entity), Action.EXPORT, owner_id=requester.id, team_id=requester.team_id)
