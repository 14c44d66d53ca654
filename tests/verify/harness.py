"""A small appliance on a private PostgreSQL cluster, served and supervised, for one test."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.kernel.db import make_engine
from tests.bench.web import free_port
from tests.factories import PASSWORD
from tests.verify.cluster import Cluster
from tests.verify.company import small_appliance
from tests.verify.ledger import Ledger, audit_gaps
from tests.verify.stack import Stack


@dataclass
class Harness:
    cluster: Cluster
    stack: Stack
    workdir: Path

    @property
    def database_url(self) -> str:
        return self.cluster.url("citadel")

    def token(self, username: str) -> str:
        result = self.stack.cli("user", "token", username, "--name", "verify")
        if result.returncode != 0:
            raise RuntimeError(f"user token {username}: {result.stderr}")
        return result.stdout.strip()

    def integrity(self, ledger: Ledger | None = None) -> list[str]:
        """Lost acknowledged writes, audit gaps, and what `appliance audit verify` finds."""
        problems: list[str] = []
        engine = make_engine(self.database_url)
        try:
            if ledger is not None:
                problems += ledger.check(engine)
            gap = audit_gaps(engine)
            if gap:
                problems.append(f"audit gap: {gap}")
        finally:
            engine.dispose()
        verified = self.stack.cli("audit", "verify")
        if verified.returncode != 0:
            problems.append(f"audit verify exit {verified.returncode}: "
                            f"{(verified.stdout + verified.stderr).strip()[-600:]}")
        return problems


PASSWORD_OF_SELLERS = PASSWORD


@contextmanager
def harness(*, cluster_root: Path | None = None, accounts: int = 500,
            restart_sec: float | None = 0.5, web_workers: int | None = 2,
            env: dict[str, str] | None = None) -> Iterator[Harness]:
    """Cluster, appliance and supervised services; everything removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="citadel-verify-") as tmp:
        workdir = Path(tmp)
        cluster = Cluster(cluster_root, free_port()).create(
            wal_segsize_mb=1 if cluster_root else 16)
        stack: Stack | None = None
        try:
            cluster.start()
            url = cluster.create_database("citadel")
            data_dir = small_appliance(workdir / "appliance", url, accounts=accounts,
                                       scratch_url=cluster.url())
            stack = Stack(data_dir, free_port(), restart_sec=restart_sec, web_workers=web_workers,
                          env=env)
            stack.start()
            yield Harness(cluster, stack, workdir)
        finally:
            if stack is not None:
                stack.stop()
            cluster.destroy()


@contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (root only), unmounted afterwards."""
    where = Path(tempfile.mkdtemp(prefix="citadel-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                   check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        where.rmdir()
