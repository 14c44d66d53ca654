"""The CRM pages: lists, record pages, forms that keep input on errors, and the audit trail
they leave."""

import json
import re

from sqlalchemy import select

from audit.models import AuditEvent
from crm.models import Account, Contact, Deal
from dlp.watermark import plain


def _events(db, action):
    return db.scalars(select(AuditEvent).where(AuditEvent.action == action)
                      .order_by(AuditEvent.seq)).all()


def test_account_list_searches_sorts_and_pages(app, make, db, login):
    alice = make.user("alice")
    for name in ("Zeta Logistics", "Alpha Bäckerei", "Beta Tools", "alpha omega"):
        make.account(alice, name=name)
    client = login("alice")
    page = client.get("/accounts?q=alpha&sort=name").get_data(as_text=True)
    assert page.index("Alpha Bäckerei") < page.index("alpha omega")
    assert "Zeta" not in page
    accented = client.get("/accounts?q=backerei").get_data(as_text=True)
    assert "Alpha Bäckerei" in accented
    second = client.get("/accounts?sort=-name&per_page=2&page=2").get_data(as_text=True)
    assert "alpha omega" in second and "Beta Tools" not in second and "Zeta" not in second
    search = _events(db, "record.search")[-1]
    assert search.entity == "account" and search.count == 2
    assert len(json.loads(search.meta)["ids"]) == 2


def test_bad_list_arguments_get_clear_errors(app, make, login):
    make.user("alice")
    client = login("alice")
    response = client.get("/accounts?sort=password_hash")
    assert response.status_code == 400
    assert "sort must be one of" in response.get_data(as_text=True)
    assert client.get("/accounts?per_page=100000").status_code == 400
    assert client.get("/accounts?page=-1").status_code == 400
    assert client.get("/accounts?owner_id=abc").status_code == 400
    assert client.get("/accounts?q=%25%27%3B--").status_code == 200


def test_create_account_with_errors_keeps_what_was_typed(app, make, db, login):
    make.user("alice")
    client = login("alice")
    response = client.post("/accounts/new", data={
        "csrf_token": client.csrf, "name": "Nordwind GmbH", "email": "not-an-email",
        "phone": "call me", "country": "Germany", "status": "customer", "notes": "Met at fair"})
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'value="Nordwind GmbH"' in text and "Met at fair" in text
    assert "E-mail must be an address like name@example.com" in text
    assert "Country must be a two-letter country code" in text
    assert db.scalars(select(Account)).all() == []


def test_create_view_edit_delete_account(app, make, db, login):
    make.user("alice")
    client = login("alice")
    response = client.post("/accounts/new", data={
        "csrf_token": client.csrf, "name": "Nordwind GmbH", "email": "info@nordwind.example",
        "phone": "+49 40 1234567", "country": "DE", "status": "prospect"})
    assert response.status_code == 302
    account = db.scalars(select(Account)).one()
    account_id = account.id
    page = client.get(f"/accounts/{account_id}").get_data(as_text=True)
    assert "Nordwind GmbH" in page and "info@nordwind.example" in page
    response = client.post(f"/accounts/{account.id}/edit", data={
        "csrf_token": client.csrf, "name": "Nordwind AG", "city": "Hamburg"})
    assert response.status_code == 302
    db.expire_all()
    assert db.get(Account, account.id).name == "Nordwind AG"
    update = _events(db, "record.update")[-1]
    assert json.loads(update.meta)["changes"]["name"] == ["Nordwind GmbH", "Nordwind AG"]
    assert client.post(f"/accounts/{account_id}/delete",
                       data={"csrf_token": client.csrf}).status_code == 302
    db.expire_all()
    assert db.get(Account, account_id) is None
    assert _events(db, "record.delete")[-1].entity_id == str(account_id)


