"""Fifty staff at work on a demo-sized company, with the worker scoring leaks and a
backup running meanwhile.

    .venv/bin/python -m tests.verify.load [--seconds 600] [--users 50] [--accounts 20000]
        [--warmup 60] [--history-days 28]

1. A private PostgreSQL cluster and ``appliance init --demo`` with ``--accounts``
   accounts; ``--users`` more sales staff, each given an equal book.
2. Warm-up: the crowd works ``--warmup`` seconds against ``appliance serve``
   (no worker yet); ``tests.verify.history`` then writes a history like that work
   on each of the ``--history-days`` days before, and ``appliance worker --once``
   fits the leak baselines on it.
3. Measured run: the crowd works ``--seconds`` seconds while ``appliance worker``
   runs (checkpoints, leak scoring) and ``appliance backup run`` runs once.
4. Checks: no HTTP 5xx and no broken connection; ``appliance audit verify`` exits
   0; no leak alert was raised for the crowd's work (``/api/v1/alerts`` as the
   security officer). Prints p50 and p99 per page type and requests/s.
5. Control: one of the crowd then exports their whole book several times over;
   that must raise an alert, or the "no alert" above would prove nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select

from appliance.kernel.runtime import Appliance
from tests.bench.web import free_port
from tests.verify import history
from tests.verify.cluster import Cluster
from tests.verify.company import demo_company
from tests.verify.stack import REPO, Stack, configure

OFFICER = "sofia"
#: The demo's sales director, whose bulk export is the positive control.
CONTROL = "diana"
#: Seconds the control insider's alert may take: a few scoring runs of a loaded worker.
CONTROL_WAIT = 180


@dataclass
class LoadReport:
    seconds: float
    users: int
    crowd: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def table(self) -> str:
        pages = self.crowd.get("pages", {})
        lines = [f"{'page':<20} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} "
                 f"{'req/s':>7}"]
        for name, row in [*pages.items(), ("total", self.crowd.get("total", {}))]:
            if row:
                lines.append(f"{name:<20} {row['requests']:>9} {row['failures']:>7} "
                             f"{row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f} {row['rps']:>7.1f}")
        return "\n".join(lines)

    def summary(self) -> str:
        total = self.crowd.get("total", {})
        head = (f"{self.users} staff for {self.seconds:.0f} s: {total.get('rps', 0):.1f} req/s, "
                f"p50 {total.get('p50_ms', 0):.0f} ms, p99 {total.get('p99_ms', 0):.0f} ms")
        return "; ".join([head, *(f"{k} {v}" for k, v in self.figures.items())])


def books_of(appliance: Appliance, usernames: list[str]) -> dict[str, list[dict[str, str]]]:
    from crm.identity import User
    from crm.models import Account

    with appliance.session() as db:
        ids = {u.username: u.id for u in db.scalars(select(User).where(
            User.username.in_(usernames)))}
        rows = db.execute(select(Account.id, Account.name, Account.owner_id).where(
            Account.owner_id.in_(list(ids.values())))).all()
    owner = {v: k for k, v in ids.items()}
    books: dict[str, list[dict[str, str]]] = {name: [] for name in usernames}
    for account_id, name, owner_id in rows:
        books[owner[owner_id]].append({"id": str(account_id), "name": name})
    return books


def crowd(stack: Stack, books_file: Path, users: int, seconds: float, out: Path,
          export_share: float) -> dict[str, Any]:
    """The Locust crowd in its own process (gevent patches what it imports)."""
    from appliance.demo import DEMO_PASSWORD

    subprocess.run([sys.executable, "-m", "tests.verify.crowd", "--base", stack.base,
                    "--books", str(books_file), "--password", DEMO_PASSWORD, "--users",
                    str(users), "--seconds", str(seconds), "--export-share", str(export_share),
                    "--out", str(out)], check=True, cwd=REPO, timeout=seconds + 300,
                   stdout=subprocess.DEVNULL, stderr=(out.parent / "crowd.log").open("ab"))
    return json.loads(out.read_text())


def alerts_for(stack: Stack, usernames: list[str]) -> list[dict[str, Any]]:
    token = stack.cli("user", "token", OFFICER, "--name", "verify").stdout.strip()
    found: list[dict[str, Any]] = []
    for status in ("open", "all"):
        answer = requests.get(f"{stack.base}/api/v1/alerts", params={"status": status,
                              "per_page": 200}, headers={"Authorization": f"Bearer {token}"},
                              timeout=30)
        answer.raise_for_status()
        found += [a for a in answer.json()["items"] if a.get("user") in usernames]
    return list({json.dumps(a, sort_keys=True): a for a in found}.values())


def run(workdir: Path, *, seconds: float = 600, users: int = 50, accounts: int = 20_000,
        warmup: float = 60, history_days: int = 28, export_share: float = 0.3,
        backup_after: float | None = None) -> LoadReport:
    report = LoadReport(seconds, users)
    cluster = Cluster(None, free_port()).create()
    stack: Stack | None = None
    try:
        cluster.start()
        url = cluster.create_database("citadel")
        started = time.monotonic()
        people = demo_company(workdir / "appliance", url, accounts=accounts, staff=users,
                              scratch_url=cluster.url())
        report.figures["company built in"] = f"{time.monotonic() - started:.0f} s"
        report.figures["book per person"] = people.book_size
        appliance = Appliance.open(workdir / "appliance")
        books = books_of(appliance, people.usernames)
        books_file = workdir / "books.json"
        books_file.write_text(json.dumps(books))
        appliance.dispose()

        # warm-up on a copy, a history like it written into the appliance's log (so that
        # the log holds the past before today, as a real one does), baselines fitted on it
        events = _warm_up(cluster, workdir, books_file, users, warmup, export_share,
                          people.usernames)
        appliance = Appliance.open(workdir / "appliance")
        stack = Stack(workdir / "appliance", free_port()).start(worker=False)
        span = timedelta(seconds=warmup + seconds)
        copies = math.ceil(1.1 * span.total_seconds() / warmup)
        written = history.seed(appliance, events, {u: [b["id"] for b in books[u]] for u in books},
                               days=history_days, copies=copies, span=span)
        appliance.dispose()
        report.figures["history events"] = written
        fitted = stack.cli("worker", "--once", timeout=1800)
        if fitted.returncode != 0:
            raise RuntimeError(f"worker --once failed: {fitted.stderr[-800:]}")

        stack.services["worker"] = stack._service("citadel-worker", []).start()
        backup = _backup_later(stack, backup_after if backup_after is not None else seconds / 3)
        report.crowd = crowd(stack, books_file, users, seconds, workdir / "measured.json",
                             export_share)
        backup.join(timeout=900)
        report.figures["backup"] = getattr(backup, "outcome", "not run")
        if getattr(backup, "outcome", "").startswith("failed"):
            report.problems.append(f"the backup during the load {backup.outcome}")
        time.sleep(20)  # a few scoring intervals for the last events
        _checks(stack, people.usernames, report)
        _control_insider(stack, report)
    except Exception as exc:  # the run itself breaking is a finding too
        report.problems.append(f"the load run stopped: {exc.__class__.__name__}: {exc}")
    finally:
        if stack is not None:
            stack.stop()
        cluster.destroy()
    return report


def _warm_up(cluster: Cluster, workdir: Path, books_file: Path, users: int, seconds: float,
             export_share: float, usernames: list[str]) -> list[Any]:
    """The crowd's warm-up, run against a copy of the appliance; its audit events."""
    copy = workdir / "warm-up"
    shutil.copytree(workdir / "appliance", copy)
    configure(copy, {"database_url": cluster.create_database("warmup", copy_of="citadel")})
    since = datetime.now(UTC)
    stack = Stack(copy, free_port()).start(worker=False)
    try:
        crowd(stack, books_file, users, seconds, workdir / "warmup.json", export_share)
    finally:
        stack.stop()
    appliance = Appliance.open(copy)
    try:
        return history.warmup_events(appliance, usernames, since)
    finally:
        appliance.dispose()


