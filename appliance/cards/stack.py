"""A private PC/SC stack: our own pcscd with a vpcd reader, for tests, demos and CI.

pcscd always serves ``/run/pcscd/pcscd.comm``, so it runs in its own mount
namespace (``unshare``) with a private directory bound on ``/run``; clients
reach it through ``PCSCLITE_CSOCK_NAME``, which this module sets for the
current process (``env()`` gives it to child processes). A machine's own pcscd,
if any, is untouched.

libpcsclite reads ``PCSCLITE_CSOCK_NAME`` once per process, at the first PC/SC
call: start the stack before anything else in the process talks to PC/SC, and
keep one stack per process (one per test session).

vpcd listens on all interfaces: anyone who reaches its port can insert a card.
Never run it on a production appliance.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from appliance.cards.errors import CardError, PcscUnavailable, StackUnavailable
from appliance.cards.transport import PcscContext, ReaderState
from appliance.cards.virtual import VirtualCard
from appliance.cards.virtual_state import VirtualCardState

VPCD_DRIVERS = (Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so"),
                Path("/usr/local/lib/pcsc/drivers/serial/libifdvpcd.so"))
APT_HINT = "install it with `apt-get install pcscd vsmartcard-vpcd`"
#: Below Linux's ephemeral range (32768+), so no TIME_WAIT socket can hold the port.
PORT_RANGE = (20000, 32000)
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
READER_CONFIG = """FRIENDLYNAME "{name}"
DEVICENAME /dev/null:0x{port:04X}
LIBPATH {driver}
CHANNELID 0x{port:04X}
"""


_process_socket: str | None = None  # the socket libpcsclite in this process will keep using
_shared: PcscStack | None = None
_shared_lock = threading.Lock()


def shared_stack() -> PcscStack:
    """The process's one stack: started on first use, stopped when the process exits."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = PcscStack().start()
            atexit.register(_shared.stop)
        return _shared


def _find_driver() -> Path:
    for path in VPCD_DRIVERS:
        if path.exists():
            return path
    raise StackUnavailable(detail=f"the vpcd reader driver is not installed; {APT_HINT}")


def _port_pair_free(port: int) -> bool:
    for candidate in (port, port + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("0.0.0.0", candidate))  # noqa: S104 - vpcd itself binds all
            except OSError:
                return False
    return True


def free_port() -> int:
    """A port P below 32768 such that P and P+1 (vpcd's two slots) are free."""
    low, high = PORT_RANGE
    for _ in range(200):
        port = random.randrange(low, high, 2)
        if _port_pair_free(port):
            return port
    raise StackUnavailable(detail=f"no free port pair between {low} and {high}")


class PcscStack:
    """pcscd in a private namespace with one vpcd reader (two slots: ports P and P+1)."""

    def __init__(self, workdir: Path | None = None, port: int | None = None,
                 reader_name: str = "Citadel Virtual Reader", log_apdus: bool = False) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="citadel-pcsc-"))
        self.port = port or free_port()
        self.reader_name = reader_name
        self.log_apdus = log_apdus  # APDU logs include PINs: only for debugging test cards
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def readers(self) -> list[str]:
        """The two reader slots' names, as PC/SC lists them."""
        return [f"{self.reader_name} 00 00", f"{self.reader_name} 00 01"]

    @property
    def reader(self) -> str:
        return self.readers[0]

    @property
    def socket_path(self) -> Path:
        return self.workdir / "run" / "pcscd" / "pcscd.comm"

    @property
    def log_path(self) -> Path:
        return self.workdir / "pcscd.log"

    def env(self) -> dict[str, str]:
        """Environment for a child process that must use this stack."""
        return {**os.environ, SOCKET_ENV: str(self.socket_path)}

    def _command(self, pcscd: str) -> list[str]:
        unshare = shutil.which("unshare")
        if unshare is None:
            raise StackUnavailable(detail="`unshare` is missing; apt-get install util-linux")
        isolate = [unshare, "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            isolate[1:1] = ["--user", "--map-root-user"]
        flags = " --debug --apdu" if self.log_apdus else ""
        script = f'mount --bind "$0" /run && exec "$1" --foreground --config "$2"{flags}'
        return [*isolate, "sh", "-c", script, str(self.workdir / "run"), pcscd,
                str(self.workdir / "reader.conf.d")]

    def _write_config(self, driver: Path) -> None:
        config = self.workdir / "reader.conf.d"
        config.mkdir(parents=True, exist_ok=True)
        (self.workdir / "run").mkdir(exist_ok=True)
        (config / "citadel-vpcd").write_text(
            READER_CONFIG.format(name=self.reader_name, port=self.port, driver=driver))

    def start(self, timeout: float = 10.0) -> PcscStack:
        """Start pcscd and wait until the reader is listed (cleans up if it cannot)."""
        try:
            self._spawn()
            self._wait_listed(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        global _process_socket
        pcscd = shutil.which("pcscd") or shutil.which("pcscd", path="/usr/sbin:/sbin")
        if pcscd is None:
            raise StackUnavailable(detail=f"pcscd is not installed; {APT_HINT}")
        driver = _find_driver()
        command = self._command(pcscd)
        if _process_socket not in (None, str(self.socket_path)):
            raise StackUnavailable(detail=(
                "this process already used another stack, and libpcsclite keeps the first "
                "socket it saw: share one stack per process (shared_stack())"))
        self._write_config(driver)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell input
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        os.environ[SOCKET_ENV] = _process_socket = str(self.socket_path)

    def _wait_listed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise StackUnavailable(detail=(
                    f"pcscd exited ({self._log_tail()}); it runs under `unshare --mount`, "
                    "which needs root or unprivileged user namespaces"))
            if self.socket_path.exists():
                try:
                    with PcscContext() as context:
                        if self.reader in context.readers():
                            return
                except CardError:
                    pass  # pcscd still starting
            time.sleep(0.02)
        raise StackUnavailable(detail=(
            f"pcscd did not list {self.reader!r} within {timeout:.0f} s; if this process "
            f"used PC/SC before starting the stack, start the stack first ({self._log_tail()})"))

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "empty log"

    def stop(self) -> None:
        """Stop pcscd (release card connections first) and remove the private files."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if os.environ.get(SOCKET_ENV) == str(self.socket_path):
            del os.environ[SOCKET_ENV]
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> PcscStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- cards ------------------------------------------------------------------------

    def new_card(self, state: VirtualCardState | None = None, slot: int = 0) -> VirtualCard:
        """A virtual card for reader slot ``slot`` (not inserted yet)."""
        return VirtualCard(state or VirtualCardState.generate(), port=self.port + slot)

    def wait_for_card(self, present: bool, slot: int = 0, timeout: float = 5.0) -> ReaderState:
        """Block until pcscd sees the reader ``slot`` with (or without) a card."""
        reader = self.readers[slot]
        deadline = time.monotonic() + timeout
        with PcscContext() as context:
            state = context.states([reader])[0]
            while state.present != present:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PcscUnavailable(detail=(
                        f"{reader} still {'empty' if present else 'holds a card'} after "
                        f"{timeout:.0f} s"))
                state = context.wait_change(state, int(min(left, 1.0) * 1000))
            return state

    def insert(self, card: VirtualCard) -> None:
        """Insert ``card`` and wait until pcscd has seen it."""
        card.insert()
        self.wait_for_card(True, slot=card.port - self.port)

    def remove(self, card: VirtualCard) -> None:
        """Remove ``card`` and wait until pcscd has noticed (before inserting another)."""
        card.remove()
        self.wait_for_card(False, slot=card.port - self.port)
