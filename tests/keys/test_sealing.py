"""Sealing: M of N shares or the recovery key unseal; anything less, or anything wrong, does not."""

from __future__ import annotations

import itertools
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.kernel.errors import Sealed
from appliance.keys import kernel, sealing, selftest, state
from appliance.keys.errors import (
    BadRecoveryKey,
    BadShareFile,
    KeysAlreadyInitialised,
    NotEnoughShares,
    SelfTestFailed,
    WrongMasterKey,
    WrongPassphrase,
)
from appliance.keys.holders import PassphraseHolder
from appliance.keys.recovery import format_recovery_key
from tests.keys.conftest import FAST_KDF, PASSPHRASES, make_appliance


def ask_for(holder: str):
    return lambda _prompt: PASSPHRASES[holder]


def test_a_new_appliance_is_sealed_and_its_files_are_private(box):
    assert sealing.status(box.data_dir).sealed
    assert state.sync(box.data_dir) is None
    with pytest.raises(Sealed):
        state.current()
    keys = box.data_dir / "keys"
    for path in [keys / "keyring.json", keys / "seal.json", *box.init.share_files]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert not (keys / "demo-master.key").exists()


def test_no_file_holds_the_master_key_or_the_recovery_key(box, keyring):
    master = keyring._master
    recovery = box.init.recovery_key.replace("-", "")
    for path in box.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert master not in data and master.hex().encode() not in data
            assert recovery.encode() not in data


@pytest.mark.parametrize("pair", list(itertools.combinations(["alice", "bob", "carol"], 2)))
def test_any_two_of_three_shares_unseal(box, pair):
    unsealer = sealing.Unsealer(box.data_dir)
    for holder in pair:
        unsealer.add_file(box.share(holder), ask_for(holder))
    keyring = unsealer.finish()
    assert state.current() is keyring
    assert not sealing.status(box.data_dir).sealed


def test_one_share_is_not_enough(box):
    unsealer = sealing.Unsealer(box.data_dir)
    assert unsealer.add_file(box.share("bob"), ask_for("bob")) == 1
    with pytest.raises(NotEnoughShares):
        unsealer.finish()
    assert state.sync(box.data_dir) is None


def test_too_few_shares_rebuild_a_wrong_key_that_is_refused(box):
    # Bypass the count check: the authenticated wrap still refuses the result.
    unsealer = sealing.Unsealer(box.data_dir)
    unsealer.add_file(box.share("alice"), ask_for("alice"))
    unsealer._seal["threshold"] = 1
    with pytest.raises(WrongMasterKey):
        unsealer.finish()


def test_three_of_three_needs_all(tmp_path):
    made = make_appliance(tmp_path, threshold=3)
    try:
        unsealer = sealing.Unsealer(made.data_dir)
        for holder in ("alice", "carol"):
            unsealer.add_file(made.share(holder), ask_for(holder))
        with pytest.raises(NotEnoughShares):
            unsealer.finish()
        unsealer.add_file(made.share("bob"), ask_for("bob"))
        unsealer.finish()
    finally:
        sealing.seal_now(made.data_dir)


def test_wrong_passphrase_is_refused_and_can_be_retried(box):
    unsealer = sealing.Unsealer(box.data_dir)
    with pytest.raises(WrongPassphrase):
        unsealer.add_file(box.share("alice"), lambda _p: "not alice's passphrase")
    assert unsealer.given == []
    unsealer.add_file(box.share("alice"), ask_for("alice"))
    assert unsealer.given == ["alice"]


def test_the_same_share_twice_counts_once(box):
    unsealer = sealing.Unsealer(box.data_dir)
    unsealer.add_file(box.share("alice"), ask_for("alice"))
    with pytest.raises(BadShareFile, match="already given"):
        unsealer.add_file(box.share("alice"), ask_for("alice"))


def test_a_share_of_another_appliance_is_refused(box, tmp_path):
    other = make_appliance(tmp_path / "other")
    unsealer = sealing.Unsealer(box.data_dir)
    with pytest.raises(BadShareFile, match="another appliance"):
        unsealer.add_file(other.share("alice"), ask_for("alice"))


def test_every_altered_byte_of_a_share_blob_is_refused(box):
    document = json.loads(box.share("bob").read_text())
    blob = bytearray(sealing.b64d(document["blob"]))
    for position in range(len(blob)):
        altered = bytearray(blob)
        altered[position] ^= 0x01
        envelope = sealing.ShareEnvelope(document["appliance_id"], "bob", "passphrase",
                                         document["index"], 2, bytes(altered))
        with pytest.raises((WrongPassphrase, BadShareFile)):
            sealing.Unsealer(box.data_dir).add(envelope, ask_for("bob"))


def test_a_share_relabelled_as_another_holder_is_refused(box):
    alice = json.loads(box.share("alice").read_text())
    bob = json.loads(box.share("bob").read_text())
    forged = sealing.ShareEnvelope(bob["appliance_id"], "bob", "passphrase", bob["index"], 2,
                                   sealing.b64d(alice["blob"]))
    with pytest.raises(WrongPassphrase):  # the blob is bound to alice's name
        sealing.Unsealer(box.data_dir).add(forged, ask_for("alice"))


