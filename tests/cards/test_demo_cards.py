"""``appliance demo --cards`` in a real browser: the officer signs in with password, then
the virtual card and its PIN, through the card agent the demo runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.card_demo import PIN
from appliance.demo import DEMO_PASSWORD as PASSWORD
from tests.conftest import free_port, sign_in_page, wait_healthy

pytestmark = pytest.mark.e2e


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
        wait_healthy(base, demo, tmp_path / "demo.log", tries=300)
        page = browser.new_page()
        sign_in_page(page, base, "sofia", PASSWORD)
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
