"""Exports as XLSX workbooks that keep their marks.

Every cell is written as text, exactly as the CSV export would hold it, so a
phone number keeps its spaces and leading zeros, an id keeps its case, and
no value ever becomes a formula (a workbook cell typed as text is never
evaluated, so no CSV-style guard is needed). Only ``amount`` and
``probability`` cells that are plain numbers are written as numbers, so
people can add them up; no mark lives in those columns.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font

MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NUMERIC_COLUMNS = frozenset({"amount", "probability"})
_PLAIN_NUMBER = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")
_MAX_CELL = 32_767  # what a spreadsheet cell holds


def write_xlsx(header: Sequence[str], rows: Sequence[Sequence[str]], *,
               sheet: str = "Export") -> bytes:
    """A workbook with one sheet: the header in bold, frozen above the rows."""
    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet(sheet[:31])
    worksheet.freeze_panes = "A2"
    bold = Font(bold=True)
    numeric = [str(h).strip().lower() in NUMERIC_COLUMNS for h in header]
    worksheet.append([_cell(worksheet, h, font=bold) for h in header])
    for row in rows:
        worksheet.append([_cell(worksheet, value, number=i < len(numeric) and numeric[i])
                          for i, value in enumerate(row)])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _cell(worksheet: object, value: object, *, font: Font | None = None,
          number: bool = False) -> WriteOnlyCell:
    text = "" if value is None else str(value)
    if number and _PLAIN_NUMBER.match(text):
        try:
            cell = WriteOnlyCell(worksheet, value=Decimal(text))
            return cell
        except InvalidOperation:
            pass
    cell = WriteOnlyCell(worksheet, value=ILLEGAL_CHARACTERS_RE.sub("", text)[:_MAX_CELL])
    cell.data_type = "s"  # text, even when it starts with "=": never a formula
    if font is not None:
        cell.font = font
    return cell
