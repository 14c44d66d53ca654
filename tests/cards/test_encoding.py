"""BER-TLV, APDU framing and the PKCS#1 v1.5 block: pure functions, no card."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.cards import spec, tlv
from appliance.cards.apdu import ApduError, Command, Response

TAGS = st.sampled_from([0x53, 0x70, 0x7C, 0x82, 0x5C, 0x5FC105, 0x5F2F, 0x7F49])


@pytest.mark.parametrize(("length", "encoded"), [
    (0, "00"), (127, "7F"), (128, "8180"), (255, "81FF"), (256, "820100"),
    (65535, "82FFFF"), (65536, "83010000"),
])
def test_length_forms(length: int, encoded: str) -> None:
    assert tlv.encode_length(length).hex().upper() == encoded


@given(st.lists(st.tuples(TAGS, st.binary(max_size=600)), max_size=5))
def test_tlv_round_trip(items: list[tuple[int, bytes]]) -> None:
    data = b"".join(tlv.encode(tag, value) for tag, value in items)
    assert tlv.decode(data) == items


@given(TAGS, st.binary(min_size=1, max_size=400), st.data())
def test_any_truncation_is_an_error(tag: int, value: bytes, data: st.DataObject) -> None:
    encoded = tlv.encode(tag, value)
    cut = data.draw(st.integers(min_value=1, max_value=len(encoded) - 1))
    with pytest.raises(tlv.TlvError):
        tlv.decode(encoded[:cut])


@pytest.mark.parametrize("bad", ["5F", "5FC1", "5380", "5384FFFFFFFF", "53820100AA"])
def test_malformed_tlv_is_refused(bad: str) -> None:
    with pytest.raises(tlv.TlvError):
        tlv.decode(bytes.fromhex(bad))


def test_unwrap_wants_exactly_one_object() -> None:
    assert tlv.unwrap(bytes.fromhex("530101"), 0x53) == b"\x01"
    with pytest.raises(tlv.TlvError, match="found 0x7D"):
        tlv.unwrap(bytes.fromhex("7D00"), 0x7C)
    with pytest.raises(tlv.TlvError):
        tlv.unwrap(bytes.fromhex("53005300"), 0x53)


@given(st.binary(max_size=255), st.one_of(st.none(), st.integers(1, 256)))
def test_short_apdu_round_trip(data: bytes, le: int | None) -> None:
    command = Command(0x00, 0xCB, 0x3F, 0xFF, data, le)
    assert Command.parse(command.encode()) == command


def test_extended_apdus_parse() -> None:
    assert Command.parse(bytes.fromhex("00870011000003AABBCC0100")).data == b"\xaa\xbb\xcc"
    assert Command.parse(bytes.fromhex("00870011000003AABBCC0100")).le == 256
    assert Command.parse(bytes.fromhex("00CB3FFF000000")).le == 65536
    with pytest.raises(ApduError):
        Command.parse(bytes.fromhex("00CB3FFF05AA"))


def test_command_chaining_splits_long_data() -> None:
    parts = Command(0x00, 0x87, 0x07, 0x9A, bytes(600), le=256).chained()
    assert [len(p.data) for p in parts] == [255, 255, 90]
    assert [p.cla for p in parts] == [0x10, 0x10, 0x00]
    assert [p.le for p in parts] == [None, None, 256]
    with pytest.raises(ApduError, match="chaining"):
        Command(0x00, 0x87, 0x07, 0x9A, bytes(256)).encode()


def test_response_needs_a_status_word() -> None:
    assert Response.parse(bytes.fromhex("AA9000")) == Response(b"\xaa", 0x9000)
    with pytest.raises(ApduError):
        Response.parse(b"\x90")


@pytest.mark.parametrize("size", [32, 48, 64])
def test_pkcs1v15_block_round_trip(size: int) -> None:
    digest = bytes(range(size))
    block = spec.pkcs1v15_block(digest)
    assert len(block) == 256 and block.startswith(b"\x00\x01\xff")
    assert spec.digest_from_pkcs1v15_block(block) == digest


def test_pkcs1v15_parser_refuses_other_blocks() -> None:
    block = bytearray(spec.pkcs1v15_block(bytes(32)))
    assert spec.digest_from_pkcs1v15_block(bytes(256)) is None
    block[5] = 0x00  # padding cut short
    assert spec.digest_from_pkcs1v15_block(bytes(block)) is None


def test_pin_padding() -> None:
    assert spec.pad_pin("123456") == b"123456\xff\xff"
    for bad in ("12345", "123456789", ""):
        with pytest.raises(spec.BadPinFormat):
            spec.pad_pin(bad)
