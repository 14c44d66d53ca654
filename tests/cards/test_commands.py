"""The commands as people run them: virtual card process, card agent, stack errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from appliance.cards import stack as stack_module
from appliance.cards.cli import card_agent
from appliance.cards.errors import StackUnavailable
from appliance.cards.piv import PivSession
from appliance.cards.stack import PcscStack
from appliance.cards.virtual import VirtualCard
from appliance.cards.virtual_state import VirtualCardState

ORIGIN = "http://127.0.0.1:8000"


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_status(port: int, timeout: float = 20) -> dict:
    """GET /status as the web page would, retrying while the agent starts."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/status", headers={"Origin": ORIGIN})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=20)


def test_virtual_card_process(stack: PcscStack, rsa_card: VirtualCard, tmp_path: Path) -> None:
    state = tmp_path / "demo-card.json"
    stack.remove(rsa_card)  # borrow reader slot 1
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.cards.virtual", "--port", str(stack.port + 1),
         "--state", str(state)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        stack.wait_for_card(True, slot=1, timeout=20)
        with PivSession.open(stack.readers[1]) as piv:
            card_id = piv.identity().card_id
        assert card_id == VirtualCardState.load(state).card_id
    finally:
        assert stop(process) == 0
    stack.wait_for_card(False, slot=1)
    assert "inserted" in process.stdout.read()


def test_card_agent_command_serves_the_card(stack: PcscStack, card: VirtualCard) -> None:
    port = free_tcp_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from appliance.cards.cli import card_agent; card_agent()",
         "--port", str(port), "--origin", ORIGIN, "--reader", stack.readers[0]],
        env=stack.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status = get_status(port)
        assert status["card_present"] and status["card"]["card_id"] == card.card_id
    finally:
        assert stop(process) == 0


def test_card_agent_with_its_own_demo_card(tmp_path: Path) -> None:
    # A second, independent stack in its own process and namespace.
    port, state = free_tcp_port(), tmp_path / "demo.json"
    process = subprocess.Popen(
        [sys.executable, "-c", "from appliance.cards.cli import card_agent; card_agent()",
         "--port", str(port), "--origin", ORIGIN, "--virtual-card", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status = get_status(port)
        assert status["card"]["card_id"] == VirtualCardState.load(state).card_id
    finally:
        assert stop(process) == 0
    assert "DEMO ONLY" in process.stdout.read()


def test_card_agent_needs_an_origin() -> None:
    result = CliRunner().invoke(card_agent, ["--port", "1"], env={"CITADEL_CARD_AGENT_ORIGINS": ""})
    assert result.exit_code == 5
    assert "--origin https://HOST" in result.output


def test_card_agent_refuses_a_bad_origin() -> None:
    result = CliRunner().invoke(card_agent, ["--origin", "crm.example.com", "--port", "1"])
    assert result.exit_code == 5 and "not an http(s) origin" in result.output


def test_virtual_card_without_a_reader_waits_then_stops(tmp_path: Path) -> None:
    port = free_tcp_port()  # nobody listens there
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.cards.virtual", "--port", str(port),
         "--state", str(tmp_path / "c.json")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    first, second = process.stdout.readline(), process.stdout.readline()
    assert stop(process) == 0
    assert "virtual PIV card" in first
    assert "waiting for the reader" in second and "start pcscd" in second


def test_inserting_without_a_reader_says_what_to_do() -> None:
    card = VirtualCard(VirtualCardState.generate(), port=free_tcp_port())
    with pytest.raises(Exception, match="start pcscd with a vpcd reader"):
        card.insert()


def test_stack_without_pcscd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(stack_module.shutil, "which", lambda *a, **k: None)
    with pytest.raises(StackUnavailable, match="apt-get install pcscd vsmartcard-vpcd"):
        PcscStack(workdir=tmp_path).start()


def test_stack_without_vpcd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(stack_module, "VPCD_DRIVERS", (tmp_path / "libifdvpcd.so",))
    with pytest.raises(StackUnavailable, match="vpcd reader driver is not installed"):
        PcscStack(workdir=tmp_path).start()


def test_failed_start_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_module.shutil, "which", lambda *a, **k: None)
    failed = PcscStack()
    with pytest.raises(StackUnavailable):
        failed.start()
    assert not failed.workdir.exists()


def test_a_second_stack_in_one_process_is_refused(stack: PcscStack) -> None:
    with pytest.raises(StackUnavailable, match="shared_stack"):
        PcscStack().start()
