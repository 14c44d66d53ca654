"""Run the provisioning playbook through ansible-runner.

Each run gets a fresh private data directory (ansible-runner accumulates
artifacts in it), the virtualenv's ``bin`` on ``PATH`` (ansible-runner starts
``ansible-playbook`` by name), and this package's ``ansible.cfg``. Progress is
reported per task through a callback; the result holds a per-host summary.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.kernel.errors import CitadelError

PROVISIONING_DIR = Path(__file__).resolve().parent
SITE_PLAYBOOK = PROVISIONING_DIR / "site.yml"
ANSIBLE_CFG = PROVISIONING_DIR / "ansible.cfg"

#: ansible-runner stats keys, per host, under the names the summary uses.
_STAT_KEYS = {"ok": "ok", "changed": "changed", "failures": "failed",
              "dark": "unreachable", "skipped": "skipped", "rescued": "rescued",
              "ignored": "ignored"}


class ProvisionError(CitadelError):
    """Provisioning cannot start: {detail}"""

    exit_code = 2
    code = "provision"


@dataclass(frozen=True)
class HostSummary:
    """How the play went on one host (Ansible's PLAY RECAP line)."""

    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0

    @property
    def succeeded(self) -> bool:
        return self.failed == 0 and self.unreachable == 0


@dataclass(frozen=True)
class TaskEvent:
    """One step of progress: a task starting, or a task's result on a host."""

    kind: str  # "task", "ok", "changed", "skipped", "failed", "unreachable"
    task: str
    host: str = ""
    message: str = ""


@dataclass
class ProvisionResult:
    """The outcome of one playbook run."""

    status: str
    rc: int
    hosts: dict[str, HostSummary] = field(default_factory=dict)
    failures: list[TaskEvent] = field(default_factory=list)
    artifacts_dir: Path | None = None

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and all(h.succeeded for h in self.hosts.values())

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())


def run_playbook(inventory: str | os.PathLike[str], *, check: bool = False,
                 tags: Iterable[str] = (), skip_tags: Iterable[str] = (),
                 limit: str | None = None, extravars: Mapping[str, Any] | None = None,
                 on_event: Callable[[TaskEvent], None] | None = None,
                 playbook: Path = SITE_PLAYBOOK, work_dir: Path | None = None,
                 verbosity: int = 0) -> ProvisionResult:
    """Apply ``playbook`` to the hosts of ``inventory`` and summarise the run.

    ``work_dir`` keeps the private data directory (for its artifacts);
    without it a temporary one is used and removed afterwards.
    """
    inventory_path = _existing_inventory(inventory)
    import ansible_runner  # deferred: importing it costs a second

    failures: list[TaskEvent] = []

    def handle(event: dict[str, Any]) -> bool:
        progress = _task_event(event)
        if progress is not None:
            if progress.kind in ("failed", "unreachable"):
                failures.append(progress)
            if on_event is not None:
                on_event(progress)
        return True

    cmdline = ["--check", "--diff"] if check else []
    with _private_data_dir(work_dir) as private:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(PROVISIONING_DIR),
            playbook=str(playbook),
            inventory=str(inventory_path),
            extravars=dict(extravars or {}),
            tags=",".join(tags) or None,
            skip_tags=",".join(skip_tags) or None,
            limit=limit,
            cmdline=" ".join(cmdline) or None,
            envvars=_environment(),
            event_handler=handle,
            quiet=True,
            verbosity=verbosity or None,
        )
        hosts = _summaries(runner.stats or {})
        return ProvisionResult(status=runner.status, rc=runner.rc, hosts=hosts,
                               failures=failures,
                               artifacts_dir=Path(private) if work_dir else None)


def _existing_inventory(inventory: str | os.PathLike[str]) -> Path:
    path = Path(inventory).expanduser().resolve()
    if not path.exists():
        raise ProvisionError(detail=f"no inventory at {path}; copy "
                             f"{PROVISIONING_DIR / 'inventory.example'} and edit it.")
    return path


class _private_data_dir:
    """A fresh private data directory, temporary unless the caller keeps one."""

    def __init__(self, keep: Path | None) -> None:
        self.keep = keep
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Path:
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            return Path(tempfile.mkdtemp(prefix="run-", dir=self.keep))
        self._tmp = tempfile.TemporaryDirectory(prefix="citadel-provision-")
        return Path(self._tmp.name)

    def __exit__(self, *_exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _environment() -> dict[str, str]:
    """PATH with this interpreter's bin first (ansible-playbook lives there)."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        path = os.pathsep.join([bin_dir, path]) if path else bin_dir
    return {"PATH": path, "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
            "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}


_RESULT_KINDS = {"runner_on_ok": "ok", "runner_on_skipped": "skipped",
                 "runner_on_failed": "failed", "runner_on_unreachable": "unreachable"}


def _task_event(event: dict[str, Any]) -> TaskEvent | None:
    """Translate an ansible-runner event into progress, or None to ignore it."""
    name = event.get("event", "")
    data = event.get("event_data") or {}
    task = str(data.get("task") or "")
    role = data.get("role")
    label = f"{role} : {task}" if role else task
    if name in ("playbook_on_task_start", "playbook_on_handler_task_start"):
        return TaskEvent("task", label)
    kind = _RESULT_KINDS.get(name)
    if kind is None:
        return None
    res = data.get("res") or {}
    if kind == "ok" and res.get("changed"):
        kind = "changed"
    if kind == "failed" and data.get("ignore_errors"):
        return TaskEvent("ok", label, str(data.get("host", "")), "failure ignored")
    message = _failure_message(res) if kind in ("failed", "unreachable") else ""
    return TaskEvent(kind, label, str(data.get("host", "")), message)


def _failure_message(res: Mapping[str, Any]) -> str:
    """The module's message, with the end of a failed command's error output."""
    parts = [str(res.get("msg") or "").strip(), str(res.get("stderr") or "").strip()[-1500:]]
    if res.get("results"):  # a loop: the failed items' messages
        parts += [str(item.get("msg") or "").strip() for item in res["results"]
                  if isinstance(item, Mapping) and item.get("failed")]
    return "\n".join(part for part in parts if part)


def _summaries(stats: Mapping[str, Mapping[str, int]]) -> dict[str, HostSummary]:
    """Per-host counts; ansible-runner leaves out hosts with nothing to count."""
    hosts = sorted({h for key in _STAT_KEYS for h in (stats.get(key) or {})})
    return {
        host: HostSummary(host, **{name: int((stats.get(key) or {}).get(host, 0))
                                   for key, name in _STAT_KEYS.items()})
        for host in hosts
    }
