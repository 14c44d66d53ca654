"""Reading a card for enrolment: identity, keys, and proof the card holds them."""

from __future__ import annotations

import pytest

from appliance.cards.enrolment import read_card_for_enrolment
from appliance.cards.errors import CardError, WrongPin
from appliance.cards.spec import Algorithm, Slot, key_fingerprint
from appliance.cards.virtual import VirtualCard
from appliance.cards.virtual_state import VirtualCardState
from tests.cards.conftest import PIN


def fingerprint(card: VirtualCard, slot: Slot) -> str:
    return key_fingerprint(card.state.keys[slot].public_key())


def test_p256_card_with_proof(card: VirtualCard) -> None:
    enrolment = read_card_for_enrolment(pin=PIN)
    assert enrolment.proven and enrolment.card_id == card.card_id
    assert enrolment.guid == card.card_id and enrolment.serial is None
    assert enrolment.authentication.algorithm is Algorithm.ECC_P256
    assert enrolment.authentication.fingerprint == fingerprint(card, Slot.AUTHENTICATION)
    assert enrolment.key_management is not None and enrolment.key_management.can_seal
    assert enrolment.key_management.fingerprint == fingerprint(card, Slot.KEY_MANAGEMENT)
    data = enrolment.to_json()
    assert data["authentication"]["slot"] == "9A" and data["key_management"]["slot"] == "9D"
    assert "BEGIN PUBLIC KEY" in data["authentication"]["public_key_pem"]
    assert "CN=Alice" in data["authentication"]["subject"]


def test_rsa_card_without_pin_is_described_not_proven(rsa_card: VirtualCard, reader_of) -> None:
    enrolment = read_card_for_enrolment(reader_of(rsa_card))
    assert not enrolment.proven and enrolment.reader == reader_of(rsa_card)
    assert enrolment.authentication.algorithm is Algorithm.RSA_2048
    assert enrolment.authentication.fingerprint == fingerprint(rsa_card, Slot.AUTHENTICATION)


def test_rsa_card_proof(rsa_card: VirtualCard, reader_of) -> None:
    assert read_card_for_enrolment(reader_of(rsa_card), pin=PIN).proven


def test_wrong_pin_at_enrolment(card: VirtualCard) -> None:
    with pytest.raises(WrongPin):
        read_card_for_enrolment(pin="999999")


def test_copied_certificate_cannot_be_enrolled(card: VirtualCard, rsa_card: VirtualCard,
                                               stack) -> None:
    state = VirtualCardState.generate(pin=PIN)
    state.certificates[Slot.AUTHENTICATION] = card.state.certificates[Slot.AUTHENTICATION]
    stack.remove(rsa_card)  # borrow reader slot 1
    impostor = stack.new_card(state, slot=1)
    stack.insert(impostor)
    try:
        assert not read_card_for_enrolment(stack.readers[1]).proven  # reading alone passes
        with pytest.raises(CardError, match="does not match its certificate"):
            read_card_for_enrolment(stack.readers[1], pin=PIN)
    finally:
        stack.remove(impostor)
