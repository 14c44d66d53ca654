"""``appliance demo --cards`` in a real browser: the officer signs in with password, then
the virtual card and its PIN, through the card agent the demo runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from appliance.card_demo import PIN
from tests.conftest import free_port

pytestmark = pytest.mark.e2e
PASSWORD = "citadel-demo-2026"


def test_the_officer_signs_in_with_the_demo_card(tmp_path: Path, browser):
    data_dir = tmp_path / "citadel-data"
    appliance = [str(Path(sys.executable).parent / "appliance"), "--data-dir", str(data_dir)]
    subprocess.run([*appliance, "init", "--demo", "--accounts", "300"], check=True, capture_output=True)
    port, agent_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITADEL_")}
    env["CITADEL_CARD_AGENT_URL"] = f'"http://127.0.0.1:{agent_port}"'
    log = (tmp_path / "demo.log").open("w")
    demo = subprocess.Popen([*appliance, "demo", "--cards", "--bind", f"127.0.0.1:{port}"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(base, demo, tmp_path / "demo.log")
        page = browser.new_page()
        page.goto(f"{base}/login")
        page.fill("#username", "sofia")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/login/card")
        page.fill("#pin", PIN)
        page.click("#card-submit")
        page.wait_for_url(f"{base}/")
        assert page.locator("text=Sofia Rossi").count() >= 1
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(timeout=60)
        log.close()
    assert "sofia signs in with the virtual card" in (tmp_path / "demo.log").read_text()


def _wait(base: str, process: subprocess.Popen, log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            pytest.fail(f"the demo stopped with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):  # noqa: S310
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the demo never answered:\n{log.read_text()[-2000:]}")
