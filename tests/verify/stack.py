"""One appliance under test: its configuration, and ``appliance serve`` and
``appliance worker`` running under the systemd-like supervisor.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.verify.supervisor import Service
from tests.verify.units import load

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def configure(data_dir: Path, changes: dict[str, Any]) -> None:
    """Merge ``changes`` (tables merge key by key) into the appliance's citadel.toml."""
    path = data_dir / "citadel.toml"
    values = tomllib.loads(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = _merged(values[key], value)
        else:
            values[key] = value
    path.write_text(to_toml(values))


def to_toml(values: dict[str, Any], prefix: str = "") -> str:
    """TOML for ``values``: scalars and lists, then each table (nested ones dotted)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in values.items()
             if not isinstance(value, dict)]
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"\n[{prefix}{key}]")
            lines.append(to_toml(value, f"{prefix}{key}."))
    return "\n".join(lines).rstrip() + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in new.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and \
            isinstance(out.get(key), dict) else value
    return out


def http(method: str, url: str, *, timeout: float = 10, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, bytes]:
    """One request; (status, body). Connection failures raise ``OSError``."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Stack:
    """``appliance serve`` and ``appliance worker`` for one data directory."""

    def __init__(self, data_dir: Path, port: int, *, web_workers: int | None = None,
                 restart_sec: float | None = None, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.web_workers = web_workers
        self.restart_sec = restart_sec
        self.env = dict(os.environ, CITADEL_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1",
                        **(env or {}))
        self.services: dict[str, Service] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _service(self, unit_name: str, extra: list[str]) -> Service:
        unit = load(unit_name)
        args = [a.format(citadel_bind=f"127.0.0.1:{self.port}") for a in unit.exec_args]
        argv = [str(BIN / "appliance"), *args, *extra]
        return Service(unit, argv, self.env, self.data_dir / f"{unit_name}.log",
                       restart_sec=self.restart_sec)

    def start(self, *, worker: bool = True, wait: float = 90) -> Stack:
        extra = ["--workers", str(self.web_workers)] if self.web_workers else []
        self.services["web"] = self._service("citadel-web", extra).start()
        if worker:
            self.services["worker"] = self._service("citadel-worker", []).start()
        if wait:
            self.wait_healthy(wait)
        return self

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    def health(self, timeout: float = 5) -> tuple[int, dict[str, Any]]:
        """(status, body) of /healthz; status 0 when nothing answers."""
        try:
            status, body = http("GET", f"{self.base}/healthz", timeout=timeout)
        except OSError:
            return 0, {}
        try:
            return status, json.loads(body)
        except ValueError:
            return status, {"raw": body[:200].decode(errors="replace")}

    def wait_healthy(self, timeout: float = 90, *, worker: bool = False) -> float:
        """Seconds until /healthz answers 200 (and, with ``worker``, the worker is "ok")."""
        started = time.monotonic()
        last: tuple[int, dict[str, Any]] = (0, {})
        while time.monotonic() - started < timeout:
            last = self.health()
            if last[0] == 200 and (not worker or last[1]["checks"].get("worker") == "ok"):
                return time.monotonic() - started
            time.sleep(0.2)
        states = {name: s.state for name, s in self.services.items()}
        raise TimeoutError(f"/healthz not healthy after {timeout:.0f} s: {last}; services {states}; "
                           f"web log:\n{self.log_tail('citadel-web')}")

    def log_tail(self, unit_name: str, lines: int = 25) -> str:
        try:
            text = (self.data_dir / f"{unit_name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cli(self, *args: str, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``appliance ARGS`` for this data directory (every package's group included)."""
        return subprocess.run([sys.executable, "-m", "tests.verify.appliance_cli", "--data-dir",
                               str(self.data_dir), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=REPO, env={**self.env, **(env or {})})

    def cli_process(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """``appliance ARGS`` started in the background (its own process group)."""
        with log.open("ab") as out:
            return subprocess.Popen([sys.executable, "-m", "tests.verify.appliance_cli",
                                     "--data-dir", str(self.data_dir), *args], stdout=out,
                                    stderr=subprocess.STDOUT, cwd=REPO, env=self.env,
                                    start_new_session=True)
