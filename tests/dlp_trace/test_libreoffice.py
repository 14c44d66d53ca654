"""Marks through a real spreadsheet: LibreOffice opens the export and saves it again.

Needs ``soffice`` (Debian: ``libreoffice-calc-nogui``); skipped loudly without it.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from openpyxl import load_workbook

from dlp import watermark
from dlp.canaries import canonical
from dlp.sensors.readers import read_bytes
from dlp.trace import FOUND, trace_report
from tests.dlp_trace.conftest import export

SOFFICE = shutil.which("soffice")
pytestmark = pytest.mark.skipif(SOFFICE is None, reason="LibreOffice is not installed: "
                                "apt-get install libreoffice-calc-nogui")
#: LibreOffice's CSV filter: separator, quote, character set (76 UTF-8, 1252, 65535 UTF-16).
SEMICOLON_CP1252 = "csv:Text - txt - csv (StarCalc):59,34,1252"
TAB_UTF16 = "csv:Text - txt - csv (StarCalc):9,34,65535"


def convert(source: Path, target: str, workdir: Path) -> Path:
    """``soffice --convert-to`` with a profile of its own (runs may not share one). A CSV is
    opened as UTF-8, as a person picks it in Calc's import dialog."""
    out = workdir / f"out-{source.stem}-{target.split(':')[0]}"
    out.mkdir(exist_ok=True)
    opened = ["--infilter=CSV:44,34,76"] if source.suffix == ".csv" else []
    subprocess.run([SOFFICE, f"-env:UserInstallation=file://{workdir}/profile", "--headless",
                    *opened, "--convert-to", target, "--outdir", str(out), str(source)],
                   check=True, capture_output=True, timeout=180)
    produced = list(out.iterdir())
    assert len(produced) == 1, produced
    return produced[0]


def bits(header: list[str], rows: list[list[str]]) -> dict[tuple[str, str], int]:
    """Every formatting bit a file carries, by (channel, normalised value)."""
    found = {}
    channels = [watermark.channel_for(canonical(h)) for h in header]
    for row in rows:
        for channel, cell in zip(channels, row, strict=False):
            if channel is not None and cell and channel.applies(cell):
                found[(channel.name, channel.normal(cell))] = channel.read(cell)
    return found


def test_every_channel_survives_csv_to_xlsx_to_csv_in_libreoffice(book, db, tmp_path):
    done = export(db, book.users["mark"])
    source = tmp_path / "accounts.csv"
    source.write_bytes(done.csv())
    workbook = convert(source, "xlsx", tmp_path)
    again = convert(workbook, SEMICOLON_CP1252, tmp_path)
    table = read_bytes(again.read_bytes(), again.name)
    assert (table.delimiter, table.encoding) == (";", "cp1252")
    before, after = bits(done.header, done.marked), bits(table.sheets[0][0], table.sheets[0][1:])
    for channel in ("email", "phone", "tax_id", "website", "text"):
        mine = {k: v for k, v in before.items() if k[0] == channel}
        kept = sum(after.get(k) == v for k, v in mine.items())
        assert mine and kept == len(mine), (channel, kept, len(mine))
    report = trace_report(db, table)
    assert report.matches[0].user == "mark" and report.matches[0].confidence >= FOUND


def test_an_edited_workbook_saved_by_libreoffice_still_names_its_export(book, db, tmp_path):
    done = export(db, book.users["bob"])
    export(db, book.users["mark"])
    source = tmp_path / "bob.xlsx"
    source.write_bytes(done.xlsx())
    workbook = load_workbook(source)  # delete columns and keep one row in twenty, shuffled
    sheet = workbook.active
    rows = [[c.value for c in r] for r in sheet.iter_rows()]
    keep = [rows[0].index(n) for n in ("name", "email", "phone")]
    body = random.Random(5).sample(rows[1:], len(rows) // 20)
    sheet.delete_rows(1, sheet.max_row)
    for row in [rows[0], *body]:
        sheet.append([row[i] for i in keep])
    edited = io.BytesIO()
    workbook.save(edited)
    source.write_bytes(edited.getvalue())
    resaved = convert(source, "xlsx", tmp_path)
    text = convert(resaved, TAB_UTF16, tmp_path)
    report = trace_report(db, read_bytes(text.read_bytes(), text.name))
    assert report.matches and report.matches[0].user == "bob"
    assert report.matches[0].mark_id == str(done.mark.id)


def test_trailing_zeros_do_not_survive_a_spreadsheet_so_amounts_carry_no_mark(tmp_path):
    source = tmp_path / "deals.csv"
    source.write_text("name,amount\nRenewal,1000.00\nPilot,12.50\n")
    again = convert(convert(source, "xlsx", tmp_path), SEMICOLON_CP1252, tmp_path)
    assert again.read_text(encoding="cp1252").splitlines()[1:] == ["Renewal;1000", "Pilot;12.5"]
