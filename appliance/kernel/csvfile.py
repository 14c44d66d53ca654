"""Uploaded CSV as text and rows: one decoder, one dialect guess and one parser for every
package that reads what a spreadsheet saved (the CRM's import, leak tracing).

Each step raises a ``CsvProblem`` that says where (``line``, counted from 1) and what; the
caller turns it into a message for its own readers. The field-size limit is the csv
module's: a longer cell is a ``CellTooLarge`` with its line, not a bare parser error.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator

#: Delimiters a spreadsheet writes: comma, semicolon (where the comma is the decimal
#: separator), tab, pipe.
DELIMITERS = ",;\t|"
SAMPLE = 64 * 1024

Dialect = csv.Dialect | type[csv.Dialect]


class CsvProblem(ValueError):
    """The data cannot be read as CSV: ``line`` (from 1, None for the whole file) and ``detail``."""

    def __init__(self, detail: str, line: int | None = None) -> None:
        super().__init__(detail if line is None else f"line {line}: {detail}")
        self.detail = detail
        self.line = line


class NotText(CsvProblem):
    """The data holds bytes no text file has (zero bytes outside UTF-16)."""


class BadEncoding(CsvProblem):
    """The data is not valid text in ``encoding``, the one it was read as."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"not valid {encoding}")
        self.encoding = encoding


class LineTooLong(CsvProblem):
    """A line is longer than ``limit`` characters."""

    def __init__(self, line: int, limit: int) -> None:
        super().__init__(f"longer than {limit} characters", line)
        self.limit = limit


class TooManyColumns(CsvProblem):
    """A row has more than ``limit`` cells."""

    def __init__(self, line: int, limit: int) -> None:
        super().__init__(f"more than {limit} columns", line)
        self.limit = limit


class Malformed(CsvProblem):
    """The parser stopped: a quote or a separator out of place (``detail`` is its own words)."""


class CellTooLarge(Malformed):
    """A cell is longer than the csv module's field-size limit (``limit``)."""

    def __init__(self, detail: str, line: int | None, limit: int) -> None:
        super().__init__(detail, line)
        self.limit = limit


# -- text ---------------------------------------------------------------------------


def decode(data: bytes, *, utf8_only: bool = False) -> tuple[str, str]:
    """The data as text, and the encoding it was read in.

    UTF-8, with or without a BOM, always. Unless ``utf8_only``, also what spreadsheets on
    other systems save: UTF-16 (with a BOM, or told by the zero bytes of ASCII text without
    one) and single-byte Windows text (cp1252, else latin-1), including a UTF-8 BOM over
    cp1252 text, which some tools write. ``utf8_only`` is for text that will be stored: a
    wrong guess would store garbled values.
    """
    if utf8_only:
        try:
            return data.decode("utf-8-sig"), "utf-8-sig"
        except UnicodeDecodeError:
            raise BadEncoding("utf-8") from None
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data.decode("utf-8-sig"), "utf-8-sig"
        except UnicodeDecodeError:  # a BOM over cp1252 text
            return _single_byte(data[len(codecs.BOM_UTF8):])
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(data, "utf-16"), "utf-16"
    sample = data[:SAMPLE]
    if len(sample) >= 4 and sample.count(0) * 3 > len(sample):  # UTF-16 without a BOM
        even_zeros = sample[0::2].count(0) > sample[1::2].count(0)
        encoding = "utf-16-be" if even_zeros else "utf-16-le"
        return _strict(data, encoding), encoding
    if b"\x00" in sample:
        raise NotText("it holds binary data")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return _single_byte(data)


def _single_byte(data: bytes) -> tuple[str, str]:
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise BadEncoding(encoding) from None


# -- dialect ------------------------------------------------------------------------


def sniff(sample: str, delimiters: str = DELIMITERS) -> Dialect | None:
    """The dialect the csv module's sniffer sees in ``sample``, or None when it cannot tell."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=delimiters)
    except csv.Error:
        return None


def guess_delimiter(text: str, delimiters: str = DELIMITERS) -> str:
    """The delimiter of the first 50 non-blank lines; where the sniffer gives up (ragged
    rows), the one most lines share."""
    lines = [line for line in text[:SAMPLE].splitlines()[:50] if line.strip()]
    sniffed = sniff("\n".join(lines), delimiters)
    if sniffed is not None:
        return sniffed.delimiter
    best, best_score = ",", 0
    for delimiter in delimiters:
        counts = [line.count(delimiter) for line in lines]
        score = sum(1 for c in counts if c and c == max(counts, default=0))
        if score > best_score:
            best, best_score = delimiter, score
    return best


# -- rows ---------------------------------------------------------------------------


def read_rows(text: str, dialect: Dialect = csv.excel, *, delimiter: str | None = None,
              bare_cr_ends_line: bool = True, max_line: int | None = None,
              max_columns: int | None = None) -> Iterator[list[str]]:
    """Every row of ``text`` as a list of cells, blank rows included, parsed lazily.

    ``bare_cr_ends_line`` reads a lone carriage return as a line end (old Mac files);
    without it such a line is ``Malformed``. ``max_line`` refuses an over-long line before
    any row is parsed, ``max_columns`` a row with too many cells.
    """
    newline = "" if bare_cr_ends_line else "\n"
    if max_line is not None:
        for number, line in enumerate(io.StringIO(text, newline=""), start=1):
            if len(line) > max_line:
                raise LineTooLong(number, max_line)
    source = io.StringIO(text, newline=newline)
    reader = csv.reader(source, dialect) if delimiter is None else \
        csv.reader(source, dialect, delimiter=delimiter)
    try:
        for row in reader:
            if max_columns is not None and len(row) > max_columns:
                raise TooManyColumns(reader.line_num, max_columns)
            yield row
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise CellTooLarge(str(exc), reader.line_num, csv.field_size_limit()) from None
        raise Malformed(str(exc), reader.line_num) from None
