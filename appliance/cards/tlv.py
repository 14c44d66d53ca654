"""BER-TLV as used by PIV (SP 800-73-4 part 2, ISO/IEC 7816-4 annex D).

Tags are kept as integers of their encoded bytes (``0x5FC105``); lengths use
the short form below 128 and ``81``/``82``/``83`` long forms above. Decoding is
strict: a length running past the end or an unterminated tag raises
``TlvError`` so a misbehaving card cannot make us read garbage as data.
"""

from __future__ import annotations

from collections.abc import Iterator

MAX_LENGTH = 0xFFFFFF


class TlvError(ValueError):
    """The bytes are not well-formed BER-TLV."""


def encode_length(length: int) -> bytes:
    """The BER length field for ``length`` bytes of value."""
    if length < 0 or length > MAX_LENGTH:
        raise TlvError(f"length {length} out of range")
    if length < 0x80:
        return bytes([length])
    size = (length.bit_length() + 7) // 8
    return bytes([0x80 | size]) + length.to_bytes(size, "big")


def encode_tag(tag: int) -> bytes:
    """The bytes of ``tag`` (an integer whose big-endian bytes are the tag)."""
    return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")


def encode(tag: int, value: bytes) -> bytes:
    """One TLV: tag, length, value."""
    return encode_tag(tag) + encode_length(len(value)) + value


def _read_tag(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError("missing tag")
    first = data[pos]
    tag, end = first, pos + 1
    if first & 0x1F == 0x1F:  # multi-byte tag: following bytes while bit 8 is set
        while True:
            if end >= len(data):
                raise TlvError("tag runs past the end")
            if end - pos >= 4:
                raise TlvError("tag longer than 4 bytes")
            byte = data[end]
            tag, end = (tag << 8) | byte, end + 1
            if not byte & 0x80:
                break
    return tag, end


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError("missing length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    size = first & 0x7F
    if size == 0 or size > 3:
        raise TlvError(f"unsupported length form 0x{first:02X}")
    if pos + size > len(data):
        raise TlvError("length runs past the end")
    return int.from_bytes(data[pos:pos + size], "big"), pos + size


def iterate(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Each (tag, value) at the top level of ``data``; raises on any malformation."""
    pos = 0
    while pos < len(data):
        tag, pos = _read_tag(data, pos)
        length, pos = _read_length(data, pos)
        if pos + length > len(data):
            raise TlvError(f"value of tag 0x{tag:X} runs past the end")
        yield tag, data[pos:pos + length]
        pos += length


def decode(data: bytes) -> list[tuple[int, bytes]]:
    """All top-level (tag, value) pairs of ``data``."""
    return list(iterate(data))


def to_dict(data: bytes) -> dict[int, bytes]:
    """Top-level TLVs as a dict (the first occurrence of a tag wins)."""
    found: dict[int, bytes] = {}
    for tag, value in iterate(data):
        found.setdefault(tag, value)
    return found


def unwrap(data: bytes, tag: int) -> bytes:
    """The value of ``data`` when it is exactly one TLV with ``tag``."""
    items = decode(data)
    if len(items) != 1 or items[0][0] != tag:
        found = ", ".join(f"0x{t:X}" for t, _ in items) or "nothing"
        raise TlvError(f"expected one 0x{tag:X} object, found {found}")
    return items[0][1]