def _backup_later(stack: Stack, delay: float) -> threading.Thread:
    def take() -> None:
        time.sleep(delay)
        result = stack.cli("backup", "run", "--no-prune", timeout=900)
        last = (result.stdout.strip().splitlines() or [""])[-1]
        worker.outcome = last if result.returncode == 0 else \
            f"failed (exit {result.returncode}): {result.stderr.strip()[-300:]}"

    worker = threading.Thread(target=take, daemon=True, name="backup during load")
    worker.start()
    return worker


def _checks(stack: Stack, usernames: list[str], report: LoadReport) -> None:
    errors = report.crowd.get("errors", {})
    if errors:
        report.problems.append(f"errors under load: {errors}")
    report.figures["errors (5xx, broken connections)"] = sum(errors.values())
    verified = stack.cli("audit", "verify")
    report.figures["audit verify exit"] = verified.returncode
    if verified.returncode != 0:
        report.problems.append(f"audit verify: {(verified.stdout + verified.stderr)[-500:]}")
    report.figures["leak scoring reached"] = _scored(stack)
    alerts = alerts_for(stack, usernames)
    report.figures["leak alerts for the crowd"] = len(alerts)
    for alert in alerts[:10]:
        report.problems.append(f"leak alert for normal work: {alert.get('user')} "
                               f"{alert.get('scenario')}: {alert.get('reasons')}")


