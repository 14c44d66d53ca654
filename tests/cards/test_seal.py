"""Sealing a secret to a card's 9D key and opening it with the card (ECDH on the card)."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from appliance.cards import seal
from appliance.cards.errors import (
    PinRequired,
    SealedDataInvalid,
    UnsupportedAlgorithm,
    WrongCard,
)
from appliance.cards.piv import PivSession
from appliance.cards.spec import Slot, key_fingerprint
from appliance.cards.virtual import VirtualCard
from tests.cards.conftest import PIN


def key_9d(card: VirtualCard):  # noqa: ANN201
    return card.state.keys[Slot.KEY_MANAGEMENT].public_key()


def open_on(reader: str | None, blob: bytes) -> bytes:
    with PivSession.open(reader) as piv:
        piv.verify_pin(PIN)
        return seal.open_with_card(piv, blob)


def test_round_trip(card: VirtualCard) -> None:
    share = secrets.token_bytes(33)
    blob = seal.seal_to_card(key_9d(card), share)
    assert len(blob) == seal.HEADER_SIZE + len(share) + seal.TAG_SIZE
    assert blob[:6] == b"CSEAL\x01"
    assert seal.sealed_fingerprint(blob) == key_fingerprint(key_9d(card))
    assert open_on(None, blob) == share


def test_each_seal_is_fresh(card: VirtualCard) -> None:
    one, two = (seal.seal_to_card(key_9d(card), b"same") for _ in range(2))
    assert one != two and one[38:103] != two[38:103]  # new ephemeral key each time


def test_another_card_cannot_open_it(card: VirtualCard, rsa_card: VirtualCard, reader_of) -> None:
    blob = seal.seal_to_card(key_9d(card), b"share for alice")
    with pytest.raises(WrongCard):
        open_on(reader_of(rsa_card), blob)


def test_relabelled_blob_fails_on_the_other_card(card: VirtualCard, rsa_card: VirtualCard,
                                                 reader_of) -> None:
    # Claiming Bob's fingerprint gets past the label check, not past AES-GCM.
    blob = bytearray(seal.seal_to_card(key_9d(card), b"share for alice"))
    blob[6:38] = bytes.fromhex(key_fingerprint(key_9d(rsa_card)))
    with pytest.raises(SealedDataInvalid, match="authentication failed"):
        open_on(reader_of(rsa_card), bytes(blob))


def test_every_flipped_byte_is_detected(card: VirtualCard) -> None:
    blob = seal.seal_to_card(key_9d(card), b"k" * 16)
    with PivSession.open() as piv:
        piv.verify_pin(PIN)
        assert seal.open_with_card(piv, blob) == b"k" * 16
        for position in range(len(blob)):
            damaged = bytearray(blob)
            damaged[position] ^= 0x40
            with pytest.raises((SealedDataInvalid, WrongCard)):
                seal.open_with_card(piv, bytes(damaged))


def test_truncated_or_foreign_blobs(card: VirtualCard) -> None:
    blob = seal.seal_to_card(key_9d(card), b"")
    with PivSession.open() as piv:
        piv.verify_pin(PIN)
        assert seal.open_with_card(piv, blob) == b""
        for bad in (blob[:-1], blob[:10], b"", b"CSEAL\x02" + blob[6:]):
            with pytest.raises(SealedDataInvalid):
                seal.open_with_card(piv, bad)


def test_opening_needs_the_pin(card: VirtualCard) -> None:
    blob = seal.seal_to_card(key_9d(card), b"share")
    with PivSession.open() as piv, pytest.raises(PinRequired):
        seal.open_with_card(piv, blob)


def test_only_p256_keys_can_be_sealed_to() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(UnsupportedAlgorithm, match="9D"):
        seal.seal_to_card(rsa_key, b"share")
