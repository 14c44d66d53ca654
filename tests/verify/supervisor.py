"""A small process supervisor with systemd's ``Restart=`` semantics.

On the appliance, systemd runs ``appliance serve`` and ``appliance worker``
(provisioning/roles/citadel/templates/etc/systemd/system). This class does for
a test what systemd does there, as ``tests.verify.units`` reads it from the
templates:

- the service runs in a process group of its own, the stand-in for its control
  group: when the main process dies, what is left of the group (gunicorn's
  workers) gets SIGTERM, then SIGKILL after ``TimeoutStopSec`` (KillMode=control-group);
- ``Restart=on-failure`` restarts after a non-zero exit or death by a signal other
  than SIGHUP, SIGINT, SIGTERM and SIGPIPE, ``RestartSec`` later;
- more than ``StartLimitBurst`` starts within ``StartLimitIntervalSec`` and the
  service stays down (``failed``), as systemd's start limit does.

Nothing here fixes a process up: it comes back healthy on its own, or not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tests.verify.units import Unit

CLEAN_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE}


def restarts_after(policy: str, returncode: int) -> bool:
    """Whether systemd restarts a service whose main process ended with ``returncode``."""
    if policy == "always":
        return True
    if policy != "on-failure":
        return False
    if returncode < 0:
        return -returncode not in CLEAN_SIGNALS
    return returncode != 0


class Service:
    """One supervised command; ``start``, ``stop``, and the main pid to kill."""

    def __init__(self, unit: Unit, argv: Sequence[str], env: dict[str, str], log: Path,
                 *, restart_sec: float | None = None) -> None:
        self.unit = unit
        self.argv = list(argv)
        self.env = env
        self.log_path = log
        self.restart_sec = unit.restart_sec if restart_sec is None else restart_sec
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = "inactive"
        self.starts: deque[float] = deque()
        self.exits: list[int] = []
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self._monitor: threading.Thread | None = None
        self._log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return self.unit.name

    @property
    def pid(self) -> int | None:
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def restarts(self) -> int:
        return max(0, len(self.exits) - (1 if self.state == "failed" else 0))

    def start(self) -> Service:
        self._stopping.clear()
        self._log = self.log_path.open("ab")
        self._spawn()
        self._monitor = threading.Thread(target=self._watch, name=f"supervise {self.name}",
                                         daemon=True)
        self._monitor.start()
        return self

    def _spawn(self) -> None:
        now = time.monotonic()
        self.starts.append(now)
        while self.starts and now - self.starts[0] > self.unit.start_limit_interval:
            self.starts.popleft()
        with self._lock:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self._log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.state = "active"

    def _watch(self) -> None:
        while True:
            proc = self.proc
            assert proc is not None
            code = proc.wait()
            self._kill_group(proc.pid)
            if self._stopping.is_set():
                self.state = "inactive"
                return
            self.exits.append(code)
            if not restarts_after(self.unit.restart, code):
                self.state = "failed" if code != 0 else "inactive"
                return
            self.state = "activating"
            if self._stopping.wait(self.restart_sec):
                self.state = "inactive"
                return
            if len(self.starts) >= self.unit.start_limit_burst and \
                    time.monotonic() - self.starts[0] <= self.unit.start_limit_interval:
                self.state = "failed"  # systemd: "Start request repeated too quickly"
                return
            with self._lock:
                if self._stopping.is_set():
                    self.state = "inactive"
                    return
                self._spawn()

    def _kill_group(self, pgid: int) -> None:
        """What remains of the group: SIGTERM, then SIGKILL after TimeoutStopSec."""
        if not _group_alive(pgid):
            return
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.unit.timeout_stop_sec
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pgid, signal.SIGKILL)

    def kill(self, sig: int = signal.SIGKILL) -> int | None:
        """Send ``sig`` to the main process (as an outside fault would); returns its pid."""
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return None
        return pid

    def stop(self) -> None:
        """``systemctl stop``: SIGTERM to the group, SIGKILL after TimeoutStopSec."""
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.unit.timeout_stop_sec)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._monitor is not None:
            self._monitor.join(timeout=self.unit.timeout_stop_sec + 5)
        if proc is not None:
            self._kill_group(proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.state = "inactive"


def _group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
