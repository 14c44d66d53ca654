"""A virtual PIV card that plugs into a vpcd reader of pcscd (vsmartcard).

The card is a TCP client of vpcd: connecting inserts it, closing removes it.
Every message both ways is a 2-byte big-endian length then the payload; a
1-byte payload is a control code (00 power off, 01 power on, 02 reset, 04 "send
your ATR"), anything longer is a command APDU answered with ``data || SW``.

In-process (tests)::

    card = VirtualCard(VirtualCardState.generate(), port=stack.port)
    card.insert(); ...; card.remove()

As a process (demos)::

    python -m appliance.cards.virtual --port 29000 --state demo-card.json
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from appliance.cards.applet import Fault, PivApplet
from appliance.cards.errors import CardError, VirtualCardError
from appliance.cards.virtual_state import ALGORITHMS, VirtualCardState

CONTROL_POWER_OFF, CONTROL_POWER_ON, CONTROL_RESET, CONTROL_ATR = 0x00, 0x01, 0x02, 0x04


def _atr(historical: bytes) -> bytes:
    """An ATR offering T=0 and T=1 with ``historical`` bytes and the TCK checksum."""
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    check = 0
    for byte in body:
        check ^= byte
    return b"\x3b" + body + bytes([check])


#: Category 80, compact-TLV "card issuer's data" (tag 5, length 7): "Citadel".
ATR = _atr(b"\x80\x57Citadel")


class VirtualCard:
    """A virtual PIV card that can be inserted into and removed from a vpcd reader."""

    def __init__(self, state: VirtualCardState, port: int, host: str = "127.0.0.1",
                 state_path: Path | None = None) -> None:
        self.state = state
        self.host, self.port = host, port
        self.state_path = Path(state_path) if state_path else None
        self.applet = PivApplet(state, on_change=self._save)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_file(cls, path: Path, port: int, host: str = "127.0.0.1",
                  **generate: str) -> VirtualCard:
        """The card saved in ``path`` (created there on first use)."""
        state = VirtualCardState.load_or_create(Path(path), **generate)
        return cls(state, port, host, state_path=Path(path))

    @property
    def card_id(self) -> str:
        return self.state.card_id

    @property
    def inserted(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def inject(self, fault: Fault | str) -> None:
        """Make the card misbehave once (see ``Fault``)."""
        self.applet.inject(Fault(fault))

    def insert(self, timeout: float = 5.0) -> None:
        """Connect to vpcd: the reader now holds this card."""
        if self.inserted:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as exc:
            raise VirtualCardError(action="be inserted", detail=(
                f"no vpcd reader listens on {self.host}:{self.port} ({exc.strerror or exc}); "
                "start pcscd with a vpcd reader on that port")) from exc
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.applet.reset()
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,),
                                        name=f"virtual-card-{self.port}", daemon=True)
        self._thread.start()

    def remove(self) -> None:
        """Disconnect from vpcd: the reader is empty again."""
        sock, thread = self._sock, self._thread
        self._sock = None
        if sock is not None:
            with contextlib.suppress(OSError):  # already disconnected by vpcd
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if thread is not None:
            thread.join(timeout=5)
        self.applet.reset()

    def wait_removed(self, timeout: float | None = None) -> bool:
        """Block until the connection ends (vpcd went away or the card vanished)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.inserted

    def __enter__(self) -> VirtualCard:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _save(self, state: VirtualCardState) -> None:
        if self.state_path is not None:
            state.save(self.state_path)

    # -- the vpcd conversation ------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        try:
            while (payload := _receive(sock)) is not None:
                reply = self._answer(payload)
                if reply is None and len(payload) > 1:
                    break  # the applet vanished mid-command: a pulled card
                if reply is not None:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)
        except OSError:
            pass  # vpcd closed the connection or the card was removed
        finally:
            sock.close()
            self.applet.reset()

    def _answer(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            if payload[0] == CONTROL_ATR:
                return ATR
            self.applet.reset()  # power off, power on and reset all clear the session
            return None
        return self.applet.process(payload)


def _receive(sock: socket.socket) -> bytes | None:
    header = _receive_exactly(sock, 2)
    if header is None:
        return None
    return _receive_exactly(sock, struct.unpack(">H", header)[0])


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = b""
    while len(buffer) < size:
        # vpcd writes the length and the payload separately: acknowledge at once,
        # or Nagle plus delayed ACK cost about 40 ms per APDU.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            return None
        buffer += chunk
    return buffer


# -- command line --------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.cards.virtual",
        description="Run a virtual PIV card in a vpcd reader (tests and demos only).")
    parser.add_argument("--port", type=int, required=True, help="vpcd port of the reader")
    parser.add_argument("--host", default="127.0.0.1", help="vpcd host [127.0.0.1]")
    parser.add_argument("--state", type=Path, required=True,
                        help="card file: loaded if it exists, else a new card is saved there")
    parser.add_argument("--pin", default="123456", help="PIN of a new card [123456]")
    parser.add_argument("--holder", default="Citadel Demo User", help="name on a new card")
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="p256",
                        help="key type of a new card's slot 9A [p256]")
    return parser


def run(card: VirtualCard, stop: threading.Event, retry: float = 1.0,
        say: Callable[[str], None] = print) -> None:
    """Keep ``card`` inserted until ``stop`` is set, reconnecting if vpcd restarts."""
    announced = False
    while not stop.is_set():
        try:
            card.insert()
        except VirtualCardError as exc:
            if not announced:
                say(f"waiting for the reader: {exc}")
                announced = True
            stop.wait(retry)
            continue
        say(f"card {card.card_id} inserted in vpcd {card.host}:{card.port}")
        announced = False
        while not stop.is_set() and not card.wait_removed(0.5):
            pass
    card.remove()


def serve(state: Path, port: int, host: str = "127.0.0.1",
          say: Callable[[str], None] = print, **generate: str) -> None:
    """Run the card saved in ``state`` (created if missing) until SIGINT or SIGTERM."""
    card = VirtualCard.from_file(state, port, host, **generate)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    say(f"virtual PIV card {card.card_id} (PIN tries left {card.state.pin_tries_left}); "
        "Ctrl-C removes it")
    run(card, stop, say=say)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m appliance.cards.virtual``."""
    args = _parser().parse_args(argv)
    try:
        serve(args.state, args.port, args.host, say=lambda text: print(text, flush=True),
              pin=args.pin, holder=args.holder, authentication=args.algorithm)
    except CardError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
