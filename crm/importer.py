"""CSV import of accounts: preview first, then all rows or none.

The uploaded file is checked as a whole (encoding, header, every row through
the same record service as a hand-made record, duplicates within the file
and against existing accounts) inside a transaction that is rolled back; the
person sees every problem with its row number. Only a clean file can be
imported, and the import is one transaction: nothing is ever half-imported.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String, Uuid, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from appliance.kernel import csvfile
from appliance.kernel.errors import BadRequest, CitadelError, NotFound
from appliance.kernel.orm import new_id, utcnow
from appliance.keys import encrypted_field
from crm.access import Entity, Policy
from crm.base import Base
from crm.hooks import canary_positions, watermark
from crm.models import Account
from crm.records import RecordService
from crm.validation import SCHEMAS

MAX_ROWS = 20_000
KEEP_FOR = timedelta(hours=1)
COLUMNS = tuple(name for name in SCHEMAS["account"] if name != "team_id")
#: Columns an export carries that an import reads but does not store (new records get new ids;
#: the team follows the owner).
IGNORED = ("id", "team_id")
ALIASES = {"company": "name", "account": "name", "vat": "tax_id", "tax id": "tax_id",
           "e-mail": "email", "mail": "email", "telephone": "phone", "tel": "phone",
           "owner": "owner_id"}


class ImportBatch(Base):
    """An uploaded file waiting for its preview to be confirmed (kept one hour)."""

    __tablename__ = "import_batches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(200))
    content = encrypted_field(deferred=True)  # the file's text: client data, so encrypted
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FileProblem(BadRequest):
    """{detail}"""

    code = "import_file"


@dataclass
class Preview:
    columns: list[str]
    rows: list[dict[str, str]]
    errors: dict[int, dict[str, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse(content: bytes) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of an uploaded CSV, or a ``FileProblem`` saying how to fix the file."""
    try:
        text, _ = csvfile.decode(content, utf8_only=True)
    except csvfile.BadEncoding:
        raise FileProblem(detail="The file is not UTF-8 text. In your spreadsheet, save it as "
                                 "'CSV UTF-8' and upload it again.") from None
    if not text.strip():
        raise FileProblem(detail="The file is empty.")
    dialect = csvfile.sniff(text[:4096], ",;\t") or csv.excel
    try:
        return _rows(csvfile.read_rows(text, dialect, bare_cr_ends_line=False))
    except csvfile.Malformed as exc:
        raise FileProblem(detail=f"Line {exc.line} of the file cannot be read as CSV: "
                                 f"{_csv_problem(exc)}. Fix it in a spreadsheet, save the file as "
                                 "CSV again and upload it.") from None


def _csv_problem(exc: csvfile.Malformed) -> str:
    """What the csv module found, in words a person can act on."""
    if isinstance(exc, csvfile.CellTooLarge):
        return f"a cell is longer than {exc.limit:,} characters"
    return "a quote or a separator is out of place"


def _rows(reader: Iterator[list[str]]) -> tuple[list[str], list[dict[str, str]]]:
    header = [_column(h) for h in next(reader)]
    unknown = [h for h in header if h not in COLUMNS and h not in IGNORED]
    if unknown:
        raise FileProblem(detail=f"Unknown column(s): {', '.join(unknown)}. "
                                 f"Use these names: {', '.join(COLUMNS)}.")
    if "name" not in header:
        raise FileProblem(detail="The file needs a 'name' column (the company name).")
    if len(set(header)) != len(header):
        raise FileProblem(detail="A column appears twice in the header.")
    rows = []
    for number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise FileProblem(detail=f"Row {number} has {len(cells)} cells but the header has "
                                     f"{len(header)}. Check for stray separators or quotes.")
        rows.append(dict(zip(header, cells, strict=True), _row=str(number)))
        if len(rows) > MAX_ROWS:
            raise FileProblem(detail=f"At most {MAX_ROWS} rows per import; split the file.")
    if not rows:
        raise FileProblem(detail="The file has a header but no rows.")
    return header, rows


