"""The PIV client against virtual cards through the real pcscd + vpcd stack."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from appliance.cards import errors
from appliance.cards.applet import Fault
from appliance.cards.piv import PinStatus, PivSession
from appliance.cards.spec import Slot
from appliance.cards.stack import PcscStack
from appliance.cards.virtual import VirtualCard
from appliance.cards.virtual_state import VirtualCardState
from tests.cards.conftest import PIN


def _der(card: VirtualCard, slot: Slot) -> bytes:
    return card.state.certificates[slot]


def test_first_reader_with_a_card_is_chosen(card: VirtualCard, stack: PcscStack) -> None:
    with PivSession.open() as piv:
        assert piv.reader == stack.readers[0]
        assert piv.identity().card_id == card.card_id


def test_reader_by_exact_name(rsa_card: VirtualCard, reader_of) -> None:
    with PivSession.open(reader_of(rsa_card)) as piv:
        identity = piv.identity()
    assert identity.card_id == rsa_card.card_id
    assert identity.guid == rsa_card.state.chuid.guid.hex()
    assert identity.fascn == rsa_card.state.chuid.fascn.hex()


def test_unknown_reader_is_named_in_the_error(card: VirtualCard) -> None:
    with pytest.raises(errors.ReaderNotFound, match="Citadel Virtual Reader 00 00"):
        PivSession.open("No Such Reader").__enter__()


def test_certificates_are_read_from_9a_and_9d(card: VirtualCard) -> None:
    with PivSession.open() as piv:
        for slot in (Slot.AUTHENTICATION, Slot.KEY_MANAGEMENT):
            certificate = piv.read_certificate(slot)
            assert certificate.public_bytes(serialization.Encoding.DER) == _der(card, slot)
        with pytest.raises(errors.SlotEmpty, match="9C"):
            piv.read_certificate(Slot.SIGNATURE)


def test_p256_signature_verifies(card: VirtualCard) -> None:
    with PivSession.open() as piv:
        piv.verify_pin(PIN)
        signature = piv.sign(b"message to sign")
        public_key = piv.read_certificate().public_key()
    public_key.verify(signature, b"message to sign", ec.ECDSA(hashes.SHA256()))


def test_rsa2048_signature_verifies(rsa_card: VirtualCard, reader_of) -> None:
    # The 266-byte command needs command chaining, the 264-byte answer GET RESPONSE.
    with PivSession.open(reader_of(rsa_card)) as piv:
        piv.verify_pin(PIN)
        signature = piv.sign(b"message to sign")
        public_key = piv.read_certificate().public_key()
    assert len(signature) == 256
    public_key.verify(signature, b"message to sign", padding.PKCS1v15(), hashes.SHA256())


def test_ecdh_matches_the_card_key(card: VirtualCard) -> None:
    peer = ec.generate_private_key(ec.SECP256R1())
    with PivSession.open() as piv:
        piv.verify_pin(PIN)
        shared = piv.ecdh(peer.public_key())
    card_public = card.state.keys[Slot.KEY_MANAGEMENT].public_key()
    assert shared == peer.exchange(ec.ECDH(), card_public)


def test_signing_needs_the_pin(card: VirtualCard) -> None:
    with PivSession.open() as piv, pytest.raises(errors.PinRequired):
        piv.sign(b"x")


def test_pin_state_does_not_outlive_the_session(card: VirtualCard) -> None:
    with PivSession.open() as piv:
        piv.verify_pin(PIN)
        assert piv.pin_status().verified
    with PivSession.open() as piv:
        assert piv.pin_status() == PinStatus(verified=False, tries_left=3)
        with pytest.raises(errors.PinRequired):
            piv.sign(b"x")


def test_wrong_pin_reports_tries_then_blocks(card: VirtualCard) -> None:
    with PivSession.open() as piv:
        assert piv.pin_status().tries_left == 3
        with pytest.raises(errors.WrongPin) as first:
            piv.verify_pin("000000")
        assert first.value.tries_left == 2
        assert "2 tries left" in first.value.message
        with pytest.raises(errors.WrongPin) as second:
            piv.verify_pin("000000")
        assert second.value.tries_left == 1
        with pytest.raises(errors.PinBlocked):
            piv.verify_pin("000000")
        with pytest.raises(errors.PinBlocked):
            piv.verify_pin(PIN)  # the right PIN no longer helps
        assert piv.pin_status().tries_left == 0


def test_right_pin_resets_the_counter(card: VirtualCard) -> None:
    with PivSession.open() as piv:
        with pytest.raises(errors.WrongPin):
            piv.verify_pin("000000")
        piv.verify_pin(PIN)
    with PivSession.open() as piv:
        assert piv.pin_status().tries_left == 3


def test_badly_formed_pin_costs_no_try(card: VirtualCard) -> None:
    with PivSession.open() as piv:
        with pytest.raises(errors.BadPinFormat):
            piv.verify_pin("123")
        assert piv.pin_status().tries_left == 3


def test_wrong_le_is_retried_with_the_exact_length(card: VirtualCard) -> None:
    with PivSession.open() as piv:
        card.inject(Fault.WRONG_LE)
        chuid = piv.read_chuid()
    assert chuid is not None and chuid.guid == card.state.chuid.guid


@pytest.mark.parametrize("fault", [Fault.TRUNCATED, Fault.BAD_TLV, Fault.ENDLESS_CHAINING])
def test_malformed_answers_to_get_data(card: VirtualCard, fault: Fault) -> None:
    with PivSession.open() as piv:
        card.inject(fault)
        with pytest.raises(errors.MalformedResponse):
            piv.read_certificate()


@pytest.mark.parametrize("fault", [Fault.BAD_TLV, Fault.WRONG_TAG])
def test_malformed_answers_to_general_authenticate(card: VirtualCard, fault: Fault) -> None:
    with PivSession.open() as piv:
        piv.verify_pin(PIN)
        key = piv.read_certificate().public_key()
        card.inject(fault)
        with pytest.raises(errors.MalformedResponse):
            piv.sign(b"x", public_key=key)


def test_card_removed_mid_operation(card: VirtualCard) -> None:
    with PivSession.open() as piv:
        piv.verify_pin(PIN)
        key = piv.read_certificate().public_key()
        card.inject(Fault.REMOVE_ON_AUTH)
        with pytest.raises(errors.CardRemoved):
            piv.sign(b"x", public_key=key)
    assert not card.inserted


def test_no_card_in_the_reader(card: VirtualCard, stack: PcscStack) -> None:
    stack.remove(card)
    with pytest.raises(errors.CardAbsent, match="insert your card"):
        PivSession.open(stack.readers[0]).__enter__()


def test_no_card_anywhere(card: VirtualCard, rsa_card: VirtualCard, stack: PcscStack) -> None:
    stack.remove(card)
    stack.remove(rsa_card)
    with pytest.raises(errors.CardAbsent, match="any reader"):
        PivSession.open().__enter__()


def test_blocked_pin_survives_a_restart_of_a_saved_card(stack: PcscStack, tmp_path,
                                                        rsa_card: VirtualCard) -> None:
    state_file = tmp_path / "card.json"
    stack.remove(rsa_card)  # borrow reader slot 1
    first = VirtualCard.from_file(state_file, stack.port + 1, pin="654321")
    stack.insert(first)
    with PivSession.open(stack.readers[1]) as piv:
        for _ in range(2):
            with pytest.raises(errors.WrongPin):
                piv.verify_pin("000000")
    stack.remove(first)
    again = VirtualCard.from_file(state_file, stack.port + 1)
    assert again.card_id == first.card_id
    stack.insert(again)
    with PivSession.open(stack.readers[1]) as piv:
        assert piv.pin_status().tries_left == 1
        piv.verify_pin("654321")
    stack.remove(again)


def test_damaged_state_file_is_an_error_not_a_new_card(tmp_path) -> None:
    path = tmp_path / "card.json"
    path.write_text("{not json")
    with pytest.raises(errors.VirtualCardError, match="fix or remove"):
        VirtualCardState.load(path)
    assert path.read_text() == "{not json"
