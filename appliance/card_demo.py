"""``appliance demo --cards``: the smart-card step, shown with a virtual PIV card.

The demo's security officer (``sofia``) gets a virtual PIV card, kept in the
data directory so that it stays the enrolled card across runs. A private
pcscd with a vpcd reader holds it inserted, and the workstation card agent
listens where the pages look for it (the ``card_agent_url`` setting). Officers
then sign in with password, then card and PIN; pulling the card (stopping the
demo) locks their session.

It needs what the tests need for cards: Debian's ``pcscd`` and
``vsmartcard-vpcd`` and the ``cards`` extra (pyscard). A vpcd reader accepts
any card from anyone who reaches its port: this is for the demo only, never
for a real appliance.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import select

from appliance.kernel.errors import ConfigError
from appliance.kernel.runtime import Appliance

if TYPE_CHECKING:  # pyscard is an extra: imported for real only when --cards is asked for
    from appliance.cards.agent import CardAgent
    from appliance.cards.stack import PcscStack
    from appliance.cards.virtual import VirtualCard

USER = "sofia"
PIN = "123456"
CARD_FILE = "demo-card.json"


@dataclass
class CardDemo:
    """The running pieces: stop them in reverse order."""

    user: str
    stack: PcscStack
    card: VirtualCard
    agent: CardAgent
    thread: threading.Thread

    def describe(self) -> str:
        return (f"(PIN {PIN}) held in a virtual reader; the card agent answers on "
                f"127.0.0.1:{self.agent.port}")

    def stop(self) -> None:
        self.agent.shutdown()
        self.agent.server_close()
        self.thread.join(5)
        self.card.remove()
        self.stack.stop()


def start(appliance: Appliance, origin: str) -> CardDemo:
    """Insert the officer's virtual card, enrol it once, and serve the card agent for ``origin``."""
    try:
        from appliance.cards.agent import CardAgent
        from appliance.cards.stack import PcscStack
        from appliance.cards.virtual import VirtualCard
    except ImportError as exc:
        raise ConfigError(detail=f"--cards needs the cards extra ({exc.name} is missing): "
                                 "`.venv/bin/pip install -e '.[cards]'`") from None
    agent_port = urlsplit(appliance.settings.get("card_agent_url") or "http://127.0.0.1:18765").port
    try:
        stack = PcscStack().start()
    except Exception as exc:  # no pcscd, no vpcd driver, no namespace: say what to install
        raise ConfigError(detail=f"--cards cannot start a private pcscd ({exc}); install pcscd and "
                                 "vsmartcard-vpcd (apt-get install pcscd vsmartcard-vpcd) and run "
                                 "as root, or run the demo without --cards") from None
    card = VirtualCard.from_file(appliance.data_dir / CARD_FILE, port=stack.port,
                                 holder="Sofia Rossi", pin=PIN)
    stack.insert(card)
    _enrol_once(appliance, stack.readers[0])
    try:
        agent = CardAgent([origin], reader=stack.readers[0], port=agent_port or 18765)
    except OSError as exc:
        card.remove()
        stack.stop()
        raise ConfigError(detail=f"the card agent cannot listen on 127.0.0.1:{agent_port} "
                                 f"({exc.strerror}); stop what listens there or set card_agent_url") from None
    thread = threading.Thread(target=agent.serve_forever, args=(0.2,), daemon=True)
    thread.start()
    return CardDemo(USER, stack, card, agent, thread)


def _enrol_once(appliance: Appliance, reader: str) -> None:
    """Enrol the card for the officer (if not yet) and make officers sign in with a card."""
    import audit
    from appliance.card_login import enroll
    from appliance.cards.enrolment import read_card_for_enrolment
    from crm.identity import Card, Role
    from crm.people import find_user

    with appliance.session() as db:
        officer = find_user(db, USER)
        role = db.scalars(select(Role).where(Role.name == "security_officer")).one()
        if not role.card_required:
            role.card_required = True
            audit.record(db, "rights.card_required", user=None, entity="role", entity_id=role.name,
                         meta={"card_required": True, "via": "demo --cards"})
        enrolled = db.scalars(select(Card).where(Card.user_id == officer.id,
                                                 Card.revoked_at.is_(None))).first()
        if enrolled is None:
            enroll(db, officer, read_card_for_enrolment(reader, PIN), "ian")
