"""Officer smart cards as holders of the unseal key's shares.

Each officer's share is sealed to the 9D (key management) key of their
enrolled card (``appliance.cards.seal``); only that card, with its PIN, opens
it. The sealed shares stay on the appliance (they are useless without the
cards); unsealing asks for cards one at a time until M have opened theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from appliance.kernel.errors import NotFound, ValidationFailed
from appliance.kernel.runtime import Appliance
from appliance.keys.holders import Ask, ShareHolder, register_holder_kind
from crm.identity import Card, User


class CardHolder(ShareHolder):
    """A share sealed to one officer's card; ``reader`` picks the reader (default: any card)."""

    kind = "card"

    def __init__(self, name: str, public_key_pem: str | None = None, reader: str | None = None) -> None:
        super().__init__(name)
        self.public_key_pem = public_key_pem
        self.reader = reader

    def seal(self, share: bytes) -> bytes:
        from appliance.cards.seal import seal_to_card

        if not self.public_key_pem:
            raise ValueError(f"{self.name} has no card key to seal a share to")
        return seal_to_card(serialization.load_pem_public_key(self.public_key_pem.encode()), share)

    def open(self, blob: bytes, ask: Ask) -> bytes:
        from appliance.cards.piv import PivSession
        from appliance.cards.seal import open_with_card

        pin = ask(f"PIN of {self.name}'s card")
        with PivSession.open(self.reader) as piv:
            piv.verify_pin(pin)
            return open_with_card(piv, blob)


register_holder_kind("card", CardHolder)


def officer_card_holders(appliance: Appliance, usernames: list[str]) -> list[CardHolder]:
    """Holders for these people's enrolled cards that can receive a share (a 9D key)."""
    holders = []
    with appliance.session() as db:
        for name in usernames:
            user = db.scalars(select(User).where(User.username == name)).first()
            if user is None:
                raise NotFound(f"No user named {name!r}.", entity="user")
            card = db.scalars(select(Card).where(Card.user_id == user.id, Card.revoked_at.is_(None),
                                                 Card.key_management_pem.is_not(None))
                              .order_by(Card.enrolled_at.desc())).first()
            if card is None:
                raise ValidationFailed({name: "has no enrolled card with a key-management (9D) key; "
                                              "enrol one with `appliance card enroll`"})
            holders.append(CardHolder(name, card.key_management_pem))
    return holders


@dataclass
class CardInReader:
    reader: str
    fingerprint: str  # of the card's 9D key


def cards_present() -> Iterator[CardInReader]:
    """Every inserted card that has a key-management key, reader by reader."""
    from appliance.cards import spec
    from appliance.cards.errors import CardError
    from appliance.cards.piv import PivSession
    from appliance.cards.spec import Slot
    from appliance.cards.transport import PcscContext

    with PcscContext() as context:
        readers = [s.reader for s in context.states() if s.present]
    for reader in readers:
        try:
            with PivSession.open(reader) as piv:
                key = piv.read_certificate(Slot.KEY_MANAGEMENT).public_key()
        except CardError:
            continue
        yield CardInReader(reader, spec.key_fingerprint(key))


def match_envelopes(envelopes: list, present: list[CardInReader],
                    sealed_fingerprint: Callable[[bytes], str]) -> list[tuple[object, str]]:
    """Pairs of (card share envelope, reader holding the card it was sealed to)."""
    by_print = {card.fingerprint: card.reader for card in present}
    return [(env, by_print[sealed_fingerprint(env.blob)]) for env in envelopes
            if sealed_fingerprint(env.blob) in by_print]
