"""Fixtures that provision a real Debian 12 root with the playbook.

Built once per test session: the project's wheel (from a clean copy of the
tree), a wheelhouse of its dependencies, and a bookworm root made with
mmdebstrap. The playbook is applied to an overlay copy of that root through
Ansible's chroot connection (services gated off); the live tests boot the same
copy with systemd-nspawn and apply again inside it.

Needs root and the Debian packages mmdebstrap, systemd-container and vagrant.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioning.runner import ProvisionResult, run_playbook
from tests.provisioning import builds, rootfs

#: The appliance as the tests provision it; everything else is the roles' defaults.
APPLIANCE_VARS: dict[str, Any] = {
    "hardening_firewall_ssh_networks": ["10.20.0.0/16", "fd00:20::/64"],
    "hardening_firewall_https_networks": ["0.0.0.0/0", "::/0"],
    "nginx_server_name": "citadel.test",
    "logforward_siem_enabled": True,
    "logforward_siem_host": "127.0.0.1",
    "logforward_siem_port": 5514,
    "logforward_siem_tls": False,
    "citadel_settings": {"session_idle_minutes": 20},
    "citadel_backup_settings": {
        "schedule": "02:30",
        "scratch_url": "postgresql://citadel_drill@/postgres?host=/run/postgresql",
        "keep": {"daily": 7, "weekly": 4},
    },
    "citadel_backup_targets": [{"name": "local", "type": "local",
                                "path": "/var/backups/citadel"}],
}


def pytest_report_header() -> str:
    return "provisioning: apply times are printed with -s"


@dataclass
class Applied:
    """One playbook run and how long it took."""

    result: ProvisionResult
    seconds: float


def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("provisioning tests build and mount Debian roots: run them as root")
    missing = rootfs.missing_tools()
    if missing:
        pytest.fail(f"install the Debian packages {', '.join(missing)} (apt-get install "
                    f"--no-install-recommends {' '.join(missing)})")


@pytest.fixture(scope="session")
def provision_workspace() -> Iterator[Path]:
    _require_tools()
    # Not under /tmp: overlayfs needs a real filesystem and this tree gets large.
    base = Path(os.environ.get("CITADEL_PROVISION_TMP", "/var/tmp"))
    workspace = base / f"citadel-provision-{os.getpid()}"
    workspace.mkdir(parents=True, exist_ok=True)
    yield workspace
    subprocess.run(["chattr", "-R", "-a", "-f", str(workspace)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", "--one-file-system", str(workspace)], check=False)


@pytest.fixture(scope="session")
def citadel_wheel(provision_workspace: Path) -> Path:
    return builds.build_wheel(provision_workspace / "wheel")


@pytest.fixture(scope="session")
def wheelhouse(provision_workspace: Path, citadel_wheel: Path) -> Path:
    """Every dependency as a wheel: the container has no network."""
    return builds.build_wheelhouse(citadel_wheel, provision_workspace / "wheelhouse")


@pytest.fixture(scope="session")
def base_root(provision_workspace: Path) -> Path:
    started = time.monotonic()
    root = rootfs.build_root(provision_workspace / "bookworm")
    print(f"\n[provision] Debian 12 root built in {time.monotonic() - started:.1f} s")
    return root


@pytest.fixture(scope="session")
def appliance_root(base_root: Path, provision_workspace: Path) -> Iterator[Path]:
    """A writable copy of the base root that the chroot and live tests share."""
    with rootfs.overlay(base_root, provision_workspace / "appliance") as merged:
        yield merged


@pytest.fixture(scope="session")
def apply(provision_workspace: Path, citadel_wheel: Path,
          wheelhouse: Path) -> Callable[..., Applied]:
    """Apply the playbook to a root: ``apply(root, live=False, tags=(), ...)``."""
    counter = iter(range(1_000_000))

    def run(root: Path, *, live: bool = False, chroot_exe: Path | None = None,
            tags: tuple[str, ...] = (), skip_tags: tuple[str, ...] = (),
            group: str = "citadel",
            extra: dict[str, Any] | None = None, label: str = "") -> Applied:
        number = next(counter)
        variables = {**APPLIANCE_VARS, "appliance_live": live,
                     "citadel_wheel": str(citadel_wheel), "citadel_wheelhouse": str(wheelhouse),
                     "citadel_build_dir": str(provision_workspace / "build"), **(extra or {})}
        inventory = rootfs.write_inventory(provision_workspace / f"inventory-{number}.yml", root,
                                           chroot_exe=chroot_exe, group=group,
                                           variables=variables)
        started = time.monotonic()
        result = run_playbook(inventory, tags=tags, skip_tags=skip_tags)
        seconds = time.monotonic() - started
        summary = ", ".join(f"{h.host}: ok={h.ok} changed={h.changed} failed={h.failed}"
                            for h in result.hosts.values())
        print(f"\n[provision] {label or 'apply'}: {seconds:.1f} s ({summary})")
        for failure in result.failures:
            print(f"[provision]   FAILED {failure.task}: {failure.message}")
        return Applied(result, seconds)

    return run


@pytest.fixture(scope="session")
def chroot_applied(apply: Callable[..., Applied], appliance_root: Path) -> tuple[Applied, Applied]:
    """The playbook applied twice through the chroot connection, services gated off."""
    first = apply(appliance_root, label="chroot apply")
    second = apply(appliance_root, label="chroot re-apply") if first.result.succeeded else first
    return first, second
