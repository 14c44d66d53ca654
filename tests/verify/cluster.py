"""A private PostgreSQL cluster for tests that stop, kill and starve the database.

The machine's own cluster is shared with other test runs, so nothing here ever
touches it: ``Cluster`` runs ``initdb`` and ``pg_ctl`` on a directory of its
own, on a port of its own, with trust authentication on 127.0.0.1. As root the
server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

PG_BIN = Path(os.environ.get("CITADEL_PG_BIN", "/usr/lib/postgresql/15/bin"))
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "fsync": "on",  # crash tests are only honest with the durability production has
    "synchronous_commit": "on",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] '",
}


class ClusterError(RuntimeError):
    """The private PostgreSQL cluster could not be set up or started."""


def available() -> str | None:
    """Why a private cluster cannot run here, or None when it can."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql-15)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres user to run the server as"
    return None


class Cluster:
    """``initdb`` + ``pg_ctl`` in ``root``, listening on 127.0.0.1:``port``.

    Without ``root`` the cluster lives in a new directory under the system's temp
    directory that the server's user can reach, removed by ``destroy``.
    """

    def __init__(self, root: Path | None, port: int) -> None:
        self.owned = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="citadel-pg-"))
        self.port = port
        self.data = self.root / "pgdata"
        self.log = self.root / "postgresql.log"

    # -- running commands as the server's owner ---------------------------------
    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self._as_owner(list(argv)), capture_output=True, text=True,
                                cwd="/", timeout=120)
        if check and result.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} failed: {result.stderr or result.stdout}")
        return result

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(path, entry.pw_uid, entry.pw_gid)

    # -- life cycle -------------------------------------------------------------
    def create(self, *, wal_segsize_mb: int = 16) -> Cluster:
        """A new cluster (the root directory is created; it may be a mount point)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self._chown(self.root)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale", "C.UTF-8", f"--wal-segsize={wal_segsize_mb}",
                  "--no-sync")
        settings = dict(SETTINGS, port=str(self.port), unix_socket_directories=f"'{self.root}'")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests/verify/cluster.py\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        return self

    def start(self, timeout: float = 60) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(int(timeout)), "start")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``; ``immediate`` is a crash (recovery at the next start)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
                  check=False)

    def postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def running(self) -> bool:
        return self.postmaster_pid() is not None

    def kill9(self) -> None:
        """SIGKILL the postmaster, then its orphaned backends (what the OOM killer leaves)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        children = children_of(pid)
        os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{p}").exists() for p in [pid, *children]) and \
                time.monotonic() < deadline:
            time.sleep(0.05)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, copy_of: str | None = None) -> str:
        """A new, empty database ``name`` (or a copy of the database ``copy_of``)."""
        engine = create_engine(self.url().replace("postgresql://", "postgresql+psycopg://"),
                               isolation_level="AUTOCOMMIT")
        template = f' TEMPLATE "{copy_of}"' if copy_of else ""
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"{template}'))
        finally:
            engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        if self.running():
            self.kill9()
        shutil.rmtree(self.root if self.owned else self.data, ignore_errors=True)

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found