def test_share_files_that_are_not_shares_say_so(box, tmp_path):
    junk = tmp_path / "junk.share"
    junk.write_text("hello")
    unsealer = sealing.Unsealer(box.data_dir)
    with pytest.raises(BadShareFile, match="not a Citadel share file"):
        unsealer.add_file(junk, ask_for("alice"))
    with pytest.raises(BadShareFile, match="no such file"):
        unsealer.add_file(tmp_path / "missing.share", ask_for("alice"))


def test_the_recovery_key_unseals_alone(box):
    keyring = sealing.unseal_with_recovery(box.data_dir, box.init.recovery_key.lower())
    assert keyring.appliance_id == box.init.appliance_id
    assert state.sync(box.data_dir) is keyring


def test_a_mistyped_recovery_key_is_caught_by_its_checksum(box):
    text = box.init.recovery_key
    typo = text[:5] + ("A" if text[5] != "A" else "B") + text[6:]
    with pytest.raises(BadRecoveryKey):
        sealing.unseal_with_recovery(box.data_dir, typo)
    with pytest.raises(BadRecoveryKey):
        sealing.unseal_with_recovery(box.data_dir, text[:-4])


def test_a_well_formed_but_wrong_recovery_key_is_refused(box):
    with pytest.raises(WrongMasterKey):
        sealing.unseal_with_recovery(box.data_dir, format_recovery_key(os.urandom(32)))
    assert state.sync(box.data_dir) is None


def test_sealing_forgets_the_key_everywhere(box, keyring):
    assert sealing.seal_now(box.data_dir) is True
    assert state.is_sealed()
    assert state.sync(box.data_dir) is None
    assert sealing.seal_now(box.data_dir) is False


def test_initialising_twice_is_refused(box):
    with pytest.raises(KeysAlreadyInitialised):
        sealing.init_keys(box.data_dir, threshold=1, holders=[], demo=True)


def test_a_failing_self_test_refuses_to_unseal(box, monkeypatch):
    monkeypatch.setitem(selftest.CHECKS, "AES-256-GCM", lambda: False)
    selftest._passed_once.cache_clear()
    try:
        with pytest.raises(SelfTestFailed, match="AES-256-GCM"):
            sealing.unseal_with_recovery(box.data_dir, box.init.recovery_key)
        assert kernel.kernel_keyring().read(state.master_name(box.data_dir)) is None
    finally:
        selftest._passed_once.cache_clear()


def test_the_self_test_passes_on_published_vectors():
    assert selftest.failures() == []
    assert selftest.failures({"broken": lambda: 1 / 0}) == ["broken"]


def test_two_appliances_on_one_machine_do_not_share_a_key(box, keyring, tmp_path):
    other = make_appliance(tmp_path / "other")
    try:
        assert state.master_name(other.data_dir) != state.master_name(box.data_dir)
        assert state.sync(other.data_dir) is None
        assert sealing.status(other.data_dir).sealed
        sealing.unseal_with_recovery(other.data_dir, other.init.recovery_key)
        sealing.seal_now(other.data_dir)
        assert kernel.kernel_keyring().read(state.master_name(box.data_dir)) is not None
    finally:
        sealing.seal_now(other.data_dir)


CHILD = """
import sys
from pathlib import Path
from appliance.keys import state
keyring = state.sync(Path(sys.argv[1]))
print("sealed" if keyring is None else "unsealed " + keyring.appliance_id)
"""


def _child_sees(data_dir: Path) -> str:
    result = subprocess.run([sys.executable, "-c", CHILD, str(data_dir)], capture_output=True,
                            text=True, check=True, cwd=Path(__file__).parents[2])
    return result.stdout.strip()


def test_other_processes_of_the_appliance_follow_the_seal(box, keyring):
    assert _child_sees(box.data_dir) == f"unsealed {box.init.appliance_id}"
    sealing.seal_now(box.data_dir)
    assert _child_sees(box.data_dir) == "sealed"


def test_the_demo_unseals_itself_and_says_so(tmp_path, caplog):
    """Each process of a demo logs it; the command that starts them prints it (once)."""
    made = make_appliance(tmp_path, demo=True)
    try:
        assert made.init.demo_key_file is not None
        assert "DEMO ONLY" in made.init.demo_key_file.read_text()
        with caplog.at_level("DEBUG", logger="citadel.keys"):
            keyring = sealing.auto_unseal_demo(made.data_dir)
        assert keyring.demo and state.in_demo_mode()
        assert "DEMO MODE" in caplog.text
        assert sealing.status(made.data_dir).demo
    finally:
        sealing.seal_now(made.data_dir)


