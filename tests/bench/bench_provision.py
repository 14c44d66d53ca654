"""How long the provisioning playbook takes on a fresh Debian 12 root.

Builds a bookworm root with mmdebstrap, then applies the playbook through the
chroot connection (services gated off): the full apply, the idempotent
re-run, and ``--tags verify``. Baseline measured in the same run: a one-task
playbook over the same connection (ansible's fixed start-up cost).

    .venv/bin/python -m tests.bench.bench_provision    (as root; needs mmdebstrap)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from provisioning.runner import ProvisionResult, run_playbook
from tests.provisioning import builds, rootfs
from tests.provisioning.conftest import APPLIANCE_VARS

BASELINE_PLAY = """\
- name: Baseline
  hosts: all
  gather_facts: false
  tasks:
    - name: Reach the root
      ansible.builtin.ping:
"""


def main() -> None:
    workspace = Path(tempfile.mkdtemp(prefix="bench-provision-", dir="/var/tmp"))
    try:
        _bench(workspace)
    finally:
        rootfs._clear_append_only(workspace)
        shutil.rmtree(workspace, ignore_errors=True)


def _bench(workspace: Path) -> None:
    started = time.monotonic()
    wheel = builds.build_wheel(workspace / "wheel")
    house = builds.build_wheelhouse(wheel, workspace / "wheelhouse")
    print(f"wheel and wheelhouse          {time.monotonic() - started:7.1f} s")
    started = time.monotonic()
    base = rootfs.build_root(workspace / "bookworm")
    print(f"mmdebstrap bookworm root      {time.monotonic() - started:7.1f} s")
    with rootfs.overlay(base, workspace / "appliance") as root:
        variables = {**APPLIANCE_VARS, "appliance_live": False, "citadel_wheel": str(wheel),
                     "citadel_wheelhouse": str(house),
                     "citadel_build_dir": str(workspace / "build")}
        inventory = rootfs.write_inventory(workspace / "inventory.yml", root,
                                           variables=variables)
        playbook = workspace / "baseline.yml"
        playbook.write_text(BASELINE_PLAY)
        baseline = _timed(lambda: run_playbook(inventory, playbook=playbook))
        full = _timed(lambda: run_playbook(inventory))
        rerun = _timed(lambda: run_playbook(inventory))
        verify = _timed(lambda: run_playbook(inventory, tags=["verify"]))
    print(f"baseline (one-task play)      {baseline:7.1f} s")
    print(f"full apply                    {full:7.1f} s   {full / baseline:5.1f}x baseline")
    print(f"idempotent re-run             {rerun:7.1f} s   {rerun / baseline:5.1f}x baseline"
          f"   {rerun / full:4.2f}x full apply")
    print(f"--tags verify                 {verify:7.1f} s   {verify / baseline:5.1f}x baseline")


def _timed(run: Callable[[], ProvisionResult]) -> float:
    started = time.monotonic()
    result = run()
    seconds = time.monotonic() - started
    if not result.succeeded:
        raise SystemExit(f"the run failed: {result.failures}")
    return seconds


if __name__ == "__main__":
    main()
