"""A salesperson's day in a real browser: sign in, find a client, add a contact, export, sign out."""

import csv
import io

import pytest
from sqlalchemy import select

from audit.models import AuditEvent
from crm.models import Contact
from dlp.watermark import plain
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


def test_sign_in_find_add_contact_export_sign_out(live_server, browser, make, db, tmp_path):
    alice = make.user("alice")
    make.account(alice, name="Fjordline Shipping AS", city="Bergen")
    make.account(alice, name="Unrelated GmbH")
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{live_server}/")
    page.fill("#username", "alice")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/")

    page.fill("input[type=search][name=q]", "fjordline")
    page.keyboard.press("Enter")
    page.wait_for_url("**/accounts?q=fjordline")
    assert page.locator("table tbody tr").count() == 1
    page.click("text=Fjordline Shipping AS")
    page.click("text=Add contact")
    page.fill("#f-first_name", "Ingrid")
    page.fill("#f-last_name", "Dahl")
    page.fill("#f-email", "ingrid@fjordline.example")
    page.click("button:has-text('Save')")
    page.wait_for_selector("text=Contact added.")
    assert page.locator("text=Ingrid Dahl").count() == 1

    page.goto(f"{live_server}/accounts?q=fjordline")
    # selecting the list and copying it is reported (which records, not the text)
    page.locator("table tbody").select_text()
    page.keyboard.press("Control+C")
    page.wait_for_timeout(500)
    with page.expect_download() as download_info:
        page.click("button:has-text('Export CSV')")
    exported = (tmp_path / "export.csv")
    download_info.value.save_as(exported)
    rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
    assert [plain(r["name"]) for r in rows] == ["Fjordline Shipping AS"]  # watermarked for alice

    page.click("button:has-text('Sign out')")
    page.wait_for_selector("text=You are signed out.")
    page.goto(f"{live_server}/accounts")
    assert "/login" in page.url

    assert errors == []
    assert db.scalars(select(Contact)).one().email == "ingrid@fjordline.example"
    actions = db.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)).all()
    for expected in ("login", "record.search", "record.view", "record.create", "copy", "export",
                     "logout"):
        assert expected in actions
