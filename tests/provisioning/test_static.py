"""Quick gates on the playbook: lint, syntax, the Vagrantfile, the role layout
(every concern switchable, tagged and documented), the runner's bookkeeping
and the command line's errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from provisioning.cli import provision
from provisioning.runner import PROVISIONING_DIR, SITE_PLAYBOOK, _summaries, _task_event

REPO = PROVISIONING_DIR.parent
BIN = Path(sys.executable).parent
ROLES = sorted(p.name for p in (PROVISIONING_DIR / "roles").iterdir() if p.is_dir())
# Not "[postgresql...]": the suite's root conftest skips such ids without a PostgreSQL server.
ROLE_IDS = [f"role-{role}" for role in ROLES]
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
       "ANSIBLE_CONFIG": str(PROVISIONING_DIR / "ansible.cfg")}


def test_ansible_lint_production_profile_is_clean() -> None:
    lint = subprocess.run(
        [str(BIN / "ansible-lint"), "--nocolor", "-c", str(PROVISIONING_DIR / ".ansible-lint"),
         str(PROVISIONING_DIR)], capture_output=True, text=True, env=ENV, cwd=REPO)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Profile 'production' was required, and it passed" in lint.stdout + lint.stderr


def test_playbook_syntax_check() -> None:
    inventory = PROVISIONING_DIR / "inventory.example" / "hosts.yml"
    check = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory),
         str(SITE_PLAYBOOK)], capture_output=True, text=True, env=ENV, cwd=PROVISIONING_DIR)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.fixture(scope="module")
def vagrant() -> str:
    found = shutil.which("vagrant")
    if found is None:
        pytest.fail("install the Debian package vagrant "
                    "(apt-get install --no-install-recommends vagrant)")
    return found


def test_vagrantfile_validates(vagrant: str) -> None:
    checked = subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=REPO,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_vagrant_validate_catches_a_provisioner_mistake(vagrant: str, tmp_path: Path) -> None:
    text = (REPO / "Vagrantfile").read_text()
    assert 'ansible.config_file = "provisioning/ansible.cfg"' in text
    (tmp_path / "Vagrantfile").write_text(text.replace("ansible.config_file", "ansible.config_fil"))
    checked = subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert checked.returncode != 0
    assert "config_fil" in checked.stdout + checked.stderr


def _load(path: Path) -> object:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_role_follows_the_layout(role: str) -> None:
    base = PROVISIONING_DIR / "roles" / role
    for part in ["defaults/main.yml", "tasks/main.yml", "tasks/verify.yml", "meta/main.yml",
                 "meta/argument_specs.yml", "vars/main.yml"]:
        assert (base / part).is_file(), f"{role} lacks {part}"


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_every_variable_is_prefixed_and_documented(role: str) -> None:
    base = PROVISIONING_DIR / "roles" / role
    defaults = _load(base / "defaults/main.yml")
    specs = _load(base / "meta/argument_specs.yml")
    assert isinstance(defaults, dict) and isinstance(specs, dict)
    options = specs["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    for name, spec in options.items():
        assert name.startswith(f"{role}_"), name
        assert spec.get("description") and spec.get("type"), name
    internal = _load(base / "vars/main.yml")
    assert isinstance(internal, dict)
    assert all(name.startswith(f"{role}_") for name in internal)


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_every_concern_has_its_switch_and_tag(role: str) -> None:
    tasks = _load(PROVISIONING_DIR / "roles" / role / "tasks/main.yml")
    assert isinstance(tasks, list)
    imports = [t for t in tasks if "ansible.builtin.import_tasks" in t]
    assert imports[-1]["ansible.builtin.import_tasks"] == "verify.yml"
    assert "verify" in imports[-1]["tags"]
    for task in imports[:-1]:
        concern = task["ansible.builtin.import_tasks"].removesuffix(".yml")
        if concern == "settings":  # always checked, on or off
            continue
        assert task["tags"], concern
        assert "_enabled | bool" in task["when"] and task["when"].startswith(f"{role}_"), concern


def test_every_module_is_fully_qualified() -> None:
    builtin_short = {"command", "shell", "copy", "template", "file", "apt", "user", "group",
                     "service", "systemd", "systemd_service", "assert", "stat", "slurp", "uri"}
    for path in (PROVISIONING_DIR / "roles").rglob("tasks/*.yml"):
        for task in _walk(_load(path)):
            assert not builtin_short & set(task), f"{path}: short module name in {task.get('name')}"


def _walk(tasks: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for task in tasks if isinstance(tasks, list) else []:
        found.append(task)
        found += _walk(task.get("block"))
    return found


def test_summaries_count_hosts_that_ansible_runner_leaves_out() -> None:
    stats = {"ok": {"a": 5, "b": 3}, "changed": {"a": 2}, "failures": {"b": 1}, "dark": {},
             "skipped": {"a": 1}}
    hosts = _summaries(stats)
    assert hosts["a"].changed == 2 and hosts["a"].succeeded
    assert hosts["b"].changed == 0 and hosts["b"].failed == 1 and not hosts["b"].succeeded


def test_task_events_become_progress() -> None:
    start = _task_event({"event": "playbook_on_task_start",
                         "event_data": {"task": "Install nginx", "role": "nginx"}})
    assert start is not None and (start.kind, start.task) == ("task", "nginx : Install nginx")
    changed = _task_event({"event": "runner_on_ok", "event_data": {
        "task": "t", "host": "box", "res": {"changed": True}}})
    assert changed is not None and changed.kind == "changed"
    failed = _task_event({"event": "runner_on_failed", "event_data": {
        "task": "t", "host": "box", "res": {"msg": "non-zero return code", "stderr": "boom"}}})
    assert failed is not None and failed.message == "non-zero return code\nboom"
    assert _task_event({"event": "verbose", "event_data": {}}) is None


def test_provision_without_an_inventory_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(provision, ["--inventory", str(tmp_path / "nope.yml")])
    assert result.exit_code == 2
    assert "no inventory at" in result.output and "inventory.example" in result.output


def test_provision_reports_an_unreachable_host_and_fails(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"citadel": {"hosts": {"gone": {
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(tmp_path / "no-such-root")}}}}))
    result = CliRunner().invoke(provision, ["--inventory", str(inventory), "--tags", "verify"])
    assert result.exit_code == 1, result.output
    assert "gone" in result.output and "Provisioning FAILED." in result.output
