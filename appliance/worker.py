"""``appliance worker``: the appliance's scheduled jobs, in one long-running process.

Each job runs on its own interval; a job that fails is logged and retried at
its next turn, and never stops the others. The worker writes a heartbeat file
that ``/healthz`` reads, and stops cleanly on SIGTERM between jobs. Jobs need
the keys for some of their work; while the box is sealed they wait.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete

from appliance import keys
from appliance.kernel.runtime import Appliance

log = logging.getLogger("citadel.worker")
HEARTBEAT = "worker.heartbeat"


@dataclass
class Job:
    """Something to run every ``every`` seconds; ``needs_keys`` jobs wait while sealed."""

    name: str
    every: float
    run: Callable[[Appliance], object]
    needs_keys: bool = False
    next_at: float = 0.0
    failures: int = field(default=0)


def checkpoint_audit(appliance: Appliance) -> object:
    """Sign a checkpoint of the audit log when N events or T seconds have passed."""
    from audit.checkpoint import maybe_checkpoint

    with appliance.session() as db:
        return maybe_checkpoint(db, appliance.settings)


def score_leaks(appliance: Appliance) -> object:
    """Score the audit events since the last run; new alerts within one interval."""
    from dlp.live import score_new_events

    return score_new_events(appliance)


def retrain_leaks(appliance: Appliance) -> object:
    """Refit the people's baselines on recent history (nightly)."""
    from dlp.live import retrain

    return retrain(appliance)


def scheduled_backup(appliance: Appliance) -> object:
    """A backup and its restore drill when ``[backup] schedule`` is due."""
    from appliance.backups import scheduled_backup as run

    return run(appliance)


def housekeeping(appliance: Appliance) -> object:
    """Forget what has expired: used card challenges, stale uploads, long-dead sessions."""
    from crm.identity import UsedNonce, UserSession
    from crm.importer import KEEP_FOR, ImportBatch

    now = datetime.now(UTC)
    with appliance.session() as db:
        db.execute(delete(UsedNonce).where(UsedNonce.expires_at < now - timedelta(minutes=5)))
        db.execute(delete(ImportBatch).where(ImportBatch.created_at < now - KEEP_FOR))
        db.execute(delete(UserSession).where(UserSession.revoked_at < now - timedelta(days=90)))
    refresh_statistics(appliance)
    return None


def refresh_statistics(appliance: Appliance) -> None:
    """Give SQLite's planner fresh statistics (PostgreSQL's autovacuum does this itself)."""
    if appliance.engine.dialect.name == "sqlite":
        with appliance.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()


def default_jobs(appliance: Appliance) -> list[Job]:
    """The jobs this appliance runs, with intervals from ``[worker]`` settings."""
    every = appliance.settings.section("worker")
    retrain_every = every.get("retrain_seconds", 24 * 3600)
    jobs = [
        Job("audit checkpoint", every.get("checkpoint_seconds", 30), checkpoint_audit),
        Job("leak scoring", every.get("scoring_seconds", 15), score_leaks, needs_keys=True),
        # scoring fits a first model itself; the nightly refit starts a day later
        Job("leak baselines", retrain_every, retrain_leaks, needs_keys=True,
            next_at=time.monotonic() + retrain_every),
        Job("backup", every.get("backup_check_seconds", 60), scheduled_backup, needs_keys=True),
        Job("housekeeping", every.get("housekeeping_seconds", 3600), housekeeping),
    ]
    return jobs


class Worker:
    def __init__(self, appliance: Appliance, jobs: list[Job] | None = None) -> None:
        self.appliance = appliance
        self.jobs = jobs if jobs is not None else default_jobs(appliance)
        self.stopping = threading.Event()

    @property
    def heartbeat(self) -> Path:
        return self.appliance.data_dir / HEARTBEAT

    def run_due(self, now: float | None = None) -> list[str]:
        """Run every job that is due; returns the names of those that ran."""
        now = time.monotonic() if now is None else now
        sealed = self._sealed()
        ran = []
        for job in self.jobs:
            if job.next_at > now or (job.needs_keys and sealed) or self.stopping.is_set():
                continue
            self._run(job)
            job.next_at = time.monotonic() + job.every
            ran.append(job.name)
        self.heartbeat.write_text(datetime.now(UTC).isoformat())
        return ran

    def _run(self, job: Job) -> None:
        started = time.perf_counter()
        try:
            job.run(self.appliance)
            job.failures = 0
            log.debug("%s done in %.2f s", job.name, time.perf_counter() - started)
        except Exception:  # one job's failure must never stop the others
            job.failures += 1
            log.exception("%s failed (%d in a row); retrying in %.0f s", job.name, job.failures,
                          job.every)

    def _sealed(self) -> bool:
        try:
            return keys.sync(self.appliance.data_dir) is None
        except Exception:  # keys not initialised yet: sealed for our purposes
            return True

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        from appliance.sealed import start

        start(self.appliance.settings)
        log.info("worker started with %d jobs", len(self.jobs))
        while not self.stopping.is_set():
            self.run_due()
            due = min(job.next_at for job in self.jobs) - time.monotonic()
            self.stopping.wait(max(0.5, min(due, 5.0)))
        log.info("worker stopped")


def last_heartbeat(data_dir: Path) -> datetime | None:
    try:
        return datetime.fromisoformat((data_dir / HEARTBEAT).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
