"""Secret sharing of 32 bytes, the recovery key's encoding, and passphrase share blobs."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.keys.errors import BadRecoveryKey, WrongPassphrase
from appliance.keys.holders import KdfParams, PassphraseHolder, holder_for, register_holder_kind
from appliance.keys.recovery import ENCODED_LENGTH, format_recovery_key, parse_recovery_key
from appliance.keys.sharing import combine_shares, split_secret
from tests.keys.conftest import FAST_KDF


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), n=st.integers(1, 6), data=st.data())
def test_any_m_shares_rebuild_the_secret_and_fewer_do_not(secret, n, data):
    m = data.draw(st.integers(1, n))
    shares = split_secret(secret, m, n)
    assert sorted(s.index for s in shares) == list(range(1, n + 1))
    for subset in itertools.combinations(shares, m):
        assert combine_shares(list(subset)) == secret
    if m > 1:
        for subset in itertools.combinations(shares, m - 1):
            assert combine_shares(list(subset)) != secret


def test_the_two_halves_use_independent_polynomials():
    secret = bytes(16) * 2  # equal halves
    shares = split_secret(secret, 2, 3)
    assert all(s.value[:16] != s.value[16:] for s in shares)


def test_bad_sharing_parameters_are_refused():
    with pytest.raises(ValueError):
        split_secret(os.urandom(32), 3, 2)
    with pytest.raises(ValueError):
        split_secret(os.urandom(16), 1, 1)
    shares = split_secret(os.urandom(32), 2, 3)
    with pytest.raises(ValueError, match="twice"):
        combine_shares([shares[0], shares[0]])


KEY = bytes(range(32))


def test_the_recovery_key_reads_back_however_it_is_typed():
    text = format_recovery_key(KEY)
    assert len(text.replace("-", "")) == ENCODED_LENGTH
    assert parse_recovery_key(text) == KEY
    assert parse_recovery_key(text.lower().replace("-", " ")) == KEY
    assert parse_recovery_key("  " + text.replace("-", "") + "\n") == KEY
    lookalike = text.replace("O", "0").replace("I", "1").replace("B", "8")
    assert parse_recovery_key(lookalike) == KEY


def test_every_single_character_typo_is_caught():
    text = format_recovery_key(KEY).replace("-", "")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    for position, original in enumerate(text):
        for replacement in alphabet:
            if replacement == original:
                continue
            typo = text[:position] + replacement + text[position + 1:]
            with pytest.raises(BadRecoveryKey):
                parse_recovery_key(typo)


def test_swapped_neighbours_and_wrong_lengths_are_caught():
    text = format_recovery_key(KEY).replace("-", "")
    for i in range(len(text) - 1):
        if text[i] != text[i + 1]:
            swapped = text[:i] + text[i + 1] + text[i] + text[i + 2:]
            with pytest.raises(BadRecoveryKey):
                parse_recovery_key(swapped)
    with pytest.raises(BadRecoveryKey, match="characters"):
        parse_recovery_key(text + "A")
    with pytest.raises(BadRecoveryKey):
        parse_recovery_key("!" * ENCODED_LENGTH)


def test_a_passphrase_blob_opens_only_with_its_passphrase():
    holder = PassphraseHolder("dana", "correct horse battery", FAST_KDF)
    share = os.urandom(32)
    blob = holder.seal(share)
    assert share not in blob
    opener = holder_for("passphrase", "dana")
    assert opener.open(blob, lambda prompt: "correct horse battery") == share
    with pytest.raises(WrongPassphrase):
        opener.open(blob, lambda prompt: "correct horse batterY")


def test_passphrases_are_compared_after_unicode_normalisation():
    composed, decomposed = "caf\u00e9 passphrase", "cafe\u0301 passphrase"
    blob = PassphraseHolder("eve", composed, FAST_KDF).seal(os.urandom(32))
    assert len(holder_for("passphrase", "eve").open(blob, lambda _p: decomposed)) == 32


def test_the_kdf_cost_comes_from_the_blob_not_from_the_opener():
    blob = PassphraseHolder("fay", "passphrase for fay", KdfParams(2, 16, 1)).seal(b"s" * 32)
    opener = PassphraseHolder("fay", kdf=KdfParams(9, 999_999, 9))
    assert opener.open(blob, lambda _p: "passphrase for fay") == b"s" * 32


def test_settings_choose_the_kdf_cost():
    assert KdfParams.from_settings({"argon2_time_cost": 1, "argon2_memory_kib": 8,
                                    "argon2_parallelism": 1}) == FAST_KDF
    assert KdfParams.from_settings({}) == KdfParams()


def test_other_holder_kinds_plug_in():
    class Reversing(PassphraseHolder):
        kind = "reversing"

        def seal(self, share: bytes) -> bytes:
            return share[::-1]

        def open(self, blob: bytes, ask) -> bytes:
            assert ask("PIN") == "1234"
            return blob[::-1]

    register_holder_kind("reversing", Reversing)
    holder = holder_for("reversing", "card-holder")
    assert holder.open(holder.seal(b"abc"), lambda _p: "1234") == b"abc"
