"""Audit checkpoints signed with the key hierarchy's audit key: only while unsealed."""

from __future__ import annotations

import pytest

import audit
from appliance import keys
from appliance.kernel.errors import Sealed
from audit.checkpoint import checkpoint_now
from audit.verify import verify


def test_keyring_signed_checkpoints_verify_and_need_the_keys(appliance):
    appliance.settings.values["audit"] = {"signer": "keyring"}
    with appliance.session() as db:
        audit.record(db, "login", user="alice")
    with appliance.session() as db:
        assert checkpoint_now(db, appliance.settings) is not None
    with appliance.session() as db:
        assert verify(db, appliance.settings).ok
    keys.seal_now(appliance.data_dir)
    try:
        with appliance.session() as db:
            audit.record(db, "logout", user="alice")
        with appliance.session() as db, pytest.raises(Sealed):
            checkpoint_now(db, appliance.settings)
        with appliance.session() as db:
            assert verify(db, appliance.settings).ok  # public keys need no unsealing
    finally:
        keys.auto_unseal_demo(appliance.data_dir)
