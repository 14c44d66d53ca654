"""Formatting channels: a forced bit reads back, and the value's meaning never changes."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from dlp.watermark import EMAIL, NBSP, PHONE, TAX_ID, TEXT, WEBSITE, Channel

bits = st.integers(0, 1)
picks = st.integers(0, 2**32 - 1)
words = st.text(alphabet=st.characters(categories=("L", "N"), include_characters="&.,'-"),
                min_size=1, max_size=8)


def check(channel: Channel, cell: str, bit: int, pick: int, *, forceable: bool = True) -> str:
    """Force ``bit``; the value must mean the same, and read ``bit`` back unless it could not
    be forced (then it must be left exactly as it was)."""
    assert channel.applies(cell)
    forced = channel.force(cell, bit, pick)
    assert channel.applies(forced), (cell, forced)
    assert channel.normal(forced) == channel.normal(cell), (cell, forced)
    if forceable:
        assert channel.read(forced) == bit, (cell, forced)
    else:
        assert channel.read(forced) == bit or forced == cell, (cell, forced)
    return forced


@given(st.lists(words, min_size=2, max_size=6), st.lists(st.sampled_from([" ", NBSP]),
                                                         min_size=5, max_size=5), bits, picks)
def test_a_no_break_space_carries_the_bit_and_the_text_reads_the_same(parts, gaps, bit, pick):
    cell = "".join(p + gaps[i % len(gaps)] for i, p in enumerate(parts[:-1])) + parts[-1]
    forced = check(TEXT, cell, bit, pick)
    assert forced.replace(NBSP, " ") == cell.replace(NBSP, " ")


@given(st.sampled_from(["+49", "+1", "0049", "0", ""]),
       st.lists(st.text(alphabet="0123456789", min_size=1, max_size=6), min_size=2, max_size=5),
       st.sampled_from([" ", "-", "/", " - "]), bits, picks)
def test_a_phone_number_keeps_its_digits_whatever_its_spacing(prefix, groups, sep, bit, pick):
    cell = (prefix + " " if prefix else "") + sep.join(groups)
    if sum(c.isdigit() for c in cell) < 6:
        return
    forced = check(PHONE, cell, bit, pick, forceable=False)
    assert re.sub(r"\D", "", forced) == re.sub(r"\D", "", cell)
    assert forced.strip().startswith(cell.strip()[:1])


@given(st.from_regex(r"[a-z][a-z0-9._]{0,12}@[a-z0-9-]{1,12}\.(de|com|fr|example)", fullmatch=True),
       bits, picks)
def test_an_address_changes_only_the_case_of_its_first_letter(address, bit, pick):
    forced = check(EMAIL, address, bit, pick)
    assert forced.lower() == address.lower() and forced[1:] == address[1:]


@given(st.from_regex(r"(https?://)?(www\.)?[a-z0-9-]{1,12}\.(de|com|co\.uk)/?", fullmatch=True),
       bits, picks)
def test_a_website_gains_or_loses_only_its_trailing_slash(site, bit, pick):
    forced = check(WEBSITE, site, bit, pick)
    assert forced.rstrip("/") == site.rstrip("/")


@given(st.from_regex(r"(DE|FR|GB|ATU)? ?[0-9]{8,11}", fullmatch=True), bits, picks)
def test_a_tax_id_keeps_its_letters_and_digits(tax_id, bit, pick):
    forced = check(TAX_ID, tax_id, bit, pick)
    assert forced.replace(" ", "") == tax_id.replace(" ", "")


@given(bits, picks)
def test_phone_numbers_as_people_write_them_all_carry_a_bit(bit, pick):
    for cell in ("+49 30 1234567", "+49 123 456-789", "+1 212 555-0100", "030 1234567",
                 "+44 (0)20 7946 0958", "0049301234567", "+33 1 23 45 67 89", "0301234567"):
        check(PHONE, cell, bit, pick)


def test_cells_a_channel_cannot_mark_are_left_alone():
    assert not EMAIL.applies("INFO@X.DE")  # an all-capitals address has no free letter
    assert not EMAIL.applies("1info@x.de")
    assert not PHONE.applies("+49 *** ***-12")  # masked
    assert not TAX_ID.applies("*****0012")
    assert not WEBSITE.applies("https://x.de/about")  # a path: a slash would change the page
    assert not TEXT.applies("Berlin")
    assert not TEXT.applies(" Berlin ")  # only spaces inside a text count