def _scored(stack: Stack) -> str:
    """How far leak scoring got: the last audit seq it scored, of how many."""
    from sqlalchemy import func

    from audit.models import AuditEvent

    try:
        cursor = json.loads((stack.data_dir / "dlp" / "cursor.json").read_text())["last_seq"]
    except (OSError, ValueError, KeyError):
        cursor = -1
    appliance = Appliance.open(stack.data_dir)
    try:
        with appliance.session() as db:
            head = db.scalar(select(func.max(AuditEvent.seq)))
    finally:
        appliance.dispose()
    return f"{cursor + 1} of {(head or 0) + 1} events"


def _control_insider(stack: Stack, report: LoadReport) -> None:
    """Then the demo's sales director exports the whole client base: that must alert, or
    "no alert" above proved nothing.

    The control is not one of the crowd exporting their own book again: the crowd's
    normal work already exports whole books, so a few more copies of the same few hundred
    records are, rightly, at most a low alert.
    """
    from appliance.demo import DEMO_PASSWORD
    from tests.verify.traffic import sign_in

    browser = sign_in(stack.base, CONTROL, DEMO_PASSWORD)
    page = browser.get(f"{stack.base}/accounts", timeout=30).text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)
    answer = browser.post(f"{stack.base}/accounts/export", timeout=300,
                          data={"csrf_token": token.group(1) if token else ""})
    if answer.status_code != 200 or not answer.headers.get("Content-Type", "").startswith(
            "text/csv"):  # a cap reached answers with the request form, not a file
        report.problems.append(f"the control export was refused: HTTP {answer.status_code} "
                               f"{answer.url}")
        return
    rows = len(list(csv.reader(io.StringIO(answer.text.lstrip("\ufeff"))))) - 1
    report.figures["control: exported"] = f"{rows} rows by {CONTROL}"
    started = time.monotonic()
    while time.monotonic() - started < CONTROL_WAIT:
        if found := alerts_for(stack, [CONTROL]):
            report.figures["control: alerted after"] = \
                f"{time.monotonic() - started:.0f} s ({found[0].get('severity')})"
            return
        time.sleep(3)
    report.problems.append(f"the control insider ({CONTROL}, {rows} rows exported) raised no "
                           f"alert within {CONTROL_WAIT} s (scoring reached {_scored(stack)}): "
                           "the leak check proves nothing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--warmup", type=float, default=60)
    parser.add_argument("--history-days", type=int, default=28)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="citadel-load-") as tmp:
        report = run(args.workdir or Path(tmp), seconds=args.seconds, users=args.users,
                     accounts=args.accounts, warmup=args.warmup, history_days=args.history_days)
    print(report.table())
    print(report.summary())
    for problem in report.problems:
        print(f"  PROBLEM: {problem}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
