"""Forwarding events to a SIEM as RFC 5424 syslog or CEF, over UDP or TCP.

Each destination remembers the seq of the last event it was sent in
``<data dir>/audit/forward/<format>-<protocol>-<host>-<port>.json``, written
atomically after every delivered batch, so a restart resumes where it
stopped and never skips an event (over TCP; UDP delivers at most once).
Over TCP, syslog messages are framed by octet counting (RFC 6587 section
3.4.1) and CEF lines by newlines.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from audit.anchor import APP_NAME, SD_ID
from audit.chain import canonical_json
from audit.config import AuditConfig
from audit.errors import ForwardError
from audit.events import EventFilter, StoredEvent, iter_events

FORMATS = ("syslog", "cef")
PROTOCOLS = ("udp", "tcp")
FACILITY_LOG_AUDIT = 13
VENDOR, PRODUCT, VERSION = "Citadel", "Citadel Appliance", "1"

#: CEF severity (0-10) and syslog severity per action; others are informational.
SEVERITY = {
    "login.failed": (5, 4), "export": (6, 4), "print": (5, 5), "copy": (5, 5),
    "file.external": (8, 4), "record.delete": (5, 5), "record.reassign": (4, 5),
    "user.notice": (4, 5), "card.removed": (4, 5), "report.run": (3, 6),
}
DEFAULT_SEVERITY = (3, 6)


def _sd_value(value: Any) -> str:
    """An RFC 5424 PARAM-VALUE: escape backslash, double quote and closing bracket."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _msgid(action: str) -> str:
    """MSGID is 1-32 printable US-ASCII characters without spaces."""
    return re.sub(r"[^\x21-\x7e]", "_", action)[:32] or "-"


def syslog_line(event: dict[str, Any], canonical_ts: str, hostname: str) -> str:
    """One RFC 5424 message; MSG is the event's public JSON."""
    severity = SEVERITY.get(event["action"], DEFAULT_SEVERITY)[1]
    params = " ".join(f'{name}="{_sd_value(event[name])}"' for name in
                      ("seq", "user", "action", "entity", "entity_id", "count", "ip"))
    return (f"<{FACILITY_LOG_AUDIT * 8 + severity}>1 {canonical_ts} {hostname} {APP_NAME} - "
            f"{_msgid(event['action'])} [{SD_ID} {params}] {canonical_json(event)}")


def _cef_header(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|")


def _cef_ext(value: Any) -> str:
    text = "" if value is None else str(value)
    return (text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r")
            .replace("\n", "\\n"))


def cef_line(event: dict[str, Any], when: datetime) -> str:
    """One CEF:0 line (ArcSight Common Event Format)."""
    severity = SEVERITY.get(event["action"], DEFAULT_SEVERITY)[0]
    ext = {
        "rt": int(when.timestamp() * 1000), "act": event["action"], "suser": event["user"],
        "src": event["ip"], "cnt": event["count"], "externalId": event["seq"],
        "cs1Label": "entity", "cs1": event["entity"],
        "cs2Label": "entity_id", "cs2": event["entity_id"],
        "cs3Label": "meta", "cs3": canonical_json(event["meta"]),
    }
    extension = " ".join(f"{k}={_cef_ext(v)}" for k, v in ext.items() if v is not None)
    header = "|".join(_cef_header(part) for part in (
        "CEF:0", VENDOR, PRODUCT, VERSION, event["action"], f"audit {event['action']}", severity))
    return f"{header}|{extension}"


def render(fmt: str, stored: StoredEvent, hostname: str) -> bytes:
    body = json.loads(stored.canonical)
    if fmt == "syslog":
        return syslog_line(stored.public, body["ts"], hostname).encode()
    return cef_line(stored.public, datetime.fromisoformat(body["ts"])).encode()


@dataclass(frozen=True)
class Destination:
    fmt: str
    protocol: str
    host: str
    port: int

    @classmethod
    def parse(cls, fmt: str, protocol: str, target: str) -> Destination:
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ForwardError(detail=f"--to {target!r} must be HOST:PORT")
        if fmt not in FORMATS or protocol not in PROTOCOLS:
            raise ForwardError(detail=f"format must be one of {FORMATS}, protocol one of "
                               f"{PROTOCOLS}")
        return cls(fmt, protocol, host.strip("[]"), int(port))

    def state_path(self, config: AuditConfig) -> Path:
        safe = re.sub(r"[^A-Za-z0-9.-]", "_", self.host)
        return config.forward_dir / f"{self.fmt}-{self.protocol}-{safe}-{self.port}.json"


def last_forwarded(path: Path) -> int:
    """The seq last delivered to this destination, or -1."""
    try:
        return int(json.loads(path.read_text())["last_seq"])
    except FileNotFoundError:
        return -1
    except (ValueError, KeyError, TypeError):
        raise ForwardError(detail=f"{path} is damaged; fix or delete it (deleting resends "
                           "everything)") from None


def _remember(path: Path, seq: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"last_seq": seq, "at": datetime.now(UTC).isoformat()}))
    os.replace(tmp, path)


class _Sender:
    def __init__(self, dest: Destination) -> None:
        self.dest = dest
        self.sock: socket.socket | None = None

    def send(self, messages: list[bytes]) -> None:
        dest = self.dest
        try:
            if self.sock is None:
                kind = socket.SOCK_DGRAM if dest.protocol == "udp" else socket.SOCK_STREAM
                info = socket.getaddrinfo(dest.host, dest.port, type=kind)[0]
                self.sock = socket.socket(info[0], kind)
                self.sock.settimeout(10)
                self.sock.connect(info[4])
            if dest.protocol == "udp":
                for message in messages:
                    self.sock.send(message)
            elif dest.fmt == "syslog":
                self.sock.sendall(b"".join(b"%d %s" % (len(m), m) for m in messages))
            else:
                self.sock.sendall(b"".join(m + b"\n" for m in messages))
        except OSError as exc:
            self.close()
            raise ForwardError(detail=f"{dest.host}:{dest.port} ({dest.protocol}): "
                               f"{exc.strerror or exc}") from None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def forward(session: Session, settings: Any, dest: Destination, *, follow: bool = False,
            start: int | None = None, poll_seconds: float = 1.0, batch: int = 500,
            on_batch: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> int:
    """Send every event after the remembered one; with ``follow``, keep going.

    Returns how many events were sent. ``start`` overrides the remembered
    position (the next event sent is ``start``).
    """
    config = AuditConfig.from_settings(settings)
    state = dest.state_path(config)
    last = start - 1 if start is not None else last_forwarded(state)
    hostname = socket.gethostname() or "-"
    sender, sent = _Sender(dest), 0
    try:
        while True:
            for chunk in _chunks(iter_events(session, config, EventFilter(first_seq=last + 1)),
                                 batch):
                sender.send([render(dest.fmt, event, hostname) for event in chunk])
                last = chunk[-1].seq
                _remember(state, last)
                sent += len(chunk)
                if on_batch is not None:
                    on_batch(len(chunk), last)
            if not follow or should_stop():
                return sent
            time.sleep(poll_seconds)
    finally:
        sender.close()


def _chunks(events: Iterator[StoredEvent], size: int) -> Iterator[list[StoredEvent]]:
    chunk: list[StoredEvent] = []
    for event in events:
        chunk.append(event)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
