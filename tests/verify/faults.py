"""Faults that are not crashes: the database gone, the disk full, the clock stepping back.

    .venv/bin/python -m tests.verify.faults [database|disk|clock ...]

Each fault runs on its own appliance (``tests.verify.harness``) and returns a
``FaultReport``: what a person saw while it lasted (a clear 503, never a stack
trace), that the appliance recovered by itself afterwards, and that nothing
acknowledged was lost and the audit trail still verifies.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.factories import PASSWORD
from tests.verify.harness import Harness, harness, tmpfs
from tests.verify.ledger import Ledger
from tests.verify.traffic import TIMEOUT, Traffic, sign_in

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "sqlalchemy.exc",
                     "psycopg.")


@dataclass
class FaultReport:
    name: str
    problems: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        return "; ".join(f"{k} {v}" for k, v in self.figures.items())


def look(report: FaultReport, what: str, response: requests.Response | None,
         statuses: tuple[int, ...], *, words: tuple[str, ...] = ()) -> None:
    """Note a problem unless ``response`` has one of ``statuses``, says ``words``, hides internals."""
    if response is None:
        report.problems.append(f"{what}: no answer at all")
        return
    body = response.text
    if response.status_code not in statuses:
        report.problems.append(f"{what}: HTTP {response.status_code}, expected {statuses}: "
                               f"{body[:200]!r}")
    if any(marker in body for marker in TRACEBACK_MARKERS):
        report.problems.append(f"{what}: the answer shows internals: {body[:300]!r}")
    missing = [w for w in words if w.lower() not in body.lower()]
    if missing:
        report.problems.append(f"{what}: the answer does not say {missing}: {body[:200]!r}")


def _get(session: requests.Session, url: str, **kwargs: object) -> requests.Response | None:
    try:
        return session.get(url, timeout=TIMEOUT, **kwargs)
    except requests.RequestException:
        return None


def _post_json(token: str, url: str, body: dict[str, object]) -> requests.Response | None:
    try:
        return requests.post(url, json=body, timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {token}"})
    except requests.RequestException:
        return None


def _until(check, timeout: float) -> float | None:
    """Seconds until ``check()`` is true, or None after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.25)
    return None


def _works(h: Harness, browser: requests.Session, token: str) -> bool:
    page = _get(browser, f"{h.stack.base}/accounts")
    wrote = _post_json(token, f"{h.stack.base}/api/v1/accounts",
                       {"name": f"Recovered {time.monotonic_ns()}", "status": "prospect"})
    return bool(page is not None and page.status_code == 200 and "/login" not in page.url
                and wrote is not None and wrote.status_code == 201)


# -- the database goes away --------------------------------------------------------
def database_unreachable(*, down_seconds: float = 5.0) -> FaultReport:
    """PostgreSQL stopped: /healthz says 503, pages and the API say so; all back after."""
    report = FaultReport("database unreachable")
    with harness() as h:
        base = h.stack.base
        browser = sign_in(base, "seller0", PASSWORD)
        token = h.token("seller0")
        ledger = Ledger()
        traffic = Traffic(base, {"seller1": h.token("seller1")}, None, ledger).start()
        time.sleep(1.0)
        h.cluster.stop("fast")
        time.sleep(0.5)
        health = _get(requests.Session(), f"{base}/healthz")
        look(report, "/healthz while the database is down", health, (503,))
        if health is not None and health.status_code == 503:
            report.figures["healthz"] = f"503 {health.json()['checks']['database']}"
        look(report, "a page while the database is down", _get(browser, f"{base}/accounts"),
              (503,), words=("database",))
        look(report, "an API read while the database is down",
             _get(requests.Session(), f"{base}/api/v1/accounts",
                  headers={"Authorization": f"Bearer {token}"}), (503,), words=("database",))
        look(report, "an API write while the database is down",
             _post_json(token, f"{base}/api/v1/accounts", {"name": "Lost?", "status": "prospect"}),
             (503,), words=("database",))
        time.sleep(down_seconds)
        h.cluster.start()
        back = _until(lambda: _works(h, browser, token), 60)
        if back is None:
            report.problems.append("not working 60 s after the database came back")
        else:
            report.figures["working again after"] = f"{back:.1f} s"
        traffic.stop()
        report.figures["writes acknowledged"] = ledger.acknowledged
        report.figures["5xx while down"] = sum(n for s, n in traffic.statuses.items()
                                               if s.startswith("5"))
        report.problems += h.integrity(ledger)
    return report


# -- the disk fills up -------------------------------------------------------------
def disk_full(*, size: str = "160m") -> FaultReport:
    """PostgreSQL's data directory on a tmpfs filled to the last byte, then freed."""
    report = FaultReport("disk full")
    if os.geteuid() != 0:
        report.skipped = "mounting a tmpfs needs root"
        return report
    with tmpfs(size) as mount, harness(cluster_root=mount / "pg") as h:
        base = h.stack.base
        browser = sign_in(base, "seller0", PASSWORD)
        token = h.token("seller0")
        ledger = Ledger()
        traffic = Traffic(base, {"seller1": h.token("seller1")}, None, ledger).start()
        time.sleep(1.0)
        filler = mount / "filler"
        _fill(filler)
        time.sleep(2.0)  # writes now fail; PostgreSQL may stop itself when WAL cannot grow
        wrote = _post_json(token, f"{base}/api/v1/accounts",
                           {"name": "No room", "status": "prospect"})
        # PostgreSQL may still accept a write into WAL segments it already has: what Citadel
        # promises is a clear 503 or a success that is kept, never a 500 (checked below).
        look(report, "an API write on a full disk", wrote, (201, 503))
        look(report, "a page on a full disk", _get(browser, f"{base}/accounts"), (200, 503))
        report.figures["postgres survived"] = h.cluster.running()
        filler.unlink()
        if not h.cluster.running():  # its service restarts it, as Restart=on-failure would
            h.cluster.start()
        back = _until(lambda: _works(h, browser, token), 90)
        if back is None:
            report.problems.append("not working 90 s after space was freed")
        else:
            report.figures["working again after"] = f"{back:.1f} s"
        traffic.stop()
        if wrote is not None and wrote.status_code == 201:
            report.problems += _kept(h, token, wrote.json()["id"], "the write acknowledged on a full disk")
        report.figures["writes acknowledged"] = ledger.acknowledged
        report.figures["statuses"] = dict(traffic.statuses)
        report.problems += h.integrity(ledger)
    return report


