"""Debian 12 roots to provision for real: built with mmdebstrap, copied with
overlayfs, and booted as systemd-nspawn containers with a private network.

Needs root and the Debian packages mmdebstrap and systemd-container.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import yaml

BASE_PACKAGES = "python3,systemd,systemd-sysv,dbus,ca-certificates"
SUITES = ("bookworm", "bookworm-updates", "bookworm-security")
FALLBACK_MIRRORS = ("http://deb.debian.org/debian", "http://deb.debian.org/debian-security")
POLICY_RC_D = "usr/sbin/policy-rc.d"


def missing_tools() -> list[str]:
    """The host tools these roots need and that are not installed."""
    needed = {"mmdebstrap": "mmdebstrap", "systemd-nspawn": "systemd-container",
              "nsenter": "util-linux", "chattr": "e2fsprogs"}
    return sorted({pkg for tool, pkg in needed.items() if shutil.which(tool) is None})


def apt_sources() -> list[str]:
    """One-line apt sources for bookworm taken from this machine's apt configuration."""
    entries: list[tuple[str, str]] = []  # (uri, suite)
    deb822 = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in deb822:
        for stanza in path.read_text().split("\n\n"):
            fields = _deb822_fields(stanza)
            if "deb" not in fields.get("types", "").split():
                continue
            for uri in fields.get("uris", "").split():
                entries += [(uri, suite) for suite in fields.get("suites", "").split()]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 3 and parts[0] == "deb":
                uri_at = 2 if parts[1].startswith("[") else 1
                entries.append((parts[uri_at], parts[uri_at + 1]))
    lines = [f"deb {uri} {suite} main" for uri, suite in entries if suite in SUITES]
    if not lines:
        debian, security = FALLBACK_MIRRORS
        lines = [f"deb {debian} bookworm main", f"deb {debian} bookworm-updates main",
                 f"deb {security} bookworm-security main"]
    return list(dict.fromkeys(lines))


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields


def build_root(dest: Path) -> Path:
    """A minimal bookworm with python3 and systemd, whose services never start
    while it is only a chroot (policy-rc.d answers 101)."""
    subprocess.run(
        ["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", "--quiet",
         "bookworm", str(dest), *apt_sources()],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    block_services(dest)
    return dest


def block_services(root: Path) -> None:
    policy = root / POLICY_RC_D
    policy.write_text("#!/bin/sh\n# no service starts while this root is a chroot\nexit 101\n")
    policy.chmod(0o755)


def allow_services(root: Path) -> None:
    (root / POLICY_RC_D).unlink(missing_ok=True)


@contextmanager
def overlay(lower: Path | list[Path], workspace: Path) -> Iterator[Path]:
    """A writable copy of ``lower`` (milliseconds, whatever its size)."""
    lowers = lower if isinstance(lower, list) else [lower]
    upper, work, merged = workspace / "upper", workspace / "work", workspace / "merged"
    for path in (upper, work, merged):
        path.mkdir(parents=True)
    options = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], check=True)
    try:
        yield merged
    finally:
        subprocess.run(["umount", "--lazy", str(merged)], check=False)
        _clear_append_only(upper)
        shutil.rmtree(workspace, ignore_errors=True)


def _clear_append_only(tree: Path) -> None:
    """Files made append-only (chattr +a) cannot be removed until cleared."""
    subprocess.run(["chattr", "-R", "-a", "-f", str(tree)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Container:
    """A booted systemd-nspawn container; commands run in it through nsenter."""

    def __init__(self, root: Path, workspace: Path) -> None:
        self.root = root
        self.workspace = workspace
        self.process: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.log = workspace / "nspawn.log"
        self.chroot_exe = workspace / "nsenter-chroot"

    def start(self, timeout: float = 60) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                # The kernel keyring is not namespaced, so nspawn denies it to containers
                # by default; the appliance keeps its unsealed master key there.
                ["systemd-nspawn", "--register=no", "--keep-unit", "--private-network",
                 "--system-call-filter=@keyring",
                 "--boot", "--directory", str(self.root), "--console=pipe",
                 "--machine", f"citadel-{os.getpid()}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.leader = self._wait_for_leader(timeout)
        self._write_chroot_exe()
        self._wait_until_booted(timeout)

    def _wait_until_booted(self, timeout: float) -> None:
        """Until systemd finished starting up ("degraded": some unit failed, e.g.
        auditd, which has no audit subsystem in a container)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            answer = self.run("systemctl", "is-system-running", "--wait", check=False,
                              timeout=timeout)
            state = answer.stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"container did not boot (state {state!r}):\n{self.log.read_text()}")

    def _wait_for_leader(self, timeout: float) -> int:
        """The container's PID 1, seen from the host: nspawn's child."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited:\n{self.log.read_text()}")
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            with suppress(FileNotFoundError):
                pids = children.read_text().split()
                # nspawn's child becomes the container's init once it exec()s systemd
                if pids and Path(f"/proc/{pids[0]}/comm").read_text().strip() == "systemd":
                    return int(pids[0])
            time.sleep(0.1)
        raise RuntimeError("systemd-nspawn started no container")

    def _write_chroot_exe(self) -> None:
        """Ansible's chroot connection calls ``EXE ROOT CMD...``; run CMD inside instead."""
        self.chroot_exe.write_text(
            "#!/bin/sh\n# Called as: nsenter-chroot ROOT COMMAND...\nshift\n"
            f"exec nsenter --target {self.leader} --all --root --wd -- \"$@\"\n")
        self.chroot_exe.chmod(0o755)

    def run(self, *command: str, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "--target", str(self.leader), "--all", "--root", "--wd", "--", *command],
            check=check, capture_output=True, text=True, timeout=timeout, input=input,
        )

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # nspawn asks the container to power off
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGTERM)  # a second one terminates at once
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def booted(root: Path, workspace: Path) -> Iterator[Container]:
    workspace.mkdir(parents=True, exist_ok=True)
    container = Container(root, workspace)
    try:
        container.start()
        yield container
    finally:
        container.stop()


def write_inventory(path: Path, root: Path, *, chroot_exe: Path | None = None,
                    group: str = "citadel", host: str = "appliance",
                    variables: dict[str, object] | None = None) -> Path:
    """An inventory that provisions ``root`` through Ansible's chroot connection."""
    hostvars: dict[str, object] = {
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(root),
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become_method": "su",
    }
    if chroot_exe is not None:
        hostvars["ansible_chroot_exe"] = str(chroot_exe)
    inventory = {group: {"hosts": {host: hostvars}, "vars": dict(variables or {})}}
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path