def test_account_page_shows_contacts_deals_and_timeline(app, make, login):
    alice = make.user("alice")
    account = make.account(alice, name="Acme")
    make.contact(account, first_name="Grace", last_name="Hopper")
    make.deal(account, alice, name="Big licence")
    make.activity(account, alice, subject="Intro call")
    page = login("alice").get(f"/accounts/{account.id}").get_data(as_text=True)
    for text in ("Grace", "Hopper", "Big licence", "Intro call"):
        assert text in page


def test_add_contact_deal_and_activity_through_forms(app, make, db, login):
    alice = make.user("alice")
    account = make.account(alice)
    client = login("alice")
    assert client.post(f"/contacts/new?account_id={account.id}", data={
        "csrf_token": client.csrf, "first_name": "Ada", "last_name": "Lovelace",
        "email": "ada@client.example"}).status_code == 302
    assert client.post(f"/deals/new?account_id={account.id}", data={
        "csrf_token": client.csrf, "name": "Renewal", "stage": "lead", "amount": "12 500",
        "currency": "EUR", "probability": "20"}).status_code == 302
    assert client.post(f"/activities/new?account_id={account.id}", data={
        "csrf_token": client.csrf, "kind": "task", "subject": "Send quote",
        "due_at": "2030-01-02T10:00"}).status_code == 302
    assert db.scalars(select(Contact)).one().last_name == "Lovelace"
    assert str(db.scalars(select(Deal)).one().amount) == "12500.00"
    bad = client.post(f"/deals/new?account_id={account.id}", data={
        "csrf_token": client.csrf, "name": "X", "stage": "lead", "amount": "lots",
        "currency": "EUR", "probability": "250"})
    assert bad.status_code == 422
    assert "must be at most 100" in bad.get_data(as_text=True)


def test_unknown_and_malformed_ids_are_404(app, make, login):
    make.user("alice")
    client = login("alice")
    assert client.get("/accounts/00000000-0000-4000-8000-000000000000").status_code == 404
    assert client.get("/accounts/not-a-uuid").status_code == 404
    assert client.get("/contacts/new?account_id=nope").status_code == 404


def test_pipeline_board_and_reports(app, make, login):
    alice = make.user("alice")
    account = make.account(alice)
    make.deal(account, alice, name="Pilot", stage="proposal")
    client = login("alice")
    assert "Pilot" in client.get("/deals/board").get_data(as_text=True)
    for key in ("funnel", "revenue", "overdue"):
        response = client.get(f"/reports/{key}")
        assert response.status_code == 200
        assert "<svg" in response.get_data(as_text=True)


def test_moving_a_deal_on_the_board(app, make, db, login):
    alice = make.user("alice")
    deal = make.deal(make.account(alice), alice, stage="proposal")
    client = login("alice")
    client.post(f"/deals/{deal.id}/stage", data={"csrf_token": client.csrf, "stage": "won"})
    db.expire_all()
    moved = db.get(Deal, deal.id)
    assert moved.stage == "won" and moved.closed_at is not None
    client.post(f"/deals/{deal.id}/stage", data={"csrf_token": client.csrf, "stage": "bogus"})
    db.expire_all()
    assert db.get(Deal, deal.id).stage == "won"


def test_print_view_records_a_print_event(app, make, db, login):
    alice = make.user("alice")
    account = make.account(alice, name="Printable Ltd")
    client = login("alice")
    page = plain(client.get(f"/accounts/{account.id}/print").get_data(as_text=True))
    assert "Printable Ltd" in page and "Printed by Alice" in page and "ref. " in page
    event = _events(db, "print")[-1]
    assert event.count == 1 and event.entity == "account"
    listed = client.post("/accounts/print", data={"csrf_token": client.csrf, "q": "printable",
                                                  "sort": "name"})
    assert "Printable Ltd" in plain(listed.get_data(as_text=True))  # prints are watermarked


def test_every_page_has_no_inline_script(app, make, login):
    alice = make.user("alice")
    account = make.account(alice)
    client = login("alice")
    for path in ("/", "/accounts", f"/accounts/{account.id}", "/deals/board", "/reports/funnel",
                 "/import", "/activities"):
        html = client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert " style=" not in html and " onclick=" not in html, path