def _kept(h: Harness, token: str, account_id: str, what: str) -> list[str]:
    """No problem if the account is there once the disk has room again."""
    try:
        found = requests.get(f"{h.stack.base}/api/v1/accounts/{account_id}", timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {token}"})
    except requests.RequestException as exc:
        return [f"{what}: cannot be read back ({exc})"]
    return [] if found.status_code == 200 else [f"{what} was lost: HTTP {found.status_code}"]


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system has no byte left."""
    chunk = b"\0" * (1 << 20)
    with path.open("wb", buffering=0) as out:
        for size in (1 << 20, 4096, 1):
            block = chunk[:size]
            try:
                while True:
                    out.write(block)
            except OSError:
                continue


# -- the clock steps back ----------------------------------------------------------
def clock_backwards(*, jump: str = "-1h") -> FaultReport:
    """The clock of the web server and the worker steps back an hour, then forward again."""
    report = FaultReport("clock backwards")
    if not LIBFAKETIME.exists():
        report.skipped = f"libfaketime not found at {LIBFAKETIME} (apt-get install faketime)"
        return report
    with tmpfs_free_dir() as control:
        clock = control / "faketime.rc"
        clock.write_text("+0\n")
        # libfaketime 0.9.10 cannot leave CLOCK_MONOTONIC alone (FAKETIME_DONT_FAKE_MONOTONIC
        # breaks every sleep with EINVAL), so the monotonic clock steps back too: harsher
        # than an NTP step, which moves only the wall clock.
        env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(clock),
               "FAKETIME_NO_CACHE": "1"}
        with harness(env=env) as h:
            base = h.stack.base
            browser = sign_in(base, "seller0", PASSWORD)
            token = h.token("seller0")
            ledger = Ledger()
            traffic = Traffic(base, {"seller1": h.token("seller1")},
                              h.token("director"), ledger).start()
            time.sleep(2.0)
            clock.write_text(f"{jump}\n")
            time.sleep(8.0)
            page = _get(browser, f"{base}/accounts")
            look(report, "a page after the clock stepped back", page, (200,))
            # Session cookies are signed with their time: one from "the future" is refused,
            # so people sign in again (once); the server-side session is untouched.
            signed_out = page is not None and "/login" in page.url
            report.figures["signed out by the step"] = "yes" if signed_out else "no"
            if signed_out:
                browser = sign_in(base, "seller0", PASSWORD)
            if not _works(h, browser, token):
                report.problems.append("signed-in work failed after the clock stepped back")
            report.figures["checkpoints while back"] = _checkpoints_within(h, 15)
            clock.write_text("+0\n")
            time.sleep(3.0)
            # An hour forward is an hour idle: the session ends, as it should; sign in again.
            page = _get(browser, f"{base}/accounts")
            if page is not None and "/login" in page.url:
                report.figures["signed out by the step forward"] = "yes"
                browser = sign_in(base, "seller0", PASSWORD)
            if not _works(h, browser, token):
                report.problems.append("signed-in work failed after the clock stepped forward")
            traffic.stop()
            report.figures["writes acknowledged"] = ledger.acknowledged
            report.figures["5xx"] = sum(n for s, n in traffic.statuses.items() if s.startswith("5"))
            report.figures["ts steps back in seq order"] = _ts_reversals(h)
            report.problems += h.integrity(ledger)
    return report


def _checkpoints_within(h: Harness, seconds: float) -> str:
    """Whether the worker still signs checkpoints by time while the clock is behind."""
    before = _checkpoint_count(h)
    grown = _until(lambda: _checkpoint_count(h) > before, seconds)
    return "yes" if grown is not None else f"none in {seconds:.0f} s"


def _checkpoint_count(h: Harness) -> int:
    from sqlalchemy import text

    from appliance.kernel.db import make_engine

    engine = make_engine(h.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM audit_checkpoints")).scalar_one())
    finally:
        engine.dispose()


def _ts_reversals(h: Harness) -> int:
    from sqlalchemy import text

    from appliance.kernel.db import make_engine

    engine = make_engine(h.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM (SELECT ts < lag(ts) OVER (ORDER BY seq) AS back "
                "FROM audit_events) t WHERE back")).scalar_one())
    finally:
        engine.dispose()


def tmpfs_free_dir():
    import tempfile
    from contextlib import contextmanager

    @contextmanager
    def made():
        with tempfile.TemporaryDirectory(prefix="citadel-clock-") as tmp:
            yield Path(tmp)

    return made()


FAULTS = {"database": database_unreachable, "disk": disk_full, "clock": clock_backwards}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(FAULTS)
    failed = False
    for name in names:
        report = FAULTS[name]()
        status = "skipped" if report.skipped else ("ok" if report.ok else "FAILED")
        print(f"{report.name}: {status}; {report.summary()}")
        for problem in report.problems:
            print(f"  PROBLEM: {problem}")
        failed |= not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
