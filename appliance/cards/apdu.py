"""ISO/IEC 7816-4 command and response APDUs, for both ends of the wire.

The client sends short APDUs only (command chaining and GET RESPONSE cover long
data, and every reader supports them); the virtual card also accepts extended
ones because other PIV software may send them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Status words used by PIV (SP 800-73-4 part 2, table 6).
SW_OK = 0x9000
SW_BYTES_REMAINING = 0x61  # SW1; SW2 = bytes available (00: 256 or more)
SW_WRONG_LE = 0x6C  # SW1; SW2 = the exact length to ask for
SW_VERIFY_FAILED = 0x63  # SW1; SW2 = Cx, x tries left
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_STATUS = 0x6982
SW_AUTH_BLOCKED = 0x6983
SW_CONDITIONS = 0x6985
SW_WRONG_DATA = 0x6A80
SW_FUNC_NOT_SUPPORTED = 0x6A81
SW_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_REF_NOT_FOUND = 0x6A88
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_UNKNOWN = 0x6F00

CLA_CHAINING = 0x10
INS_GET_RESPONSE = 0xC0
SHORT_MAX = 255


class ApduError(ValueError):
    """The bytes are not a well-formed APDU."""


@dataclass(frozen=True)
class Command:
    """A command APDU; ``le`` is the expected length (256 = "all", None = no Le)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def encode(self) -> bytes:
        """Short-form bytes (data up to 255, Le up to 256)."""
        if len(self.data) > SHORT_MAX:
            raise ApduError(f"{len(self.data)} bytes of data need command chaining")
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            out += bytes([len(self.data)]) + self.data
        if self.le is not None:
            if not 0 < self.le <= 256:
                raise ApduError(f"Le {self.le} out of range")
            out += bytes([self.le & 0xFF])
        return out

    def chained(self) -> list[Command]:
        """This command split with command chaining (CLA bit 0x10 on all but the last)."""
        if len(self.data) <= SHORT_MAX:
            return [self]
        chunks = [self.data[i:i + SHORT_MAX] for i in range(0, len(self.data), SHORT_MAX)]
        parts = [Command(self.cla | CLA_CHAINING, self.ins, self.p1, self.p2, chunk)
                 for chunk in chunks[:-1]]
        return [*parts, Command(self.cla, self.ins, self.p1, self.p2, chunks[-1], self.le)]

    @classmethod
    def parse(cls, raw: bytes) -> Command:
        """Parse a short or extended command APDU (cases 1 to 4)."""
        if len(raw) < 4:
            raise ApduError("an APDU has at least 4 header bytes")
        header, body = raw[:4], raw[4:]
        data, le = _parse_body(body)
        return cls(header[0], header[1], header[2], header[3], data, le)


def _parse_body(body: bytes) -> tuple[bytes, int | None]:
    if not body:
        return b"", None
    if len(body) == 1:
        return b"", body[0] or 256
    if body[0] != 0:  # short form
        lc = body[0]
        if len(body) == 1 + lc:
            return body[1:], None
        if len(body) == 2 + lc:
            return body[1:1 + lc], body[-1] or 256
        raise ApduError("Lc does not match the data length")
    if len(body) == 3:  # extended case 2: 00 Le1 Le2
        return b"", int.from_bytes(body[1:3], "big") or 65536
    lc = int.from_bytes(body[1:3], "big")
    rest = body[3:]
    if len(rest) == lc:
        return rest, None
    if len(rest) == lc + 2:
        return rest[:lc], int.from_bytes(rest[lc:], "big") or 65536
    raise ApduError("extended Lc does not match the data length")


@dataclass(frozen=True)
class Response:
    """A response APDU: data then the status word."""

    data: bytes
    sw: int

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def encode(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def parse(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise ApduError(f"a response has a 2-byte status word, got {len(raw)} bytes")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))


def sw_hex(sw: int) -> str:
    """A status word as people read it: ``6A82``."""
    return f"{sw:04X}"
