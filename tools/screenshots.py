"""Take the README's screenshots from a running demo, so they never go stale.

    .venv/bin/appliance demo --bind 127.0.0.1:8000 &      # or `make demo`
    .venv/bin/python tools/screenshots.py [--base http://127.0.0.1:8000] [--out docs/screenshots]

Signs in through headless Chromium as the person who uses each page and saves
one PNG per page: the account list and the pipeline (a salesperson), an alert
with its evidence (the security officer), the backups (IT).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from appliance.demo import DEMO_PASSWORD as PASSWORD

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: file name, who looks at it, where
PAGES = (
    ("accounts.png", "alice", "/accounts"),
    ("pipeline.png", "alice", "/deals/board"),
    ("alert.png", "sofia", None),  # the newest high alert, found on the alerts page
    ("backups.png", "ian", "/backups"),
)


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)  # each person lands on their start page


def open_first_alert(page: Page, base: str) -> None:
    page.goto(f"{base}/alerts")
    page.locator("table tbody tr a").first.click()
    page.wait_for_url(f"{base}/alerts/*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for name, username, path in PAGES:
            context = browser.new_context(viewport={"width": 1366, "height": 860})
            page = context.new_page()
            sign_in(page, args.base, username)
            if path is None:
                open_first_alert(page, args.base)
            else:
                page.goto(f"{args.base}{path}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(args.out / name))
            print(f"{args.out / name}: {page.url} as {username}")
            context.close()
        browser.close()


if __name__ == "__main__":
    main()
