"""In a real browser: password, then the virtual card through the card agent; pulling the
card out locks the page within seconds."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from appliance.card_login import enroll
from appliance.cards.agent import CardAgent
from appliance.cards.enrolment import read_card_for_enrolment
from crm.identity import Role
from tests.cards.conftest import PIN
from tests.conftest import free_port
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


def test_card_sign_in_and_lock_on_removal(start_live_server, browser, make, db, stack, card, reader_of):
    db.scalars(select(Role).where(Role.name == "staff")).one().card_required = True
    db.commit()
    alice = make.user("alice")
    make.account(alice, name="Card Protected AG")
    enroll(db, alice, read_card_for_enrolment(reader_of(card), PIN), "ian")
    db.commit()
    port = free_port()
    live_server = f"http://127.0.0.1:{port}"
    agent = CardAgent([live_server], reader=reader_of(card), port=0)
    thread = threading.Thread(target=agent.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    start_live_server(port, card_agent_url=f'"http://127.0.0.1:{agent.port}"')
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{live_server}/login")
        page.fill("#username", "alice")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server}/login/card")
        page.fill("#pin", PIN)
        page.click("#card-submit")
        page.wait_for_url(f"{live_server}/")
        assert page.locator("text=Card Protected AG").count() == 1
        assert page.locator("body").get_attribute("data-card-agent").endswith(str(agent.port))
        card.remove()
        page.wait_for_url(f"{live_server}/login/card", timeout=10_000)
        assert page.locator("text=Session locked").count() == 1
        assert errors == []
    finally:
        stack.wait_for_card(False, slot=card.port - stack.port)
        stack.insert(card)
        agent.shutdown()
        agent.server_close()
        thread.join(5)
