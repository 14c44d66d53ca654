"""Read a file that may hold client data as tables of text cells.

Takes what a spreadsheet or a browser writes: CSV in any delimiter (``,``
``;`` tab ``|``) and encoding (UTF-8 with or without BOM, UTF-16, Windows
cp1252), XLSX workbooks (every sheet), and saved HTML pages (every table,
plus the page's other text, where a print's footer sits). Numbers, dates
and booleans from a workbook come back as a spreadsheet would write them to
CSV. Anything else is refused with a reason, never a traceback. Decoding and
parsing CSV is the kernel's ``csvfile``, the same reader the CRM's import uses.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time
from html.parser import HTMLParser
from pathlib import Path

from appliance.kernel import csvfile
from appliance.kernel.errors import BadRequest

MAX_BYTES = 256 * 1024 * 1024
MAX_LINE = 1024 * 1024
MAX_COLUMNS = 16_384  # what a spreadsheet holds
MAX_CELLS = 20_000_000
DELIMITERS = csvfile.DELIMITERS
_SAMPLE = csvfile.SAMPLE
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class UnreadableFile(BadRequest):
    """Cannot read {path}: {why}"""

    code = "unreadable_file"


@dataclass
class Table:
    """A file's content as sheets of rows of text cells, with what was learnt reading it."""

    path: str
    format: str
    size: int
    sha256: str
    encoding: str | None = None
    delimiter: str | None = None
    sheets: list[list[list[str]]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(sheet) for sheet in self.sheets)


def read_table(path: str | Path, *, max_bytes: int = MAX_BYTES) -> Table:
    """The file at ``path`` as a ``Table``; ``UnreadableFile`` says why it cannot be read."""
    name = str(path)
    try:
        size = Path(path).stat().st_size
        if size > max_bytes:
            raise UnreadableFile(path=name, why=f"it is larger than {max_bytes // 2**20} MB")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except IsADirectoryError:
        raise UnreadableFile(path=name, why="it is a folder, not a file") from None
    except OSError as exc:
        raise UnreadableFile(path=name, why=exc.strerror or str(exc)) from None
    return read_bytes(data, name)


def read_bytes(data: bytes, name: str = "<data>") -> Table:
    """``read_table`` for content already in memory."""
    if not data.strip():
        raise UnreadableFile(path=name, why="the file is empty")
    table = Table(path=name, format="", size=len(data), sha256=hashlib.sha256(data).hexdigest())
    if data.startswith(b"PK\x03\x04"):
        table.format, table.sheets = "xlsx", _read_xlsx(data, name)
        return table
    if data.startswith(_OLE):
        raise UnreadableFile(path=name, why="it is an old Excel (.xls) or Office file: save it "
                                            "as XLSX or CSV and trace that")
    text, table.encoding = _decode(data, name)
    if _looks_binary(text):
        raise _binary(name)
    head = text[:2048].lstrip().lower()
    if head.startswith(("<!doctype html", "<html")) or "<table" in head:
        table.format, table.sheets = "html", _read_html(text)
        return table
    table.format = "csv"
    table.delimiter = csvfile.guess_delimiter(text, DELIMITERS)
    table.sheets = [_read_csv(text, table.delimiter, name)]
    return table


# -- text ---------------------------------------------------------------------------


def _decode(data: bytes, name: str) -> tuple[str, str]:
    try:
        return csvfile.decode(data)
    except csvfile.NotText:
        raise _binary(name) from None
    except csvfile.BadEncoding as exc:
        raise UnreadableFile(path=name, why=f"it starts like {exc.encoding} text but is not "
                                            f"valid {exc.encoding}") from None


def _binary(name: str) -> UnreadableFile:
    return UnreadableFile(path=name, why="it is not text, a CSV or an XLSX workbook "
                                         "(it holds binary data)")


def _looks_binary(text: str) -> bool:
    sample = text[:_SAMPLE]
    controls = sum(1 for c in sample if (ord(c) < 32 and c not in "\t\n\r\f") or
                   0xD800 <= ord(c) <= 0xDFFF or c == "\ufffd")
    return controls * 100 > len(sample)


def _read_csv(text: str, delimiter: str, name: str) -> list[list[str]]:
    rows: list[list[str]] = []
    try:
        for row in csvfile.read_rows(text, delimiter=delimiter, max_line=MAX_LINE,
                                     max_columns=MAX_COLUMNS):
            if any(cell.strip() for cell in row):
                rows.append(row)
    except csvfile.LineTooLong as exc:
        raise UnreadableFile(path=name, why=f"line {exc.line} is longer than "
                                            f"{MAX_LINE // 2**20} MB: not a spreadsheet export") from None
    except csvfile.TooManyColumns as exc:
        raise UnreadableFile(path=name, why=f"line {exc.line} has more than "
                                            f"{MAX_COLUMNS} columns: not a spreadsheet") from None
    except csvfile.Malformed as exc:
        raise UnreadableFile(path=name, why=f"line {exc.line} is not CSV ({exc.detail}); is it "
                                            "a spreadsheet export?") from None
    if not rows:
        raise UnreadableFile(path=name, why="it holds no rows")
    return rows


# -- workbooks ----------------------------------------------------------------------


def _read_xlsx(data: bytes, name: str) -> list[list[list[str]]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise UnreadableFile(path=name, why=f"it is a ZIP archive but not an XLSX workbook "
                                            f"({exc or type(exc).__name__})") from None
    try:
        sheets, cells = [], 0
        for sheet in workbook.worksheets:
            rows = []
            for values in sheet.iter_rows(values_only=True):
                cells += len(values)
                if cells > MAX_CELLS or len(values) > MAX_COLUMNS:
                    raise UnreadableFile(path=name, why=f"the workbook holds more than "
                                                        f"{MAX_CELLS:,} cells")
                row = _trim([cell_text(v) for v in values])
                if any(c.strip() for c in row):
                    rows.append(row)
            if rows:
                sheets.append(rows)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise UnreadableFile(path=name, why=f"the workbook is damaged ({exc})") from None
    finally:
        workbook.close()
    if not sheets:
        raise UnreadableFile(path=name, why="the workbook holds no rows")
    return sheets


def cell_text(value: object) -> str:
    """A workbook value as a spreadsheet writes it to CSV."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _trim(row: list[str]) -> list[str]:
    while row and not row[-1]:
        row.pop()
    return row


# -- saved web pages ----------------------------------------------------------------


class _Tables(HTMLParser):
    """Rows of every ``<table>``; other text as one-cell rows (a print's footer)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.loose: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip(" \n\t"))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if any(self._row):
                self.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._cell is not None:
            self._cell.append(data)
        elif data.strip():
            self.loose.append([data.strip(" \n\t")])


def _read_html(text: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(text)
    parser.close()
    return [sheet for sheet in (parser.rows, parser.loose) if sheet]