def test_a_demo_needs_no_holders(tmp_path):
    init = sealing.init_keys(tmp_path / "demo", threshold=0, holders=[], demo=True)
    try:
        assert init.share_files == []
        assert sealing.auto_unseal_demo(tmp_path / "demo").demo
        assert sealing.status(tmp_path / "demo").threshold == 0
    finally:
        sealing.seal_now(tmp_path / "demo")


def test_a_real_appliance_needs_holders(tmp_path):
    from appliance.kernel.errors import BadRequest

    with pytest.raises(BadRequest):
        sealing.init_keys(tmp_path / "x", threshold=1, holders=[])
    with pytest.raises(BadRequest):
        sealing.init_keys(tmp_path / "y", threshold=3, holders=[
            sealing.holder_for("passphrase", "a"), sealing.holder_for("passphrase", "b")])


def test_status_lists_holders_and_versions_without_secrets(box):
    report = sealing.status(box.data_dir).to_json()
    assert report["threshold"] == 2
    assert [h["name"] for h in report["holders"]] == ["alice", "bob", "carol"]
    assert report["versions"]["fields"] == {"current": 1, "versions": {1: "active"}}
    assert "share_hash" not in json.dumps(report)
    assert FAST_KDF.memory_kib == 8


def test_resharing_replaces_the_holders_and_the_recovery_key(box, keyring, tmp_path):
    new = [PassphraseHolder("dave", "dave passphrase 4444", FAST_KDF),
           PassphraseHolder("erin", "erin passphrase 55555", FAST_KDF)]
    result = sealing.reshare(keyring, threshold=2, holders=new, share_dir=tmp_path / "new")
    sealing.seal_now(box.data_dir)
    unsealer = sealing.Unsealer(box.data_dir)
    with pytest.raises(BadShareFile, match="not a holder"):
        unsealer.add_file(box.share("alice"), ask_for("alice"))
    with pytest.raises(WrongMasterKey):
        sealing.unseal_with_recovery(box.data_dir, box.init.recovery_key)
    unsealer.add_file(tmp_path / "new" / "dave.share", lambda _p: "dave passphrase 4444")
    unsealer.add_file(tmp_path / "new" / "erin.share", lambda _p: "erin passphrase 55555")
    assert unsealer.finish().data_key("fields") == keyring.data_key("fields")
    sealing.seal_now(box.data_dir)
    assert sealing.unseal_with_recovery(box.data_dir, result.recovery_key)


def test_resharing_can_keep_the_recovery_key(box, keyring, tmp_path):
    holders = [PassphraseHolder("alice", PASSPHRASES["alice"], FAST_KDF)]
    result = sealing.reshare(keyring, threshold=1, holders=holders, share_dir=tmp_path / "n",
                             new_recovery_key=False)
    assert result.recovery_key == ""
    sealing.seal_now(box.data_dir)
    sealing.unseal_with_recovery(box.data_dir, box.init.recovery_key)


def test_an_unfinished_initialisation_can_be_run_again(tmp_path):
    data_dir = tmp_path / "half"
    first = make_appliance(tmp_path)  # a complete one, to copy an orphan seal file from
    try:
        (data_dir / "keys").mkdir(parents=True)
        (data_dir / "keys" / "seal.json").write_bytes(
            (first.data_dir / "keys" / "seal.json").read_bytes())
        init = sealing.init_keys(data_dir, threshold=0, holders=[], demo=True)
        assert sealing.auto_unseal_demo(data_dir).appliance_id == init.appliance_id
    finally:
        sealing.seal_now(data_dir)
        sealing.seal_now(first.data_dir)


def test_start_follows_the_settings(box, tmp_path):
    from appliance.kernel.config import Settings
    from appliance.keys import start

    assert start(Settings(box.data_dir, {"demo": False})) is None
    sealing.unseal_with_recovery(box.data_dir, box.init.recovery_key)
    state.clear()
    assert start(Settings(box.data_dir, {"demo": False})).appliance_id == box.init.appliance_id
    demo = make_appliance(tmp_path / "demo", demo=True)
    try:
        assert start(Settings(demo.data_dir, {"demo": True})).demo
    finally:
        sealing.seal_now(demo.data_dir)


def test_without_keyutils_unsealing_says_what_to_install(box, tmp_path, monkeypatch):
    import ctypes

    from appliance.keys.errors import KernelKeyringUnavailable

    def missing(*_args, **_kwargs):
        raise OSError("libkeyutils.so.1: cannot open shared object file")

    kernel.kernel_keyring.cache_clear()
    monkeypatch.setattr(ctypes, "CDLL", missing)
    try:
        with pytest.raises(KernelKeyringUnavailable, match="install libkeyutils1"):
            sealing.unseal_with_recovery(box.data_dir, box.init.recovery_key)
        assert sealing.status(box.data_dir).kernel_keyring is False
        demo = make_appliance(tmp_path / "demo", demo=True)
        assert sealing.auto_unseal_demo(demo.data_dir).demo  # the demo runs in-process
        assert state.sync(demo.data_dir) is state.current()
    finally:
        monkeypatch.undo()
        kernel.kernel_keyring.cache_clear()
