"""The one way client data leaves as a file or on paper: exports and prints.

Both go through here so that rights, caps, field masks, audit and leak
monitoring apply in one place. An export takes what the policy lets the user
export, shows each field as the user may see it, writes one ``export`` event
and remembers the export (never the file itself).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, Uuid, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

import audit
from appliance.kernel.errors import BadRequest, Forbidden
from appliance.kernel.orm import new_id, utcnow
from appliance.kernel.paging import count_of
from appliance.keys import encrypted_field
from audit.models import AuditEvent
from crm.access import Action, Entity, Policy
from crm.base import Base
from crm.export_requests import EXPORTABLE, ExportRequest, coverage
from crm.hooks import watermark
from crm.models import Record
from crm.queries import ListQuery, build
from crm.xlsx import MIMETYPE as XLSX_MIMETYPE
from crm.xlsx import write_xlsx

_PLAIN_NUMBER = re.compile(r"^\+?[0-9 ()./-]+$")
FORMATS = ("csv", "xlsx")
#: Exports over this many rows are refused outright, whatever the role allows.
HARD_LIMIT = 200_000


class Export(Record, Base):
    """One export a user made: what, how many rows, which fields. Not the file."""

    __tablename__ = "exports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    entity: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(8))
    row_count: Mapped[int] = mapped_column(Integer)
    fields: Mapped[str] = mapped_column(Text)
    query = encrypted_field()  # the list's search and filters may name a client
    content_sha256: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class ExportCapExceeded(Forbidden):
    """This export has {rows} rows; your limit is {limit} {per}. Narrow the list, or ask your
    manager to approve a larger export."""

    code = "export_cap"


@dataclass
class ExportFile:
    export: Export
    filename: str
    mimetype: str
    content: bytes


def rows_exported_today(db: Session, username: str) -> int:
    since = datetime.now(UTC) - timedelta(days=1)
    total = db.scalar(select(func.coalesce(func.sum(AuditEvent.count), 0)).where(
        AuditEvent.user == username, AuditEvent.action == "export", AuditEvent.ts >= since))
    return int(total or 0)


def check_caps(db: Session, policy: Policy, rows: int, *, approved: bool = False) -> None:
    """Refuse an export above the user's per-export or daily cap (0 = no cap).

    A manager's approval lifts both caps for one export, never the hard limit.
    """
    per_export, per_day = policy.grants.export_per_export, policy.grants.export_per_day
    if policy.on_notice:
        per_export, per_day = per_export // 10 or 50, per_day // 10 or 100
    if rows > HARD_LIMIT:
        raise ExportCapExceeded(rows=rows, limit=HARD_LIMIT, per="per export")
    if approved:
        return
    if per_export and rows > per_export:
        raise ExportCapExceeded(rows=rows, limit=per_export, per="per export")
    if per_day:
        done = rows_exported_today(db, policy.user.username)
        if done + rows > per_day:
            raise ExportCapExceeded(rows=rows, limit=per_day,
                                    per=f"per day ({done} already exported today)")


def export_records(db: Session, policy: Policy, entity: Entity, query: ListQuery,
                   fmt: str = "csv", ip: str | None = None,
                   approval: ExportRequest | None = None, settings: Any = None) -> ExportFile:
    """Export the list ``query`` describes, as far as the user may export it.

    Every export is watermarked for its user (``dlp.watermark``: decoy canary
    rows and invisible formatting marks) so a leaked copy names its source.
    ``approval`` is the user's approved request for this export (see
    ``crm.export_requests``); it is used up by the export. ``settings`` are
    the appliance's (for the ``[dlp]`` canary settings).
    """
    if entity not in EXPORTABLE:
        raise Forbidden(action=f"export {entity.value}s")
    if fmt not in FORMATS:
        raise BadRequest(detail=f"format must be one of: {', '.join(FORMATS)}")
    policy.require(entity, Action.EXPORT)
    stmt = build(policy, entity, query, Action.EXPORT)
    count = db.scalar(count_of(stmt)) or 0
    check_caps(db, policy, count, approved=approval is not None)
    if approval is not None:
        # the approval is for what was requested, not for whatever the list holds today
        approval.check_still(coverage(db, policy, entity, query))
        approval.status = "used"
    fields = policy.visible_fields(entity)
    header = ["id", *fields]
    rows, ids, outside = [], [], 0
    for record in db.scalars(stmt.execution_options(yield_per=1000)):
        shown = policy.present(entity, record)
        rows.append([str(record.id), *(_cell(shown.get(f)) for f in fields)])
        ids.append(record.id)
        outside += _outside_book(policy, record)
    export = Export(user_id=policy.user.id, entity=entity.value, format=fmt, row_count=count,
                    fields=json.dumps(fields), query=json.dumps(query.__dict__))
    mark = watermark.plan(db, export_id=export.id, user=policy.user, entity=entity.value,
                          rows=count, channel="export", settings=settings)
    marked = watermark.apply(mark, header, rows)
    content = write_xlsx(header, marked) if fmt == "xlsx" else _csv(header, marked)
    export.content_sha256 = hashlib.sha256(content).hexdigest()
    db.add(export)
    db.flush()
    watermark.record(db, mark, ids)
    audit.record(db, "export", user=policy.user.username, ip=ip, entity=entity.value,
                 entity_id=export.id, count=count,
                 meta={"format": fmt, "fields": fields, "outside_book": outside,
                       "filtered": bool(query.q or query.filters), "mark": str(mark.id),
                       "approved_request": str(approval.id) if approval else None})
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    mimetype = XLSX_MIMETYPE if fmt == "xlsx" else "text/csv; charset=utf-8"
    return ExportFile(export, f"{entity.value}s-{stamp}.{fmt}", mimetype, content)


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8-sig")


def print_records(db: Session, policy: Policy, entity: Entity, records: list[Any],
                  ip: str | None = None, context: str = "list",
                  settings: Any = None) -> tuple[list[dict[str, Any]], str]:
    """What a print-friendly page may show, watermarked; records one ``print`` event.

    Returns the rows (canaries included, cells marked) and the footer that names
    this print.
    """
    policy.require(entity, Action.PRINT)
    allowed = [r for r in records
               if policy.scope_reaches(entity, Action.PRINT, owner_id=r.owner_id, team_id=r.team_id)]
    fields = policy.visible_fields(entity)
    mark = watermark.plan(db, export_id=None, user=policy.user, entity=entity.value,
                          rows=len(allowed), channel="print", settings=settings)
    shown = watermark.apply_records(mark, fields, [dict(policy.present(entity, r), id=r.id)
                                                   for r in allowed])
    watermark.record(db, mark, [r.id for r in allowed])
    audit.record(db, "print", user=policy.user.username, ip=ip, entity=entity.value,
                 count=len(allowed),
                 meta={"context": context, "mark": str(mark.id),
                       "outside_book": sum(_outside_book(policy, r) for r in allowed)})
    return shown, watermark.footer(mark)


def _outside_book(policy: Policy, record: Any) -> int:
    return int(record.owner_id != policy.user.id)


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text
