"""PC/SC through pyscard's ``scard`` layer: readers, presence, one card channel.

Every PC/SC failure becomes a ``CardError`` subclass that says what to do.
A ``PcscContext`` belongs to one thread (PC/SC contexts are not shared across
threads); open one per operation, they are cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from smartcard import scard

from appliance.cards.errors import (
    CardAbsent,
    CardError,
    CardRemoved,
    PcscUnavailable,
    ReaderNotFound,
)

_SERVICE_GONE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED,
                 scard.SCARD_E_INVALID_HANDLE}
_CARD_GONE = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD,
              scard.SCARD_W_RESET_CARD, scard.SCARD_E_NOT_TRANSACTED,
              scard.SCARD_F_COMM_ERROR, scard.SCARD_W_UNPOWERED_CARD,
              scard.SCARD_W_UNRESPONSIVE_CARD, scard.SCARD_E_READER_UNAVAILABLE,
              scard.SCARD_E_UNKNOWN_READER}


def _message(hresult: int) -> str:
    return f"{scard.SCardGetErrorMessage(hresult).strip()} (0x{hresult & 0xFFFFFFFF:08X})"


def _check(hresult: int, doing: str) -> None:
    if hresult == scard.SCARD_S_SUCCESS:
        return
    if hresult in _SERVICE_GONE:
        raise PcscUnavailable(detail=_message(hresult))
    raise CardError(detail=f"cannot {doing}: {_message(hresult)}")


@dataclass(frozen=True)
class ReaderState:
    """What PC/SC says about one reader."""

    reader: str
    present: bool
    atr: bytes
    events: int  # pcsc-lite counts insertions and removals in the upper 16 bits

    @classmethod
    def from_scard(cls, reader: str, state: int, atr: list[int]) -> ReaderState:
        present = bool(state & scard.SCARD_STATE_PRESENT) and not state & scard.SCARD_STATE_MUTE
        return cls(reader, present, bytes(atr or b""), (state >> 16) & 0xFFFF)


class PcscContext:
    """A PC/SC resource-manager context (one thread)."""

    def __init__(self) -> None:
        hresult, self._handle = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult != scard.SCARD_S_SUCCESS:
            raise PcscUnavailable(detail=_message(hresult))

    def __enter__(self) -> PcscContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            scard.SCardReleaseContext(self._handle)
            self._handle = None

    def readers(self) -> list[str]:
        """Names of the connected readers (empty when there are none)."""
        hresult, names = scard.SCardListReaders(self._handle, [])
        if hresult in (scard.SCARD_E_NO_READERS_AVAILABLE, scard.SCARD_E_READER_UNAVAILABLE):
            return []
        _check(hresult, "list card readers")
        return list(names)

    def states(self, readers: list[str] | None = None) -> list[ReaderState]:
        """The current state of ``readers`` (all by default), without waiting."""
        names = self.readers() if readers is None else readers
        if not names:
            return []
        query = [(name, scard.SCARD_STATE_UNAWARE) for name in names]
        hresult, answer = scard.SCardGetStatusChange(self._handle, 0, query)
        if hresult == scard.SCARD_E_UNKNOWN_READER:
            raise ReaderNotFound(reader=", ".join(names), readers=self.readers())
        _check(hresult, "read the reader state")
        return [ReaderState.from_scard(name, state, atr) for name, state, atr in answer]

    def wait_change(self, known: ReaderState, timeout_ms: int) -> ReaderState:
        """Block until ``known.reader`` differs from ``known`` or the timeout passes."""
        state = (scard.SCARD_STATE_PRESENT if known.present else scard.SCARD_STATE_EMPTY)
        query = [(known.reader, state | (known.events << 16))]
        hresult, answer = scard.SCardGetStatusChange(self._handle, timeout_ms, query)
        if hresult == scard.SCARD_E_TIMEOUT:
            return self.states([known.reader])[0]
        if hresult == scard.SCARD_E_UNKNOWN_READER:
            return ReaderState(known.reader, False, b"", known.events)
        _check(hresult, "wait for the card")
        name, event_state, atr = answer[0]
        return ReaderState.from_scard(name, event_state, atr)

    def choose_reader(self, name: str | None) -> str:
        """``name`` if connected (exact match), else the first reader holding a card."""
        readers = self.readers()
        if name is not None:
            if name not in readers:
                raise ReaderNotFound(reader=name, readers=", ".join(readers) or "none")
            return name
        for state in self.states(readers):
            if state.present:
                return state.reader
        where = "any reader" if readers else "any reader (no reader is connected)"
        raise CardAbsent(where=where)

    def connect(self, reader: str) -> CardChannel:
        """Connect to the card in ``reader`` (shared mode, inside a transaction)."""
        hresult, card, protocol = scard.SCardConnect(
            self._handle, reader, scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        if hresult in (scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD,
                       scard.SCARD_W_UNPOWERED_CARD, scard.SCARD_W_UNRESPONSIVE_CARD):
            raise CardAbsent(where=reader)
        if hresult == scard.SCARD_E_UNKNOWN_READER:
            raise ReaderNotFound(reader=reader, readers=", ".join(self.readers()) or "none")
        if hresult == scard.SCARD_E_SHARING_VIOLATION:
            raise CardError(detail=f"another program holds the card in {reader} exclusively; "
                                   "close it and retry")
        _check(hresult, f"connect to the card in {reader}")
        channel = CardChannel(self, card, protocol, reader)
        channel.begin()
        return channel


class CardChannel:
    """One connection to a card, held in a PC/SC transaction until closed."""

    def __init__(self, context: PcscContext, card: int, protocol: int, reader: str) -> None:
        self._context = context
        self._card: int | None = card
        self._pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else \
            scard.SCARD_PCI_T1
        self.reader = reader

    def begin(self) -> None:
        self._events_at_connect = self._context.states([self.reader])[0].events
        hresult = scard.SCardBeginTransaction(self._card)
        if hresult in _CARD_GONE:
            self.close()
            raise CardRemoved()
        _check(hresult, "start a card transaction")

    def transmit(self, apdu: bytes) -> bytes:
        """Send one APDU, return the raw response (data and status word)."""
        if self._card is None:
            raise CardError(detail="the card connection is closed")
        hresult, response = scard.SCardTransmit(self._card, self._pci, list(apdu))
        if hresult in _CARD_GONE:
            raise CardRemoved()
        _check(hresult, "talk to the card")
        return bytes(response)

    def vanished(self, timeout_ms: int = 1500) -> bool:
        """Whether the card left the reader (waiting up to one presence poll of pcscd).

        A virtual card that disconnects mid-command yields an empty answer, not an
        error; a real reader reports the removal itself.
        """
        state = self._context.states([self.reader])[0]
        if state.present:
            state = self._context.wait_change(state, timeout_ms)
        return not state.present or state.events != self._events_at_connect

    def close(self) -> None:
        """End the transaction and reset the card, so no PIN state outlives us."""
        if self._card is None:
            return
        card, self._card = self._card, None
        scard.SCardEndTransaction(card, scard.SCARD_LEAVE_CARD)
        scard.SCardDisconnect(card, scard.SCARD_RESET_CARD)

    def __enter__(self) -> CardChannel:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
