"""Forwarding to a SIEM over real UDP and TCP sockets on this machine."""

from __future__ import annotations

import re
import socket
import threading

import pytest
from sqlalchemy.orm import Session

import audit
from audit.errors import ForwardError
from audit.forward import Destination, cef_line, forward, last_forwarded
from tests.audit.conftest import T0, add_events

RFC5424 = re.compile(r"^<(\d+)>1 (\S+) (\S+) citadel-audit - (\S+) \[citadel@32473 "
                     r'seq="(\d+)" user="([^"]*)" .*\] (\{.*\})$')


class TcpCollector:
    """A SIEM stand-in: accepts one connection and keeps every byte until it closes."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(10)
        self.port = self.server.getsockname()[1]
        self.data = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        conn.settimeout(10)
        with conn:
            while chunk := conn.recv(65536):
                self.data += chunk

    def close(self) -> None:
        self.thread.join(10)
        self.server.close()


@pytest.fixture
def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def run(engine, config, dest, **kwargs):
    with Session(engine) as session:
        return forward(session, config, dest, **kwargs)


def test_syslog_over_udp_resumes_where_it_stopped(engine, config, udp):
    add_events(engine, 12)
    dest = Destination.parse("syslog", "udp", f"127.0.0.1:{udp.getsockname()[1]}")
    assert run(engine, config, dest, batch=5) == 12
    messages = [udp.recv(65536).decode() for _ in range(12)]
    parsed = [RFC5424.match(m) for m in messages]
    assert all(parsed), messages[0]
    assert [int(p.group(5)) for p in parsed] == list(range(12))
    assert parsed[2].group(2) == "2026-03-02T09:02:00.000000Z" and parsed[2].group(4) == "export"
    assert int(parsed[2].group(1)) == 13 * 8 + 4  # log audit, warning for an export
    assert last_forwarded(dest.state_path(config)) == 11
    assert run(engine, config, dest) == 0
    add_events(engine, 3, start_index=12)
    assert run(engine, config, dest) == 3
    assert RFC5424.match(udp.recv(65536).decode()).group(5) == "12"


def test_cef_over_tcp(engine, config):
    collector = TcpCollector()
    with Session(engine) as session:
        audit.record(session, "export", user="al|ce", entity="account", count=412,
                     ip="10.0.0.5", meta={"format": "csv=x"}, ts=T0)
        session.commit()
    add_events(engine, 4, start_index=1)
    try:
        dest = Destination.parse("cef", "tcp", f"127.0.0.1:{collector.port}")
        assert run(engine, config, dest) == 5
    finally:
        collector.close()
    lines = collector.data.decode().splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("CEF:0|Citadel|Citadel Appliance|1|export|audit export|6|")
    assert "suser=al|ce" in lines[0] and "cnt=412" in lines[0] and "src=10.0.0.5" in lines[0]
    assert 'cs3={"format":"csv\\=x"}' in lines[0] and "externalId=0" in lines[0]


def test_syslog_over_tcp_uses_octet_counting(engine, config):
    collector = TcpCollector()
    add_events(engine, 3)
    try:
        run(engine, config, Destination.parse("syslog", "tcp", f"127.0.0.1:{collector.port}"))
    finally:
        collector.close()
    data, frames = collector.data, []
    while data:
        length, _, rest = data.partition(b" ")
        frames.append(rest[:int(length)])
        data = rest[int(length):]
    assert [RFC5424.match(f.decode()).group(5) for f in frames] == ["0", "1", "2"]


def test_a_down_collector_loses_nothing(engine, config):
    add_events(engine, 3)
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    dest = Destination.parse("cef", "tcp", f"127.0.0.1:{port}")
    with pytest.raises(ForwardError, match=f"127.0.0.1:{port}"):
        run(engine, config, dest)
    assert last_forwarded(dest.state_path(config)) == -1


def test_follow_sends_new_events(engine, config, udp):
    add_events(engine, 2)
    dest = Destination.parse("syslog", "udp", f"127.0.0.1:{udp.getsockname()[1]}")
    rounds = []

    def stop() -> bool:
        rounds.append(1)
        if len(rounds) == 1:
            add_events(engine, 2, start_index=2)
        return len(rounds) > 2

    assert run(engine, config, dest, follow=True, poll_seconds=0.01, should_stop=stop) == 4


def test_bad_destinations():
    for target in ("nohost", "host:", ":514", "host:99999"):
        with pytest.raises(ForwardError):
            Destination.parse("syslog", "udp", target)
    assert "\\|" in cef_line({"action": "a|b", "user": None, "ip": None, "count": 0, "seq": 1,
                               "entity": None, "entity_id": None, "meta": {}}, T0)
