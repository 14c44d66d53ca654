"""Copies of each checkpoint outside the database.

The anchor file (``<data dir>/audit/anchor.log``) gets one signed JSON line per
checkpoint, appended and fsynced before the checkpoint is committed to the
database; provisioning makes it append-only (``chattr +a``), so not even the
database owner can take a line back. The same line goes to the local syslog
socket as an RFC 5424 message, to be shipped off the box; syslog being away is
reported and never stops a checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from audit.statements import SignedCheckpoint

APP_NAME = "citadel-audit"
SD_ID = "citadel@32473"  # 32473: the enterprise number RFC 5612 sets aside for examples
FACILITY_LOG_AUDIT = 13
SEVERITY_NOTICE = 5


def append_line(path: Path, line: str) -> None:
    """Append one line with a single write and fsync it (the file may be append-only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        data = line.encode() + b"\n"
        if os.fstat(fd).st_size and not _ends_with_newline(path):
            data = b"\n" + data  # a torn line from a crash stays on its own line
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


@dataclass
class AnchorContents:
    """What the anchor file holds: checkpoints in file order, and lines that are not one."""

    exists: bool
    checkpoints: list[tuple[int, SignedCheckpoint]] = field(default_factory=list)
    unreadable: list[tuple[int, str]] = field(default_factory=list)


def read_anchor(path: Path) -> AnchorContents:
    """Parse every line; line numbers are 1-based."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return AnchorContents(exists=False)
    contents = AnchorContents(exists=True)
    for number, text in enumerate(raw.split(b"\n"), start=1):
        if not text.strip():
            continue
        try:
            contents.checkpoints.append((number, SignedCheckpoint.from_json(json.loads(text))))
        except (ValueError, UnicodeDecodeError) as exc:
            contents.unreadable.append((number, str(exc)[:120]))
    return contents


def last_checkpoint(path: Path, tail_bytes: int = 16384) -> SignedCheckpoint | None:
    """The last readable checkpoint line of the anchor, reading only the file's tail."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        return None
    for text in reversed(lines):
        try:
            return SignedCheckpoint.from_json(json.loads(text))
        except (ValueError, UnicodeDecodeError):
            continue
    return None


def syslog_message(checkpoint: SignedCheckpoint, *, hostname: str | None = None,
                   now: datetime | None = None) -> bytes:
    """The RFC 5424 message announcing a checkpoint; MSG is the anchor line."""
    pri = FACILITY_LOG_AUDIT * 8 + SEVERITY_NOTICE
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
    stamp = stamp.replace("+00:00", "Z")
    host = (hostname or socket.gethostname() or "-")[:255]
    params = (f'size="{checkpoint.size}" root="{checkpoint.root.hex()}" '
              f'head="{checkpoint.head.hex()}" key="{checkpoint.key_id}"')
    return (f"<{pri}>1 {stamp} {host} {APP_NAME} {os.getpid()} checkpoint "
            f"[{SD_ID} {params}] {checkpoint.line()}").encode()


def send_syslog(socket_path: str, message: bytes) -> str | None:
    """Send ``message`` to a local datagram socket; the reason on failure, else None."""
    if not socket_path:
        return "syslog is switched off ([audit] syslog_socket is empty)"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)  # never wait for a stuck syslog daemon
        sock.sendto(message, socket_path)
    except OSError as exc:
        return f"syslog at {socket_path} unreachable: {exc.strerror or exc}"
    finally:
        sock.close()
    return None
