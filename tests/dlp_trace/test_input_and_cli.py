"""Bad files get a clear reason; `appliance dlp trace` exits 0 found, 1 none, 2 cannot run."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from appliance.kernel.cli import CitadelGroup, CliContext
from audit.models import AuditEvent
from dlp import trace_cli
from dlp.sensors.readers import UnreadableFile, read_bytes, read_table
from tests.dlp_trace.conftest import export


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return out.getvalue()


BAD = {
    "binary junk": (random.Random(0).randbytes(20_000), "binary data"),
    "empty": (b"", "the file is empty"),
    "only blanks": (b" \r\n\t\n", "the file is empty"),
    "one huge line": (b"a," * 600_000, "line 1 is longer than 1 MB"),
    "an old Excel file": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "old Excel (.xls)"),
    "a zip that is no workbook": (_zip(), "not an XLSX workbook"),
    "a damaged workbook": (b"PK\x03\x04" + bytes(300), "not an XLSX workbook"),
    "too many columns": (b",".join([b"x"] * 20_000) + b"\n", "more than 16384 columns"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_are_refused_with_the_reason(tmp_path, case):
    data, reason = BAD[case]
    path = tmp_path / "leak.csv"
    path.write_bytes(data)
    with pytest.raises(UnreadableFile) as refused:
        read_table(path)
    assert reason in refused.value.message and str(path) in refused.value.message
    assert path.read_bytes() == data  # nothing is changed


def test_missing_files_and_folders_are_refused(tmp_path):
    with pytest.raises(UnreadableFile, match="No such file"):
        read_table(tmp_path / "absent.csv")
    with pytest.raises(UnreadableFile, match="is a folder"):
        read_table(tmp_path)


def test_a_bom_over_cp1252_text_is_still_read():
    table = read_bytes(b"\xef\xbb\xbfname;city\nM\xfcller GmbH;K\xf6ln\n")
    assert table.encoding == "cp1252" and table.sheets[0][1] == ["Müller GmbH", "Köln"]


def test_utf16_without_a_bom_and_quoted_multiline_cells():
    text = 'name\tnotes\n"Kessler GmbH"\t"two\nlines"\n'
    table = read_bytes(text.encode("utf-16-le"))
    assert table.encoding == "utf-16-le" and table.delimiter == "\t"
    assert table.sheets[0][1] == ["Kessler GmbH", "two\nlines"]


@pytest.fixture
def cli(data_dir: Path):
    """``appliance`` with only the trace commands, on the test appliance."""

    @click.group(cls=CitadelGroup)
    @click.pass_context
    def root(ctx: click.Context) -> None:
        ctx.obj = CliContext(str(data_dir))

    for command in trace_cli.COMMANDS:
        root.add_command(command)
    runner = CliRunner()
    return lambda *args: runner.invoke(root, list(args), catch_exceptions=False)


def test_trace_command_exit_codes_and_json(book, db, cli, tmp_path):
    done = export(db, book.users["alice"])
    leak = tmp_path / "leak.csv"
    leak.write_bytes(done.csv())
    found = cli("trace", str(leak))
    assert found.exit_code == 0, found.output
    assert "export by alice" in found.output and "canary" in found.output
    as_json = cli("trace", str(leak), "--json")
    assert as_json.exit_code == 0
    report = json.loads(as_json.output)
    assert report["found"] and report["matches"][0]["user"] == "alice"
    assert report["matches"][0]["export_id"] == str(done.mark.export_id)

    unrelated = tmp_path / "other.csv"
    unrelated.write_text("name,email\nSomeone,someone@elsewhere.example\n")
    none = cli("trace", str(unrelated))
    assert none.exit_code == 1 and "No source found" in none.output

    junk = tmp_path / "junk.csv"
    junk.write_bytes(random.Random(1).randbytes(5000))
    refused = cli("trace", str(junk))
    assert refused.exit_code == 5
    assert refused.output.strip().startswith("Error: Cannot read") and "Traceback" not in refused.output
    assert cli("trace", str(tmp_path / "absent.csv")).exit_code == 5
    db.rollback()
    traces = db.scalars(select(AuditEvent).where(AuditEvent.action == "dlp.trace")
                        .order_by(AuditEvent.seq)).all()
    assert [json.loads(e.meta)["found"] for e in traces] == [True, True, False]
    assert json.loads(traces[0].meta)["marks"] == [str(done.mark.id)]


def test_trace_refuses_to_run_sealed(book, cli, tmp_path, monkeypatch):
    leak = tmp_path / "leak.csv"
    leak.write_text("name\nx\n")
    monkeypatch.setattr(trace_cli.keys, "start", lambda settings: None)
    sealed = cli("trace", str(leak))
    assert sealed.exit_code == 6 and "sealed" in sealed.output


def test_watch_needs_a_folder(book, cli):
    refused = cli("watch", "--once")
    assert refused.exit_code == 2 and "no folder to watch" in refused.output


def test_watch_once_examines_what_is_already_there(book, db, cli, tmp_path):
    done = export(db, book.users["bob"])
    stick = tmp_path / "stick"
    (stick / "deep").mkdir(parents=True)
    (stick / "deep" / "bob.xlsx").write_bytes(done.xlsx())
    (stick / "notes.txt").write_text("nothing to see")
    ran = cli("watch", "--once", "--folder", str(stick))
    assert ran.exit_code == 0, ran.output
    assert "bob.xlsx: canary, 150 records, user bob" in ran.output
    db.rollback()
    (event,) = db.scalars(select(AuditEvent).where(AuditEvent.action == "file.external")).all()
    assert event.user == "bob" and event.count == 150
