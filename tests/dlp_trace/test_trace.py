"""Trace: a leaked file names its export and user, whatever was done to it."""

from __future__ import annotations

import csv
import io
import random

import pytest
from openpyxl import Workbook

from crm.access import Entity
from dlp import watermark
from dlp.sensors.readers import read_bytes
from dlp.trace import FOUND, trace_report
from tests.dlp_trace.conftest import Exported, export


def to_csv(header: list[str] | None, rows: list[list[str]], *, delimiter: str = ",",
           encoding: str = "utf-8") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def as_spreadsheet_saves_it(header: list[str], rows: list[list[str]]) -> bytes:
    """An XLSX as a spreadsheet writes it after opening the CSV: numbers become numbers."""
    book = Workbook()
    sheet = book.active
    for row in [header, *rows]:
        sheet.append([_typed(c) for c in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _typed(cell: str) -> object:
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            continue
    return cell


def columns(done: Exported, names: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    at = [done.header.index(n) for n in names]
    return names, [[r[i] for i in at] for r in rows]


def trace_bytes(db, data: bytes, name: str = "leak.csv"):
    return trace_report(db, read_bytes(data, name))


def assert_names(report, done: Exported, *, least: float = FOUND) -> None:
    assert report.matches, report.to_json()["candidates"]
    best = report.matches[0]
    assert best.mark_id == str(done.mark.id) and best.user == done.user.username
    assert best.export_id == str(done.mark.export_id)
    assert best.confidence >= least
    others = [m for m in report.matches[1:] if m.mark_id != best.mark_id]
    assert not others, [(m.user, m.confidence) for m in others]


def test_the_export_as_downloaded_names_its_user_with_its_canaries(book, db):
    done = export(db, book.users["mark"])
    export(db, book.users["nina"])
    report = trace_bytes(db, done.csv())
    assert_names(report, done, least=1 - 1e-12)
    best = report.matches[0]
    assert len({c["where"] for c in best.canaries}) == 4
    assert best.marks_matched == best.marks_tested > 1000
    assert best.rows_matched == 400 and best.rows_share == 1.0
    assert report.recognised == 400 and report.canary_rows == 4



def test_a_real_clients_city_named_like_a_decoy_is_no_canary(book, db):
    """Decoy companies are often called by a surname; so are towns. Only a column that
    names clients can hold a decoy's name."""
    done = export(db, book.users["mark"])
    decoy = dict(zip(done.header, done.canary_rows()[0], strict=True))["name"]
    rows = [list(r) for r in done.real_rows()]
    rows[0][done.header.index("city")] = decoy
    out = io.StringIO()
    csv.writer(out).writerows([done.header, *rows])
    report = trace_bytes(db, out.getvalue().encode())
    assert report.canary_rows == 0
    assert report.matches and not report.matches[0].canaries

TRANSFORMS = {
    "csv-xlsx-csv": lambda d, rows, rng: (
        d.header, read_bytes(as_spreadsheet_saves_it(d.header, rows), "x.xlsx").sheets[0][1:]),
    "columns-deleted": lambda d, rows, rng: columns(d, ["name", "city", "email"], rows),
    "rows-shuffled": lambda d, rows, rng: (d.header, rng.sample(rows, len(rows))),
    "5-percent-of-rows": lambda d, rows, rng: (d.header, rng.sample(rows, len(rows) // 20)),
    "5-percent-two-columns-xlsx": lambda d, rows, rng: columns(
        d, ["phone", "name"], read_bytes(as_spreadsheet_saves_it(
            d.header, rng.sample(rows, len(rows) // 20)), "x.xlsx").sheets[0][1:]),
    "names-only-no-header": lambda d, rows, rng: (None, [[r[1]] for r in rng.sample(rows, 60)]),
}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_marks_survive_what_a_leaker_does_to_the_file(book, db, transform):
    done = export(db, book.users["mark"])
    export(db, book.users["nina"])  # the same list, by someone else
    rng = random.Random(transform)
    header, rows = TRANSFORMS[transform](done, done.real_rows(), rng)  # canaries dropped too
    report = trace_bytes(db, to_csv(header, rows))
    assert_names(report, done)


def test_each_of_several_users_exports_is_told_apart(book, db):
    exports = [export(db, book.users[u]) for u in ("alice", "bob", "mark", "nina", "mark")]
    rng = random.Random(1)
    for done in exports:
        rows = rng.sample(done.real_rows(), max(10, len(done.rows) // 10))
        header, kept = columns(done, ["name", "email", "phone"], rows)
        assert_names(trace_bytes(db, to_csv(header, kept)), done)


def test_one_canary_row_alone_names_the_export(book, db):
    done = export(db, book.users["mark"])
    export(db, book.users["nina"])
    canary = done.canary_rows()[0]
    report = trace_bytes(db, to_csv(None, [canary]))
    assert_names(report, done)
    assert report.matches[0].canaries and report.canary_rows == 1
    header, row = columns(done, ["name", "city", "email"], [canary])
    assert_names(trace_bytes(db, to_csv(header, row)), done)
    header, row = columns(done, ["name", "city"], [canary])  # an invented name is weak evidence
    weak = trace_bytes(db, to_csv(header, row))
    assert not weak.matches and weak.candidates[0].mark_id == str(done.mark.id)


def test_a_contact_export_traces_too(book, db):
    done = export(db, book.users["mark"], Entity.CONTACT)
    export(db, book.users["nina"], Entity.CONTACT)
    rows = random.Random(2).sample(done.real_rows(), 12)
    header, kept = columns(done, ["first_name", "last_name", "email", "phone"], rows)
    assert_names(trace_bytes(db, to_csv(header, kept)), done)


@pytest.mark.parametrize("delimiter, encoding", [(";", "cp1252"), ("\t", "utf-16"),
                                                 (",", "utf-8-sig"), ("|", "utf-8")])
def test_any_delimiter_and_encoding_a_spreadsheet_writes(book, db, delimiter, encoding):
    done = export(db, book.users["mark"])
    rows = random.Random(3).sample(done.real_rows(), 40)
    data = to_csv(done.header, rows, delimiter=delimiter, encoding=encoding)
    report = trace_bytes(db, data)
    assert_names(report, done)
    assert report.recognised == 40


def test_the_xlsx_export_traces(book, db):
    done = export(db, book.users["bob"])
    report = trace_bytes(db, done.xlsx(), "bob.xlsx")
    assert report.format == "xlsx"
    assert_names(report, done, least=1 - 1e-12)


def test_two_exports_by_one_user_are_told_apart(book, db):
    first, second = export(db, book.users["mark"]), export(db, book.users["mark"])
    for done in (first, second):
        rows = random.Random(4).sample(done.real_rows(), 20)
        assert_names(trace_bytes(db, to_csv(done.header, rows)), done)


def test_unrelated_data_traces_to_nobody(book, db):
    export(db, book.users["mark"])
    rows = [[f"Person {i}", f"person{i}@elsewhere.example", f"+49 89 {1000000 + i}", "Munich"]
            for i in range(200)]
    report = trace_bytes(db, to_csv(["name", "email", "phone", "city"], rows))
    assert not report.matches and not report.candidates
    assert report.recognised == 0 and report.canary_rows == 0


def test_real_client_data_typed_by_hand_names_nobody(book, db):
    """The rows are clients (and were exported), but the file carries no export's marks: it
    must not accuse the people who exported those clients."""
    for user in ("alice", "bob", "mark", "nina"):
        export(db, book.users[user])
    rows = [[a.name, a.email, a.phone, a.city] for a in book.accounts[:150]]
    report = trace_bytes(db, to_csv(["name", "email", "phone", "city"], rows))
    assert report.recognised == 150 and report.records == 150
    assert not report.matches
    assert report.candidates and all(c.confidence < FOUND for c in report.candidates)


def test_a_saved_print_page_names_the_print(book, db):
    user = book.users["mark"]
    records = [{"id": a.id, "name": a.name, "city": a.city, "email": a.email, "phone": a.phone}
               for a in book.accounts[:40]]
    mark = watermark.plan(db, export_id=None, user=user, entity="account", rows=40,
                          channel="print")
    shown = watermark.apply_records(mark, ["name", "city", "email", "phone"], records)
    watermark.record(db, mark, [r["id"] for r in records])
    db.commit()
    assert len(shown) == 41 and all(isinstance(v, str) for r in shown for v in r.values())
    cells = "".join(f"<tr><td>{r['name']}</td><td>{r['city']}</td><td>{r['email']}</td>"
                    f"<td>{r['phone']}</td></tr>" for r in shown)
    page = (f"<!doctype html><html><body><table><thead><tr><th>name</th><th>city</th>"
            f"<th>email</th><th>phone</th></tr></thead><tbody>{cells}</tbody></table>"
            f"<p class=print-mark>Printed by Mark · confidential · {watermark.footer(mark)}</p>"
            f"</body></html>")
    report = trace_bytes(db, page.encode(), "page.html")
    assert report.format == "html"
    best = report.matches[0]
    assert best.channel == "print" and best.user == "mark" and best.reference_found
    assert best.export_id is None and best.mark_id == str(mark.id)
    footer_only = trace_bytes(db, f"Printed by Mark, ref. {mark.reference}".encode(), "note.txt")
    assert footer_only.matches[0].mark_id == str(mark.id)


def test_canaries_can_write_to_a_trap_domain_the_appliance_recognises(book, db, appliance):
    settings = appliance.settings
    settings.values["dlp"] = {"canary_domains": ["Post.Citadel-Trap.example"]}
    done = export(db, book.users["mark"], settings=settings)
    at = done.header.index("email")
    addresses = [row[at] for row in done.canary_rows()]
    assert len(addresses) == 4 and len(set(addresses)) == 4
    assert all(a.lower().endswith("@post.citadel-trap.example") for a in addresses)
    report = trace_report(db, read_bytes(done.csv(), "leak.csv"), settings=settings)
    assert report.trap_addresses == 4
    assert_names(report, done)


def test_a_file_merged_from_two_exports_names_both(book, db):
    alice, bob = export(db, book.users["alice"]), export(db, book.users["bob"])
    rng = random.Random(6)
    rows = rng.sample(alice.real_rows(), 30) + rng.sample(bob.real_rows(), 30)
    rng.shuffle(rows)
    report = trace_bytes(db, to_csv(alice.header, rows))
    assert {(m.user, m.mark_id) for m in report.matches} == {
        ("alice", str(alice.mark.id)), ("bob", str(bob.mark.id))}
    assert all(m.rows_matched == 30 and m.rows_share == 0.5 for m in report.matches)
