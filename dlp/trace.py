"""Trace a leaked file to the exports and prints it came from.

1. Read the file (``dlp.sensors.readers``) and tell what each column holds,
   by its header if it has a known one, else by its content.
2. Recognise rows as client records (ids, e-mails, phones, tax ids through
   the CRM's blind indexes; company names) and find the marked exports that
   contained them: these are the candidates.
3. Look every value up among the canaries, and every text for a print's
   reference: a canary or a reference names its export outright.
4. For each candidate, read the formatting bit of every marked cell and
   compare it with the bit that export's key gives that value. A file that
   is not that export agrees on each bit by chance (one in two); the
   binomial tail of the agreements is the chance of the agreement, times
   the number of candidates tried.

A candidate's confidence is ``1 - chance``; at ``FOUND`` (0.999999) and above it
names the source. docs/watermarks.md gives the reasoning and its limits.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scipy.stats import binom
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.keys import state
from appliance.keys.blind import normalise_email, normalise_phone, normalise_tax_id
from appliance.keys.primitives import hmac_sha256
from crm.access import FIELDS
from crm.readapi import STRONG, ClientIndex
from dlp import watermark
from dlp.canaries import ALIASES, canonical, name_key, website_host
from dlp.models import CanaryKey, CanaryRow, ExportMark, MarkedRecord
from dlp.sensors.readers import Table, read_table

FOUND = 0.999999
MAX_CANDIDATES = 200
#: Marked values tested per candidate: a few thousand already decide beyond any doubt.
MAX_TESTED = 5000
#: Chance that a value equals one canary's by accident, per kind of value: invented
#: addresses, numbers and ids are all but unique; invented names are not.
P_CANARY = {"id": 1e-12, "email": 1e-9, "tax_id": 1e-6, "phone": 1e-6, "website": 1e-6,
            "name": 1e-2, "person": 1e-2}
P_REFERENCE = 2.0 ** -40
_CHUNK = 500

_UUID = re.compile(r"^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$", re.I)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^(?:https?://)?(?:www\.)?[^\s/@]+\.[a-z]{2,}(?:/\S*)?$", re.I)
_PHONE = re.compile(r"^\+?[0-9 ()./\-]{6,}$")
_TAX = re.compile(r"^[A-Z]{2,3} ?[0-9A-Z .\-/]{5,}$")
_REFERENCE = re.compile(r"\bref\.?\s*([0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4})\b", re.I)
_KNOWN = {f for names in FIELDS.values() for f in names} | set(ALIASES.values()) | {"id"}
_CHANNEL_OF_KIND = {"email": watermark.EMAIL, "phone": watermark.PHONE,
                    "tax_id": watermark.TAX_ID, "website": watermark.WEBSITE,
                    "text": watermark.TEXT}


# -- results ------------------------------------------------------------------------


@dataclass
class Match:
    """One export or print a file (partly) came from, with the evidence."""

    mark_id: str
    export_id: str | None
    channel: str
    user: str
    user_id: int
    entity: str
    created_at: str
    reference: str
    confidence: float
    chance: float
    canaries: list[dict[str, Any]] = field(default_factory=list)
    marks_matched: int = 0
    marks_tested: int = 0
    rows_matched: int = 0
    rows_share: float = 0.0
    reference_found: bool = False
    reasons: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TraceReport:
    """What ``trace`` learnt about one file."""

    path: str
    format: str
    size: int
    sha256: str
    rows: int = 0
    recognised: int = 0
    strong_rows: int = 0
    records: int = 0
    canary_rows: int = 0
    trap_addresses: int = 0
    matches: list[Match] = field(default_factory=list)
    candidates: list[Match] = field(default_factory=list)
    record_ids: set[uuid.UUID] = field(default_factory=set, repr=False)

    @property
    def found(self) -> bool:
        return bool(self.matches)

    def to_json(self) -> dict[str, Any]:
        return {"file": {"path": self.path, "format": self.format, "size": self.size,
                         "sha256": self.sha256},
                "rows": self.rows, "recognised_rows": self.recognised,
                "client_records": self.records, "canary_rows": self.canary_rows,
                "trap_addresses": self.trap_addresses, "found": self.found,
                "matches": [m.to_json() for m in self.matches],
                "candidates": [m.to_json() for m in self.candidates]}


# -- reading columns ------------------------------------------------------------------


@dataclass
class Column:
    index: int
    title: str
    field: str
    kind: str


@dataclass
class Row:
    sheet: int
    number: int
    cells: list[str]
    records: set[uuid.UUID] = field(default_factory=set)
    weak: set[uuid.UUID] = field(default_factory=set)
    canaries: set[uuid.UUID] = field(default_factory=set)
    values: list[tuple[str, str, Column, str]] | None = None
    known: set[uuid.UUID] = field(default_factory=set)  # records | weak, once recognised

    def where(self) -> str:
        return f"row {self.number}" if self.sheet == 0 else f"sheet {self.sheet + 1} row {self.number}"


def _looks_like_data(cell: str) -> bool:
    text = cell.strip()
    return bool(_UUID.match(text) or _EMAIL.match(text) or
                (_PHONE.match(text) and sum(c.isdigit() for c in text) >= 7))


def _kind_of_field(name: str) -> str | None:
    if name == "id":
        return "id"
    if name in ("email", "phone", "tax_id", "website"):
        return name
    if name in watermark.TEXT_FIELDS:
        return "text"
    return "other" if name in _KNOWN else None


def _kind_of_content(cells: list[str]) -> str:
    sample = [c.strip() for c in cells if c.strip()][:200]
    if not sample:
        return "other"

    def share(test: Any) -> float:
        return sum(1 for c in sample if test(c)) / len(sample)

    if share(_UUID.match) >= 0.6:
        return "id"
    if share(_EMAIL.match) >= 0.6:
        return "email"
    if share(lambda c: _PHONE.match(c) and sum(d.isdigit() for d in c) >= 7) >= 0.6:
        return "phone"
    if share(lambda c: _URL.match(c) and "@" not in c) >= 0.6:
        return "website"
    if share(lambda c: _TAX.match(c.upper()) and sum(d.isdigit() for d in c) >= 5) >= 0.6:
        return "tax_id"
    return "text" if share(watermark.TEXT.applies) >= 0.3 else "other"


def columns_of(sheet: list[list[str]]) -> tuple[list[Column], list[list[str]]]:
    """The columns of a sheet and its data rows (the header row, if any, left out).

    The first row is a header when it names a known field, or when it holds no
    data-like value (id, e-mail, phone) while the rows below it do.
    """
    width = max(len(r) for r in sheet)
    first = sheet[0]
    known = any(canonical(c) in _KNOWN for c in first if c.strip())
    header = len(sheet) > 1 and not any(_looks_like_data(c) for c in first) and (
        known or any(_looks_like_data(c) for r in sheet[1:6] for c in r))
    data = sheet[1:] if header else sheet
    columns = []
    for index in range(width):
        title = first[index] if header and index < len(first) else ""
        name = canonical(title) if title else ""
        kind = _kind_of_field(name) or _kind_of_content(
            [r[index] if index < len(r) else "" for r in data])
        columns.append(Column(index, title or f"column {index + 1}", name, kind))
    return columns, data


# -- tracing ------------------------------------------------------------------------


def trace_file(db: Session, path: str | Path, *, settings: Any | None = None) -> list[Match]:
    """The exports and prints the file at ``path`` came from, most certain first."""
    return trace_report(db, path, settings=settings).matches


def trace_report(db: Session, path: str | Path | Table, *,
                 settings: Any | None = None) -> TraceReport:
    """Everything ``trace`` learnt about a file (``UnreadableFile`` if it cannot be read)."""
    table = path if isinstance(path, Table) else read_table(path)
    traps = watermark.MarkSettings.from_settings(settings).canary_domains
    return Tracer(db, table, traps).run()


class Tracer:
    """One run of the trace algorithm over one file (see the module docstring)."""

    def __init__(self, db: Session, table: Table, trap_domains: Sequence[str] = ()) -> None:
        self.db, self.table, self.traps = db, table, tuple(trap_domains)
        self.keyring = state.current()
        self.rows: list[Row] = []
        self.columns: dict[int, list[Column]] = {}
        self.canary_cells: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        self.canary_kinds: dict[uuid.UUID, set[str]] = defaultdict(set)
        self.canary_mark: dict[uuid.UUID, uuid.UUID] = {}
        self.references: set[uuid.UUID] = set()
        self.rows_in: Counter[uuid.UUID] = Counter()

    def run(self) -> TraceReport:
        table = self.table
        report = TraceReport(table.path, table.format, table.size, table.sha256)
        for number, sheet in enumerate(table.sheets):
            columns, data = columns_of(sheet)
            self.columns[number] = columns
            offset = len(sheet) - len(data)
            self.rows.extend(Row(number, offset + i + 1, r) for i, r in enumerate(data))
        report.rows = len(self.rows)
        self._recognise()
        self._find_canaries()
        self._find_references()
        report.recognised = sum(1 for r in self.rows if r.known)
        report.strong_rows = sum(1 for r in self.rows if r.records)
        report.record_ids = {i for r in self.rows for i in r.records}
        report.records = len(report.record_ids)
        report.canary_rows = sum(1 for r in self.rows if r.canaries)
        report.trap_addresses = self._trap_addresses()
        matches = self._score(self._candidates())
        report.matches = [m for m in matches if m.confidence >= FOUND]
        report.candidates = [m for m in matches if m.confidence < FOUND][:10]
        return report

    # -- cells by kind --

    def _cells(self, *kinds: str) -> Iterable[tuple[Row, Column, str]]:
        for row in self.rows:
            for column in self.columns[row.sheet]:
                if column.kind in kinds and column.index < len(row.cells):
                    cell = row.cells[column.index]
                    if cell.strip():
                        yield row, column, cell

    def _values(self, row: Row) -> list[tuple[str, str, Column, str]]:
        """(kind, normalised value, column, cell) of every identifying value of a row."""
        if row.values is None:
            row.values = list(self._identify(row))
        return row.values

    def _identify(self, row: Row) -> Iterable[tuple[str, str, Column, str]]:
        columns = self.columns[row.sheet]
        for column in columns:
            if column.index >= len(row.cells) or not row.cells[column.index].strip():
                continue
            cell = row.cells[column.index]
            for kind, value in _identities(column, cell):
                yield kind, value, column, cell
        first = next((c for c in columns if c.field == "first_name"), None)
        last = next((c for c in columns if c.field == "last_name"), None)
        if first and last and max(first.index, last.index) < len(row.cells):
            person = name_key(f"{row.cells[first.index]} {row.cells[last.index]}")
            if person:
                yield "person", person, last, row.cells[last.index]

    # -- steps --

    def _recognise(self) -> None:
        wanted: dict[str, set[str]] = defaultdict(set)
        for row in self.rows:
            for kind, value, column, _cell in self._values(row):
                if kind in STRONG or (kind == "name" and _names_clients(column)):
                    wanted[kind].add(value)
        index = ClientIndex(self.db)
        found = {kind: index.lookup(kind, values) for kind, values in wanted.items()}
        for row in self.rows:
            for kind, value, column, _cell in self._values(row):
                ids = found.get(kind, {}).get(value, set())
                if kind in STRONG:
                    row.records |= ids
                elif kind == "name" and _names_clients(column):
                    row.weak |= ids
            row.known = row.records | row.weak

    def _find_canaries(self) -> None:
        by_value: dict[tuple[str, str], list[tuple[Row, Column, str]]] = defaultdict(list)
        ids: dict[uuid.UUID, list[tuple[Row, Column, str]]] = defaultdict(list)
        for row in self.rows:
            for kind, value, column, cell in self._values(row):
                if kind == "id":
                    ids[uuid.UUID(value)].append((row, column, cell))
                elif kind == "name" and not _names_clients(column):
                    continue  # a real client's city "Lemoine" is no decoy company "Lemoine"
                else:
                    by_value[(kind, value)].append((row, column, cell))
        by_fingerprint: dict[bytes, list[tuple[Row, Column, str, str]]] = defaultdict(list)
        for (kind, value), places in by_value.items():
            for fp in watermark.all_fingerprints(kind, value, self.keyring):
                by_fingerprint[fp].extend((row, column, cell, kind) for row, column, cell in places)
        for chunk in _chunks(list(ids)):
            for canary_id, mark_id in self.db.execute(
                    select(CanaryRow.id, CanaryRow.mark_id).where(CanaryRow.id.in_(chunk))):
                for row, column, cell in ids[canary_id]:
                    self._canary(canary_id, mark_id, row, column, cell, "id")
        for chunk in _chunks(list(by_fingerprint)):
            for fp, canary_id, mark_id in self.db.execute(
                    select(CanaryKey.fingerprint, CanaryKey.canary_id, CanaryRow.mark_id)
                    .join(CanaryRow, CanaryRow.id == CanaryKey.canary_id)
                    .where(CanaryKey.fingerprint.in_(chunk))):
                for row, column, cell, kind in by_fingerprint[bytes(fp)]:
                    self._canary(canary_id, mark_id, row, column, cell, kind)

    def _canary(self, canary_id: uuid.UUID, mark_id: uuid.UUID, row: Row, column: Column,
                cell: str, kind: str) -> None:
        row.canaries.add(canary_id)
        self.canary_mark[canary_id] = mark_id
        if kind not in self.canary_kinds[canary_id]:
            self.canary_kinds[canary_id].add(kind)
            self.canary_cells[canary_id].append(
                {"where": row.where(), "column": column.title, "kind": kind, "value": cell})

    def _find_references(self) -> None:
        codes: set[str] = set()
        for row in self.rows:
            for cell in row.cells:
                codes.update(watermark.hidden_references(cell))
                codes.update(m.group(1).upper() for m in _REFERENCE.finditer(cell))
        for chunk in _chunks(sorted(codes)):
            self.references.update(self.db.scalars(
                select(ExportMark.id).where(ExportMark.reference.in_(chunk))))

    def _trap_addresses(self) -> int:
        if not self.traps:
            return 0
        return sum(1 for _r, _c, cell in self._cells("email")
                   if cell.strip().rpartition("@")[2].lower() in self.traps)

    def _candidates(self) -> dict[uuid.UUID, set[uuid.UUID]]:
        """Marks that held any recognised record (with those records), the likeliest first,
        plus every mark a canary or reference names."""
        known = sorted({i for r in self.rows for i in r.known})
        held: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        marks_of: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        for chunk in _chunks(known):
            for record_id, mark_id in self.db.execute(
                    select(MarkedRecord.record_id, MarkedRecord.mark_id)
                    .where(MarkedRecord.record_id.in_(chunk))):
                held[mark_id].add(record_id)
                marks_of[record_id].add(mark_id)
        for row in self.rows:  # each row counts once for every mark that held it
            self.rows_in.update(set().union(*(marks_of.get(i, ()) for i in row.known)))
        chosen = [m for m, _n in self.rows_in.most_common(MAX_CANDIDATES)]
        named = set(self.canary_mark.values()) | self.references
        return {m: held.get(m, set()) for m in [*chosen, *(named - set(chosen))]}

    def _score(self, candidates: dict[uuid.UUID, set[uuid.UUID]]) -> list[Match]:
        if not candidates:
            return []
        marks = {m.id: m for chunk in _chunks(list(candidates))
                 for m in self.db.scalars(select(ExportMark).where(ExportMark.id.in_(chunk)))}
        cells = list(self._marked_cells())
        tried = max(1, len(marks))
        recognised = sum(1 for r in self.rows if r.known)
        matches = [self._match(mark, candidates[mark.id], cells, tried, recognised)
                   for mark in marks.values()]
        return sorted(matches, key=lambda m: (-m.confidence, m.chance, -m.rows_matched))

    def _marked_cells(self) -> Iterable[tuple[Row, tuple[str, str], int, bytes]]:
        """(row, (channel, normalised value), bit read, what a key is applied to) per cell."""
        for row in self.rows:
            for column in self.columns[row.sheet]:
                channel = _CHANNEL_OF_KIND.get(column.kind)
                if channel is None or column.index >= len(row.cells):
                    continue
                cell = row.cells[column.index]
                if cell and channel.applies(cell):
                    normal = channel.normal(cell)
                    yield (row, (channel.name, normal), channel.read(cell),
                           watermark.bit_message(channel, normal))

    def _match(self, mark: ExportMark, held: set[uuid.UUID],
               cells: list[tuple[Row, tuple[str, str], int, bytes]], tried: int,
               recognised: int) -> Match:
        key = watermark.MarkKeys(self.keyring, mark.key_version).mark_key(mark.id)
        own = {c for c, m in self.canary_mark.items() if m == mark.id}
        seen: set[tuple[str, str]] = set()
        agree = tested = 0
        for row, slot, observed, message in cells:
            if row.known and not (row.known & held) and not (row.canaries & own):
                continue  # a row this export did not hold says nothing about its key
            if slot in seen:
                continue  # the same value twice is one piece of evidence
            if tested == MAX_TESTED:
                break
            seen.add(slot)
            tested += 1
            agree += (hmac_sha256(key, message)[0] & 1) == observed
        chance = float(binom.sf(agree - 1, tested, 0.5)) if tested else 1.0
        canaries = [cell for c in own for cell in self.canary_cells[c]]
        for canary in own:
            chance *= min(P_CANARY.get(k, 1e-2) for k in self.canary_kinds[canary])
        if mark.id in self.references:
            chance *= P_REFERENCE
        rows_matched = self.rows_in[mark.id]
        match = Match(
            mark_id=str(mark.id), export_id=str(mark.export_id) if mark.export_id else None,
            channel=mark.channel, user=mark.username, user_id=mark.user_id, entity=mark.entity,
            created_at=mark.created_at.isoformat(), reference=mark.reference,
            confidence=round(max(0.0, 1.0 - chance * tried), 6), chance=chance,
            canaries=canaries, marks_matched=agree, marks_tested=tested,
            rows_matched=rows_matched,
            rows_share=round(rows_matched / recognised, 4) if recognised else 0.0,
            reference_found=mark.id in self.references)
        match.reasons = _reasons(match, len(own))
        return match


def _names_clients(column: Column) -> bool:
    """A column that may hold client names: called so, or an unnamed text column."""
    return column.kind == "text" and column.field in ("name", "")


def _identities(column: Column, cell: str) -> list[tuple[str, str]]:
    """The normalised identifying values one cell may hold, given its column."""
    text = cell.strip()
    out: list[tuple[str, str]] = []
    if _UUID.match(text):
        out.append(("id", str(uuid.UUID(text.strip("{}")))))
    if _EMAIL.match(text):
        out.append(("email", normalise_email(text)))
    if column.kind == "phone" and "*" not in text:
        digits = normalise_phone(text)
        if len(digits) >= 6:
            out.append(("phone", digits))
    elif column.kind == "tax_id" and "*" not in text:
        value = normalise_tax_id(text)
        if len(value) >= 6:
            out.append(("tax_id", value))
    elif column.kind == "website":
        out.append(("website", website_host(text)))
    elif column.kind == "text" and column.field not in ("first_name", "last_name"):
        out.append(("name", name_key(text)))
    return [(k, v) for k, v in out if v]


def _reasons(match: Match, canaries: int) -> list[str]:
    reasons = []
    if canaries:
        reasons.append(f"{canaries} canary row{'s' if canaries > 1 else ''} made only for this "
                       f"{match.channel}")
    if match.reference_found:
        reasons.append(f"the {match.channel}'s reference {match.reference} is in the file")
    if match.marks_tested:
        reasons.append(f"{match.marks_matched} of {match.marks_tested} formatting marks match "
                       f"this {match.channel}'s key (by chance: {_odds(match.chance)})")
    if match.rows_matched:
        reasons.append(f"{match.rows_matched} of the file's recognised rows were in this "
                       f"{match.channel} ({match.rows_share:.0%})")
    return reasons


def _odds(chance: float) -> str:
    if chance <= 0:
        return "below 1 in 10^300"
    if chance >= 0.01:
        return f"{chance:.0%}"
    return f"1 in 10^{math.floor(-math.log10(chance))}"


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def canary_positions(db: Session, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """Which of ``rows`` are canaries (0-based): for an import of an exported file, which
    must never turn its decoys into real records."""
    table = Table(path="<import>", format="csv", size=0, sha256="",
                  sheets=[[list(header), *[list(r) for r in rows]]])
    tracer = Tracer(db, table)
    for number, sheet in enumerate(table.sheets):
        columns, data = columns_of(sheet)
        tracer.columns[number] = columns
        tracer.rows.extend(Row(number, i + 1, r) for i, r in enumerate(data))
    tracer._find_canaries()
    offset = len(rows) - len(tracer.rows)
    return [i + offset for i, row in enumerate(tracer.rows) if row.canaries]
