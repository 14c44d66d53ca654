"""Officers' cards unseal the box: M of N cards through the real PC/SC stack."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from appliance import keys
from appliance.card_keys import CardHolder, officer_card_holders
from appliance.card_login import enroll
from appliance.cards.enrolment import read_card_for_enrolment
from appliance.cards.errors import WrongPin
from appliance.cli import main
from appliance.kernel.config import write_initial
from appliance.kernel.runtime import Appliance
from appliance.keys import sealing
from appliance.keys.errors import NotEnoughShares
from appliance.keys.holders import register_holder_kind
from appliance.schema import upgrade
from crm.people import add_user
from crm.roles import seed_roles
from tests.cards.conftest import PIN
from tests.factories import _hasher


@pytest.fixture
def sealed_box(tmp_path, card, rsa_card, reader_of):
    """A fresh appliance whose unseal key is split 2-of-2 between two officers' cards."""
    root = tmp_path / "box"
    write_initial(root, {"database_url": f"sqlite:///{tmp_path / 'box.db'}"})
    appliance = Appliance.open(root)
    upgrade(appliance.engine)
    with appliance.session() as db:
        seed_roles(db)
        for name, virtual in (("sofia", card), ("sam", rsa_card)):
            user = add_user(db, _hasher, username=name, full_name=name.title(), password="x" * 12,
                            roles=["security_officer"])
            enroll(db, user, read_card_for_enrolment(reader_of(virtual), PIN), "ian")
    holders = officer_card_holders(appliance, ["sofia", "sam"])
    result = sealing.init_keys(root, threshold=2, holders=holders, share_dir=tmp_path / "shares")
    from appliance.key_commands import _keep_card_shares

    _keep_card_shares(appliance, result.share_files, ["sofia", "sam"])
    yield appliance, result
    keys.seal_now(root)
    appliance.dispose()


def test_two_cards_with_their_pins_unseal(sealed_box):
    appliance, _ = sealed_box
    assert keys.sync(appliance.data_dir) is None
    result = CliRunner().invoke(main, ["keys", "unseal", "--data-dir", str(appliance.data_dir)],
                                input=f"\n{PIN}\n\n{PIN}\n")
    assert result.exit_code == 0, result.output
    assert "Unsealed." in result.output
    assert keys.sync(appliance.data_dir) is not None


def test_one_card_short_stays_sealed(sealed_box, reader_of, card):
    appliance, result = sealed_box
    unsealer = sealing.Unsealer(appliance.data_dir)
    envelope = sealing.ShareEnvelope.load(next(p for p in result.share_files if p.stem == "sofia"))
    register_holder_kind("card", lambda name: CardHolder(name, reader=reader_of(card)))
    try:
        unsealer.add(envelope, lambda _prompt: PIN)
        with pytest.raises(NotEnoughShares):
            unsealer.finish()
    finally:
        register_holder_kind("card", CardHolder)
    assert keys.sync(appliance.data_dir) is None


def test_wrong_pin_or_wrong_card_opens_nothing(sealed_box, reader_of, card, rsa_card):
    appliance, result = sealed_box
    envelope = sealing.ShareEnvelope.load(next(p for p in result.share_files if p.stem == "sofia"))
    with pytest.raises(WrongPin):
        CardHolder("sofia", reader=reader_of(card)).open(envelope.blob, lambda _p: "999999")
    from appliance.cards.errors import CardError

    with pytest.raises(CardError):  # sam's card cannot open sofia's share
        CardHolder("sofia", reader=reader_of(rsa_card)).open(envelope.blob, lambda _p: PIN)
