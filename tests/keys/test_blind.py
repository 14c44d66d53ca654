"""Blind indexes: normalisation, keyed and per-column, versioned; name-token search."""

from __future__ import annotations

import pytest

from appliance.keys import blind
from appliance.keys.sealing import seal_now, unseal_with_recovery
from tests.keys.conftest import make_appliance


@pytest.mark.parametrize(("kind", "typed", "normal"), [
    ("email", "  Jane.Doe@Example.COM\t", "jane.doe@example.com"),
    ("email", "ｊａｎｅ@example.com", "jane@example.com"),  # full-width letters (NFKC)
    ("phone", "+49 (30) 123-45", "493012345"),
    ("phone", "0049 30 12345", "493012345"),
    ("phone", "030 12345", "03012345"),
    ("tax_id", "de 123.456-789", "DE123456789"),
    ("tax_id", " GB-999 9999 73 ", "GB999999973"),
    ("text", "  Ab  ", "Ab"),
])
def test_normalisers(kind, typed, normal):
    assert blind.normaliser(kind)(typed) == normal


def test_unknown_kinds_fail_early():
    with pytest.raises(ValueError, match="unknown blind index kind"):
        blind.normaliser("iban")


def test_the_index_is_versioned_keyed_and_truncated(keyring):
    index = blind.blind_index("t", "email", "email", "A@B.c")
    assert len(index) == blind.STORED_BYTES == 20
    assert blind.index_version(index) == 1
    assert index == blind.blind_index("t", "email", "email", " a@b.C ")
    assert index != blind.blind_index("t", "email2", "email", "a@b.c")
    assert blind.blind_index("t", "email", "email", "   ") is None
    keyring.add_version("blind_index")
    newer = blind.blind_index("t", "email", "email", "a@b.c")
    assert blind.index_version(newer) == 2 and newer[4:] != index[4:]
    assert set(blind.blind_terms("t", "email", "email", "A@b.c")) == {index, newer}


def test_another_appliance_computes_unrelated_indexes(keyring, tmp_path):
    mine = blind.blind_index("t", "email", "email", "a@b.c")
    other = make_appliance(tmp_path / "other")
    try:
        theirs = unseal_with_recovery(other.data_dir, other.init.recovery_key)
        assert blind.blind_index("t", "email", "email", "a@b.c", keyring=theirs) != mine
    finally:
        seal_now(other.data_dir)


def test_name_tokens_fold_case_accents_and_punctuation():
    assert blind.name_tokens("Zoë  O'Neil-Smith") == ["zoe", "o", "neil", "smith"]
    assert blind.token_prefixes("smith") == ["smi", "smit", "smith"]
    assert blind.token_prefixes("li") == ["li"]


def test_name_search_matches_word_prefixes_in_any_order(keyring):
    rows = {
        1: "Zoë O'Neil-Smith",
        2: "Johann Smithers",
        3: "Anna Schmidt",
        4: "Li Wei",
    }
    index = {row: blind.name_index_terms("contacts", "name", name, min_prefix=3)
             for row, name in rows.items()}

    def search(term: str) -> list[int]:
        wanted = blind.name_search_terms("contacts", "name", term)
        return sorted(r for r, tokens in index.items()
                      if wanted and all(tokens & alternatives for alternatives in wanted))

    assert search("smi") == [1, 2]
    assert search("SMITH zoe") == [1]
    assert search("schm") == [3]
    assert search("wei") == [4]
    assert search("nobody") == []
    assert search("sm") == []  # shorter than a prefix token: whole words only
    assert search("li") == [4]


def test_whole_word_tokens_find_only_whole_words(keyring):
    tokens = blind.name_index_terms("contacts", "name", "Anna Schmidt")
    assert len(tokens) == 2
    [schmidt] = blind.name_search_terms("contacts", "name", "SCHMIDT")
    [schm] = blind.name_search_terms("contacts", "name", "schm")
    assert tokens & schmidt and not tokens & schm


def test_short_tokens_collide_on_purpose(keyring):
    tokens = [blind.index_of(keyring, 1, "c", "n", f"name{i}", length=1) for i in range(600)]
    assert len(set(tokens)) <= 256
