"""A real PC/SC stack for the card tests: one private pcscd per session, virtual cards.

Reader slot 0 holds Alice's card (P-256 in 9A and 9D), slot 1 Bob's card
(RSA-2048 in 9A, P-256 in 9D). Both stay inserted for the session; each test
gets them back with a full PIN counter, no pending faults, and inserted again
if the test pulled one out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.cards.stack import PcscStack, shared_stack
from appliance.cards.virtual import VirtualCard
from appliance.cards.virtual_state import VirtualCardState

PIN = "123456"


@pytest.fixture(scope="session")
def stack() -> PcscStack:
    """The process's pcscd with a vpcd reader; fails (never skips) if pcscd or vpcd is missing."""
    return shared_stack()


def _session_card(stack: PcscStack, state: VirtualCardState, slot: int) -> Iterator[VirtualCard]:
    card = stack.new_card(state, slot=slot)
    stack.insert(card)
    yield card
    card.remove()


@pytest.fixture(scope="session")
def _alice(stack: PcscStack) -> Iterator[VirtualCard]:
    yield from _session_card(stack, VirtualCardState.generate(holder="Alice", pin=PIN), 0)


@pytest.fixture(scope="session")
def _bob(stack: PcscStack) -> Iterator[VirtualCard]:
    state = VirtualCardState.generate(holder="Bob", pin=PIN, authentication="rsa2048")
    yield from _session_card(stack, state, 1)


def _fresh(stack: PcscStack, card: VirtualCard) -> None:
    card.applet.clear_faults()
    card.state.pin_tries_left = card.state.pin_tries_max
    if not card.inserted:
        stack.wait_for_card(False, slot=card.port - stack.port)
        stack.insert(card)


@pytest.fixture
def card(stack: PcscStack, _alice: VirtualCard, _bob: VirtualCard) -> Iterator[VirtualCard]:
    """Alice's P-256 card in reader slot 0 (the first reader with a card)."""
    for each in (_alice, _bob):
        _fresh(stack, each)
    yield _alice
    for each in (_alice, _bob):
        _fresh(stack, each)


@pytest.fixture
def rsa_card(card: VirtualCard, _bob: VirtualCard) -> VirtualCard:
    """Bob's card (RSA-2048 in 9A) in reader slot 1; select it by exact reader name."""
    return _bob


@pytest.fixture
def reader_of(stack: PcscStack):  # noqa: ANN201 - small helper factory
    """The reader name holding ``card``."""
    return lambda card: stack.readers[card.port - stack.port]
