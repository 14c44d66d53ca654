"""Fixtures for backup tests: keys, targets, a database with rows, real SSH and S3 servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    insert,
)

from appliance.kernel.db import make_engine
from backup.keys import BackupKeys
from backup.targets.local import LocalTarget

metadata = MetaData()
accounts = Table(
    "bk_accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("notes", Text),
    Column("balance", Numeric(12, 2)),
    Column("created", DateTime(timezone=True)),
    Column("active", Boolean),
    Column("photo", LargeBinary),
)
tags = Table(
    "bk_tags",
    metadata,
    Column("account", String(40), primary_key=True),
    Column("tag", String(40), primary_key=True),
)
events = Table("bk_events", metadata, Column("kind", String(20)), Column("payload", Text))


def add_rows(url: str, start: int, count: int, *, blob_bytes: int = 16) -> None:
    """Insert ``count`` accounts (ids from ``start``) with tags and free events."""
    engine = make_engine(url)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(accounts),
                [
                    {
                        "id": i,
                        "name": f"Account {i} — Zürich",
                        "notes": f"note {i}" * (i % 5),
                        "balance": Decimal(i) / 4,
                        "created": datetime(2026, 1, 1 + i % 28, tzinfo=UTC),
                        "active": i % 2 == 0,
                        "photo": os.urandom(blob_bytes),
                    }
                    for i in range(start, start + count)
                ],
            )
            conn.execute(
                insert(tags),
                [{"account": f"A{i}", "tag": t} for i in range(start, start + count) for t in ("b", "a")],
            )
            conn.execute(
                insert(events),
                [{"kind": "x", "payload": str(i)} for i in range(start, start + count)],
            )
    finally:
        engine.dispose()


@pytest.fixture
def keys() -> BackupKeys:
    return BackupKeys.generate()


@pytest.fixture
def target(tmp_path: Path) -> LocalTarget:
    return LocalTarget(tmp_path / "target")


@pytest.fixture
def populated(database_url: str) -> str:
    add_rows(database_url, 1, 200)
    return database_url


@pytest.fixture
def scratch_url() -> str | None:
    return os.environ.get("CITADEL_TEST_DATABASE_URL")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "attachments" / "2026").mkdir(parents=True)
    (root / "attachments" / "2026" / "contract.pdf").write_bytes(os.urandom(50_000))
    (root / "attachments" / "notes.txt").write_text("hello\n" * 1000)
    (root / "citadel.toml").write_text('database_url = ""\n')
    (root / "keys").mkdir()
    (root / "keys" / "field.wrapped").write_bytes(os.urandom(60))
    os.chmod(root / "keys" / "field.wrapped", 0o600)
    return root


FILES = ["attachments", "citadel.toml", "keys/*.wrapped"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A real OpenSSH server on a high port, key-only, for the current user."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(binary) or os.geteuid() != 0:
        pytest.skip("needs root and openssh-server (apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("sshd")
    os.chmod(root, 0o700)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    shutil.copy(root / "client.pub", root / "authorized_keys")
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n"
        f"StrictModes no\nPidFile {root / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen(
        [binary, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, "sshd")
        host_pub = (root / "host.pub").read_text().split()
        (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        yield {
            "host": "127.0.0.1",
            "port": port,
            "username": "root",
            "key_file": str(root / "client"),
            "known_hosts": str(root / "known_hosts"),
            "dir": root,
        }
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's standalone S3 server on a free port."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        pytest.skip("moto[server] is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, "moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_target(s3_server: str):
    from backup.targets.s3 import S3Target

    return S3Target(
        f"b-{uuid.uuid4().hex[:12]}",
        endpoint_url=s3_server,
        access_key="test",
        secret_key="test",
        create_bucket=True,
    )


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB tmpfs, to fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
