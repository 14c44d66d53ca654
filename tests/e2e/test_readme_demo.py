"""The README's first command as a newcomer runs it: ``make demo`` from a clean clone.

The repository is cloned as committed; ``make demo PORT=…`` makes its own
virtualenv and demo company and serves it with the worker beside it. A real
Chromium signs in as the security officer and opens an alert with its
evidence; then Ctrl-C (SIGINT to the demo's process group, as a terminal sends
it) stops the web server and the worker, and nothing of the demo keeps running.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port, sign_in_page, wait_healthy

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "citadel-demo-2026"  # printed by `make demo`; the test reads it from the output too


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The committed repository, as `git clone` gives it to a newcomer."""
    target = tmp_path / "citadel"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(target)], check=True)
    return target


@pytest.fixture
def demo(clone: Path):
    """``make demo PORT=…`` running in the clone; yields (base URL, process, log path)."""
    port = free_port()
    log_path = clone / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITADEL_", "PYTEST", "COV_"))}
    with log_path.open("w") as log:
        process = subprocess.Popen(["make", "demo", f"PORT={port}"], cwd=clone, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, process, log_path)
            yield base, process, log_path
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_make_demo_serves_the_whole_product_and_stops_on_ctrl_c(demo, browser):
    base, process, log_path = demo
    printed = log_path.read_text()
    assert f"http://{base.removeprefix('http://')}/" in printed
    assert printed.count(PASSWORD) == 1, "the password is printed once"
    for login in ("alice", "mark", "diana", "sofia", "ian", "audrey"):
        assert f"    {login} " in printed
    assert printed.count("DEMO MODE") == 1, "the demo warning is printed once"

    page = browser.new_page()
    sign_in_page(page, base, "sofia", PASSWORD)
    page.wait_for_url(f"{base}/")
    page.goto(f"{base}/alerts")
    rows = page.locator("table tbody tr a")
    assert rows.count() >= 1, page.content()[:2000]
    people = {rows.nth(i).inner_text() for i in range(rows.count())}
    assert "bob" in people, people  # the planted insider who exported his whole book
    rows.filter(has_text="bob").first.click()
    page.wait_for_url(f"{base}/alerts/*")
    assert page.locator("text=export").count() >= 1  # his exports are the evidence

    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
    process.wait(timeout=60)
    left = subprocess.run(["pgrep", "-f", f"{log_path.parent}/.venv/bin"], capture_output=True,
                          text=True).stdout.split()
    assert left == [], f"still running after Ctrl-C: {left}"
    assert "worker stopped" in log_path.read_text()
