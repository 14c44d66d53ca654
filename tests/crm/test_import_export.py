"""CSV import (preview, row errors, all or nothing) and CSV export (masks, caps, audit)."""

import csv
import html
import io
import re

import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from crm.identity import Role
from crm.models import Account


def _upload(client, content: bytes, name="clients.csv"):
    return client.post("/import", data={"csrf_token": client.csrf,
                                        "file": (io.BytesIO(content), name)},
                       content_type="multipart/form-data")


def _count(db):
    return db.scalar(select(func.count()).select_from(Account))


GOOD = ("name;email;tax_id;country;city\n"
        "Fjord AS;post@fjord.example;NO123456789;no;Bergen\n"
        "Kaffe AB;hej@kaffe.example;SE5566778899;SE;Malmö\n").encode()


def test_clean_file_previews_then_imports_everything(app, make, db, login):
    make.user("alice", roles=("manager",))
    client = login("alice")
    preview = _upload(client, GOOD)
    assert preview.status_code == 200
    assert _count(db) == 0  # a preview writes nothing
    batch = re.search(r'action="/import/([0-9a-f-]+)"', preview.get_data(as_text=True)).group(1)
    assert client.post(f"/import/{batch}", data={"csrf_token": client.csrf}).status_code == 302
    assert _count(db) == 2
    creates = db.scalars(select(AuditEvent).where(AuditEvent.action == "record.create")).all()
    assert len(creates) == 2


def test_file_with_a_bad_row_shows_every_problem_and_imports_nothing(app, make, db, login):
    make.user("alice", roles=("manager",))
    client = login("alice")
    content = GOOD + b"Broken;not-an-email;X;Germany;\n;;;;\nFjord AS;post@fjord.example;;NO;\n"
    preview = _upload(client, content)
    text = preview.get_data(as_text=True)
    assert preview.status_code == 422
    assert "Nothing has been imported" in text
    assert "must be an address like" in text and "two-letter country code" in text
    assert "repeats row 2" in text
    assert 'action="/import/' not in text
    assert _count(db) == 0


@pytest.mark.parametrize("content, message", [
    ("name,email\nMüller GmbH,a@b.example\n".encode("latin-1"), "not UTF-8"),
    (b"company_size,email\n10,a@b.example\n", "Unknown column"),
    (b"email,city\na@b.example,Oslo\n", "needs a 'name' column"),
    (b"", "empty"),
    (b"name\n", "no rows"),
    (b"name,city\nA,B,C\n", "has 3 cells"),
])
def test_broken_files_get_a_message_that_says_how_to_fix_them(app, make, db, login, content,
                                                               message):
    make.user("alice")
    client = login("alice")
    response = _upload(client, content)
    assert response.status_code == 400
    assert message in html.unescape(response.get_data(as_text=True))
    assert _count(db) == 0


def test_existing_accounts_are_reported_as_duplicates(app, make, db, login):
    alice = make.user("alice", roles=("manager",))
    make.account(alice, email="post@fjord.example")
    client = login("alice")
    response = _upload(client, GOOD)
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)


def test_someone_elses_upload_cannot_be_confirmed(app, make, login):
    make.user("alice", roles=("manager",))
    make.user("bob", roles=("manager",))
    alice = login("alice")
    preview = _upload(alice, GOOD)
    batch = re.search(r'action="/import/([0-9a-f-]+)"', preview.get_data(as_text=True)).group(1)
    bob = login("bob")
    assert bob.post(f"/import/{batch}", data={"csrf_token": bob.csrf}).status_code == 404


def test_export_writes_csv_with_an_audit_event(app, make, db, login):
    alice = make.user("alice")
    make.account(alice, name="=HYPERLINK(\"http://evil\")", email="x@y.example")
    make.account(alice, name="Plain Ltd")
    client = login("alice")
    response = client.post("/accounts/export", data={"csrf_token": client.csrf, "sort": "name"})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert len(rows) == 2
    assert rows[0]["name"].startswith("'=")  # never a live formula in a spreadsheet
    assert rows[0]["tax_id"].startswith("*")  # staff see tax ids masked
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "export")).one()
    assert event.count == 2 and event.user == "alice"


def test_export_above_the_cap_is_refused(app, make, db, login):
    alice = make.user("alice")
    db.scalars(select(Role).where(Role.name == "staff")).one().export_rows_per_export = 2
    db.commit()
    for _ in range(3):
        make.account(alice)
    client = login("alice")
    response = client.post("/accounts/export", data={"csrf_token": client.csrf, "sort": "name"})
    assert response.status_code == 403
    assert "limit is 2 per export" in response.get_data(as_text=True)
    assert db.scalars(select(AuditEvent).where(AuditEvent.action == "export")).all() == []


def test_import_cannot_set_fields_the_role_may_not_edit(app, make, db, login):
    make.user("alice")  # staff: tax ids are masked, so not editable
    response = _upload(login("alice"), GOOD)
    assert response.status_code == 422
    assert "change tax_id" in response.get_data(as_text=True)
    assert _count(db) == 0


def test_an_exported_file_names_its_user_and_imports_back_without_decoys(app, make, db, login, tmp_path, data_dir):
    from click.testing import CliRunner

    from appliance.cli import main

    alice = make.user("alice", roles=("manager",))
    make.user("bob", roles=("manager",))
    for _ in range(40):
        make.account(alice)
    leaked = tmp_path / "leaked.xlsx"
    exported = login("alice").post("/accounts/export", data={"csrf_token": "", "sort": "name",
                                                             "format": "xlsx"})
    assert exported.status_code == 400  # no CSRF token: refused
    client = login("alice")
    exported = client.post("/accounts/export", data={"csrf_token": client.csrf, "sort": "name", "format": "xlsx"})
    assert exported.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    leaked.write_bytes(exported.get_data())
    traced = CliRunner().invoke(main, ["dlp", "trace", str(leaked), "--json", "--data-dir", str(data_dir)])
    assert traced.exit_code == 0, traced.output
    assert "alice" in traced.output and "bob" not in traced.output
    csv_export = client.post("/accounts/export", data={"csrf_token": client.csrf, "sort": "name"})
    before = _count(db)
    bob = login("bob")
    preview = _upload(bob, csv_export.get_data())
    assert preview.status_code == 422  # the same tax ids and e-mails exist already
    text = preview.get_data(as_text=True)
    assert "· 40 rows" in text  # the decoys in the file were dropped
    assert "repeats" not in text and text.count("already exists") >= 40
    assert _count(db) == before
