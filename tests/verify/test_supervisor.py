"""The test supervisor restarts like systemd's Restart=on-failure, as the units say."""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import replace

import pytest

from tests.verify.supervisor import Service, restarts_after
from tests.verify.units import load, seconds


def test_the_units_restart_on_failure():
    for name in ("citadel-web", "citadel-worker"):
        unit = load(name)
        assert unit.restart == "on-failure" and unit.restart_sec > 0
    assert load("citadel-web").exec_args[0] == "serve"
    assert load("citadel-worker").exec_args == ("worker",)


@pytest.mark.parametrize(("code", "restarts"), [
    (0, False), (1, True), (-signal.SIGKILL, True), (-signal.SIGSEGV, True),
    (-signal.SIGTERM, False), (-signal.SIGINT, False), (-signal.SIGHUP, False),
])
def test_on_failure_semantics(code, restarts):
    assert restarts_after("on-failure", code) is restarts
    assert restarts_after("no", code) is False


def test_time_spans():
    assert seconds("5s") == 5 and seconds("100ms") == 0.1 and seconds("1min 30s") == 90


def _service(tmp_path, script: str, **changes) -> Service:
    unit = replace(load("citadel-worker"), timeout_stop_sec=5, **changes)
    return Service(unit, [sys.executable, "-c", script], {}, tmp_path / "log",
                   restart_sec=0.1)


def _until(check, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_killed_process_comes_back_and_clean_exit_stays_down(tmp_path):
    service = _service(tmp_path, "import time; time.sleep(60)").start()
    try:
        first = service.pid
        service.kill(signal.SIGKILL)
        assert _until(lambda: service.pid not in (None, first))
        assert service.exits == [-signal.SIGKILL] and service.state == "active"
    finally:
        service.stop()
    done = _service(tmp_path, "pass").start()
    assert _until(lambda: done.state == "inactive")
    assert done.exits == [0]
    done.stop()


def test_left_over_children_are_ended_before_the_restart(tmp_path):
    script = ("import os, time\n"
              "if os.fork() == 0:\n    time.sleep(60)\nelse:\n    time.sleep(60)\n")
    service = _service(tmp_path, script).start()
    try:
        first = service.pid
        time.sleep(0.3)
        service.kill(signal.SIGKILL)
        assert _until(lambda: service.pid not in (None, first))
        from tests.verify.supervisor import _group_alive

        assert not _group_alive(first)  # the orphaned child went with its group
    finally:
        service.stop()


def test_start_limit_leaves_a_crash_looping_service_failed(tmp_path):
    service = _service(tmp_path, "raise SystemExit(3)", start_limit_burst=3,
                       start_limit_interval=10).start()
    assert _until(lambda: service.state == "failed")
    assert service.exits == [3, 3, 3]
    service.stop()