def without_marks(db: Session, columns: list[str], rows: list[dict[str, str]]
                  ) -> tuple[list[str], list[dict[str, str]]]:
    """An exported file imported back: its decoy canary rows dropped (they must never
    become real accounts) and its invisible marks undone."""
    header = ["id", *(c for c in columns if c != "id")]
    cells = [[row.get(c, "") for c in header] for row in rows]
    canaries = set(canary_positions(db, header, cells))
    kept = [{k: (v if k == "_row" else watermark.plain(v)) for k, v in row.items()}
            for i, row in enumerate(rows) if i not in canaries]
    return columns, kept


def _column(name: str) -> str:
    key = name.strip().lower()
    return ALIASES.get(key, key.replace(" ", "_"))


def check(db: Session, policy: Policy, content: bytes, ip: str | None = None) -> Preview:
    """Try the whole import and roll it back: every problem, with its row number."""
    columns, rows = without_marks(db, *parse(content))
    preview = Preview(columns, rows)
    _duplicates(db, policy, preview)
    with db.begin_nested() as attempt:
        _create_all(db, policy, preview, ip)
        attempt.rollback()
    return preview


def commit(db: Session, policy: Policy, batch: ImportBatch, ip: str | None = None) -> int:
    """Import a previewed batch in one transaction; refuse if anything is wrong now."""
    preview = check(db, policy, batch.content.encode(), ip)
    if not preview.ok:
        raise FileProblem(detail="The file has problems; open the preview to see them.")
    _create_all(db, policy, preview, ip)
    db.delete(batch)
    return len(preview.rows)


def _create_all(db: Session, policy: Policy, preview: Preview, ip: str | None) -> None:
    service = RecordService(db, policy, ip)
    for row in preview.rows:
        data = {k: v for k, v in row.items() if k not in ("_row", *IGNORED) and v.strip() != ""}
        number = int(row["_row"])
        try:
            with db.begin_nested():
                service.create(Entity.ACCOUNT, data)
        except CitadelError as exc:
            preview.errors.setdefault(number, {}).update(
                getattr(exc, "errors", None) or {"row": exc.message})


def _duplicates(db: Session, policy: Policy, preview: Preview) -> None:
    """Rows repeating another row, or an account that already exists (same tax id or e-mail)."""
    seen: dict[tuple[str, str], int] = {}
    for row in preview.rows:
        number = int(row["_row"])
        for key in ("tax_id", "email"):
            value = (row.get(key) or "").strip().lower()
            if not value:
                continue
            if (key, value) in seen:
                preview.errors.setdefault(number, {})[key] = f"repeats row {seen[(key, value)]}"
            seen.setdefault((key, value), number)
    tax_ids = [v for (k, v) in seen if k == "tax_id"]
    emails = [v for (k, v) in seen if k == "email"]
    if not (tax_ids or emails):
        return
    taken_tax = {bytes(t) for t in db.scalars(select(Account.tax_id.index).where(
        Account.tax_id.matches_any(tax_ids)))}
    taken_email = {bytes(e) for e in db.scalars(select(Account.email.index).where(
        Account.email.matches_any(emails)))}
    for row in preview.rows:
        for key, column, taken in (("tax_id", Account.tax_id, taken_tax),
                                  ("email", Account.email, taken_email)):
            value = (row.get(key) or "").strip()
            if value and taken & set(column.terms(value)):
                preview.errors.setdefault(int(row["_row"]), {})[key] = \
                    "an account with this value already exists"


def save_batch(db: Session, policy: Policy, filename: str, content: bytes, rows: int) -> ImportBatch:
    db.execute(delete(ImportBatch).where(ImportBatch.created_at < datetime.now(UTC) - KEEP_FOR))
    batch = ImportBatch(id=new_id(), user_id=policy.user.id, filename=filename[:200],
                        content=csvfile.decode(content, utf8_only=True)[0], row_count=rows)
    db.add(batch)
    return batch


def load_batch(db: Session, policy: Policy, batch_id: str) -> ImportBatch:
    """The user's own pending upload; anyone else's does not exist."""
    try:
        key = uuid.UUID(batch_id)
    except ValueError:
        raise NotFound(entity="import") from None
    batch = db.get(ImportBatch, key)
    if batch is None or batch.user_id != policy.user.id or \
            batch.created_at < datetime.now(UTC) - KEEP_FOR:
        raise NotFound(entity="import")
    return batch

