"""Crashes at random moments: kill -9 of the web server, the worker, a backup and
PostgreSQL, while staff write and a director exports.

    .venv/bin/python -m tests.verify.crashes [--iterations 100] [--seed 1]
        [--restart-sec SECONDS] [--workdir DIR]

The appliance runs on a private PostgreSQL cluster (``tests.verify.cluster``)
under the systemd-like supervisor (``tests.verify.supervisor``). After every
crash it must come back healthy by itself; PostgreSQL is started again by the
test, as its own service would be. At the end: every acknowledged write is in
the database with its audit event, the audit trail verifies and its seqs have
no gap, every delivered export is recorded with the same content hash, no
interrupted backup is listed as good, and the newest good backup restores.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from appliance.kernel.db import make_engine
from tests.bench.web import free_port
from tests.verify import backups
from tests.verify.cluster import Cluster, children_of
from tests.verify.company import small_appliance
from tests.verify.ledger import Ledger, audit_gaps
from tests.verify.stack import Stack
from tests.verify.traffic import Traffic

FAULTS = ("web master", "web worker", "worker", "backup", "postgres immediate",
          "postgres kill -9")


@dataclass
class CrashReport:
    iterations: int
    faults: dict[str, int] = field(default_factory=dict)
    recovery_seconds: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        rec = self.recovery_seconds
        parts = [f"{self.iterations} crashes ({', '.join(f'{k} {v}' for k, v in self.faults.items())})"]
        if rec:
            parts.append(f"back healthy in median {statistics.median(rec):.1f} s, max {max(rec):.1f} s")
        parts += [f"{k} {v}" for k, v in self.figures.items()]
        return "; ".join(parts)


def tokens(stack: Stack, usernames: list[str]) -> dict[str, str]:
    found = {}
    for name in usernames:
        result = stack.cli("user", "token", name, "--name", "verify")
        if result.returncode != 0:
            raise RuntimeError(f"user token {name}: {result.stderr}")
        found[name] = result.stdout.strip()
    return found


def web_worker_pid(stack: Stack, rng: random.Random) -> int | None:
    master = stack.services["web"].pid
    workers = children_of(master) if master else []
    return rng.choice(workers) if workers else None


def crash(kind: str, stack: Stack, cluster: Cluster, loop: backups.BackupLoop,
          rng: random.Random) -> bool:
    """Apply one fault; False when there was nothing to kill (no backup running)."""
    if kind == "web master":
        return stack.services["web"].kill(signal.SIGKILL) is not None
    if kind == "web worker":
        pid = web_worker_pid(stack, rng)
        if pid is None:
            return False
        _kill(pid)
        return True
    if kind == "worker":
        return stack.services["worker"].kill(signal.SIGKILL) is not None
    if kind == "backup":
        return loop.kill()
    if kind == "postgres immediate":
        cluster.stop("immediate")
    else:
        cluster.kill9()
    time.sleep(rng.uniform(0.0, 2.0))  # down a moment, then its service starts it again
    cluster.start()
    return True


def _kill(pid: int) -> None:
    import os

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def run(workdir: Path, *, iterations: int = 100, seed: int = 1, accounts: int = 2000,
        restart_sec: float | None = None, web_workers: int | None = None,
        recover_timeout: float = 180, progress: bool = True) -> CrashReport:
    """The whole campaign in ``workdir``; returns what it found (never raises on findings)."""
    rng = random.Random(seed)
    cluster = Cluster(None, free_port()).create()
    cluster.start()
    stack: Stack | None = None
    report = CrashReport(iterations)
    try:
        url = cluster.create_database("citadel")
        data_dir = small_appliance(workdir / "appliance", url, accounts=accounts,
                                   scratch_url=cluster.url())
        stack = Stack(data_dir, free_port(), restart_sec=restart_sec,
                      web_workers=web_workers).start()
        stack.wait_healthy(recover_timeout, worker=True)
        ledger = Ledger()
        writers = tokens(stack, ["seller0", "seller1", "seller2"])
        traffic = Traffic(stack.base, writers, tokens(stack, ["director"])["director"], ledger,
                          seed=seed).start()
        loop = backups.BackupLoop(stack, workdir / "backups.log")
        if loop.run_once() != 0:  # the good backup that must still restore at the end
            raise RuntimeError(f"the first backup failed: {(workdir / 'backups.log').read_text()}")
        loop.start()
        for n in range(iterations):
            time.sleep(rng.uniform(0.3, 3.0))
            kind = rng.choice(FAULTS)
            if not crash(kind, stack, cluster, loop, rng):
                kind = "web worker"
                crash(kind, stack, cluster, loop, rng)
            report.faults[kind] = report.faults.get(kind, 0) + 1
            time.sleep(0.2)
            report.recovery_seconds.append(0.2 + stack.wait_healthy(recover_timeout))
            if progress:
                print(f"  crash {n + 1}/{iterations}: {kind}; healthy again after "
                      f"{report.recovery_seconds[-1]:.1f} s", flush=True)
        traffic.stop()
        loop.stop()
        stack.wait_healthy(recover_timeout, worker=True)
        report.problems += _final_checks(stack, cluster, ledger, loop, report)
        report.figures["web restarts"] = stack.services["web"].restarts
        report.figures["worker restarts"] = stack.services["worker"].restarts
        report.figures["writes acknowledged"] = ledger.acknowledged
        report.figures["requests failed"] = ledger.refused
        report.figures["answers while broken"] = dict(traffic.statuses.most_common())
    except Exception as exc:  # a crash of the suite itself is a finding too
        report.problems.append(f"the campaign stopped: {exc.__class__.__name__}: {exc}")
    finally:
        if stack is not None:
            stack.stop()
        cluster.destroy()
    return report


def _final_checks(stack: Stack, cluster: Cluster, ledger: Ledger, loop: backups.BackupLoop,
                  report: CrashReport) -> list[str]:
    problems: list[str] = []
    engine = make_engine(cluster.url("citadel"))
    try:
        problems += ledger.check(engine)
        gap = audit_gaps(engine)
        if gap:
            problems.append(f"audit gap: {gap}")
        report.figures["audit events"] = _events(engine)
    finally:
        engine.dispose()
    verified = stack.cli("audit", "verify")
    if verified.returncode != 0:
        problems.append(f"audit verify exit {verified.returncode}: "
                        f"{(verified.stdout + verified.stderr).strip()[-600:]}")
    restore_url = cluster.create_database("restored")
    found, figures = backups.check(stack, loop, restore_url)
    problems += found
    report.figures.update({f"backups {k}": v for k, v in figures.items()})
    return problems


def _events(engine) -> int:
    from sqlalchemy import func

    from audit.models import AuditEvent

    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--restart-sec", type=float, default=None,
                        help="override the units' RestartSec (default: as the units say)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="citadel-crash-") as tmp:
        report = run(args.workdir or Path(tmp), iterations=args.iterations, seed=args.seed,
                     accounts=args.accounts, restart_sec=args.restart_sec)
    print(report.summary())
    for problem in report.problems:
        print(f"  PROBLEM: {problem}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
