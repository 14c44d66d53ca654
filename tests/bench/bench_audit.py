"""What the audit trail costs: prints figures, asserts nothing.

    .venv/bin/python -m tests.bench.bench_audit [--events 200000] [--postgres URL]

1. Append overhead per request: the median of a request-like transaction (read
   a row, insert a row, commit) with one audit event, against the same
   transaction without it, on SQLite and on PostgreSQL.
2. Append throughput: events per second, 100 events per commit, one writer.
3. Verification: events per second over the whole log (with a checkpoint every
   10,000 events), against a plain read of the same rows through the driver.
4. Proofs: an inclusion proof and a 100-event evidence bundle over that log.

PostgreSQL runs when ``--postgres`` or ``CITADEL_TEST_DATABASE_URL`` names a
server; each run uses a scratch database it drops afterwards.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import audit
from appliance.kernel.db import make_engine
from appliance.schema import upgrade
from audit.config import AuditConfig
from audit.evidence import bundle, prove
from audit.log import append
from audit.verify import verify

SCRATCH = MetaData()
WORK = Table("bench_work", SCRATCH, Column("id", Integer, primary_key=True),
             Column("name", String(64)))


@contextmanager
def database(kind: str, server: str | None) -> Iterator[Engine]:
    """A fresh, migrated database of ``kind``, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as scratch:
            engine = make_engine(f"sqlite:///{scratch}/bench.db")
            upgrade(engine)
            SCRATCH.create_all(engine)
            yield engine
            engine.dispose()
        return
    url = make_url(server or "")
    name = f"citadel_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(drivername="postgresql+psycopg", database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(url.set(drivername="postgresql", database=name)
                         .render_as_string(hide_password=False))
    try:
        upgrade(engine)
        SCRATCH.create_all(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def median_ms(func: Callable[[], object], *, number: int, warmup: int = 50,
              clock: Callable[[], int] = time.perf_counter_ns) -> float:
    """Median milliseconds of ``func`` by ``clock`` (wall time, or this process's CPU time)."""
    for _ in range(warmup):
        func()
    times = []
    for _ in range(number):
        start = clock()
        func()
        times.append(clock() - start)
    return statistics.median(times) / 1e6


def row(label: str, value: float, unit: str, note: str = "") -> None:
    print(f"  {label:<52} {value:12,.3f} {unit:<9} {note}")


def bench_request(engine: Engine, number: int) -> None:
    counter = iter(range(10**9))

    def request(with_event: bool) -> None:
        with Session(engine) as session:
            session.execute(select(WORK.c.id).order_by(WORK.c.id.desc()).limit(1)).first()
            n = next(counter)
            session.execute(WORK.insert().values(id=n, name=f"row {n}"))
            if with_event:
                audit.record(session, "record.create", user="alice", entity="account",
                             entity_id=str(uuid.uuid4()), count=1, ip="10.0.0.5",
                             meta={"changes": {"name": [None, f"row {n}"]}})
            session.commit()

    for clock, what in ((time.perf_counter_ns, "wall"), (time.process_time_ns, "CPU")):
        # Interleave the two so that drift in the machine's load hits both alike.
        plain, audited = [], []
        for _ in range(5):
            plain.append(median_ms(lambda: request(False), number=number // 5, warmup=20,
                                   clock=clock))
            audited.append(median_ms(lambda: request(True), number=number // 5, warmup=20,
                                     clock=clock))
        base, with_audit = statistics.median(plain), statistics.median(audited)
        row(f"request without audit event (median {what})", base, "ms", "baseline")
        row(f"request with one audit event (median {what})", with_audit, "ms",
            f"x{with_audit / base:.2f} of baseline")
        row(f"added by the audit event ({what})", with_audit - base, "ms", "target <= 1 ms")


def fill(engine: Engine, config: AuditConfig, events: int) -> float:
    """Append ``events`` in commits of 100, checkpointing every 10,000; return events/s."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    start = time.perf_counter()
    with Session(engine) as session:
        for first in range(0, events, 100):
            entries = [{
                "ts": t0 + timedelta(seconds=i), "user": f"user{i % 40}",
                "action": ("record.view", "export", "record.update", "login")[i % 4],
                "entity": "account", "entity_id": str(uuid.UUID(int=i)), "count": i % 50,
                "ip": f"10.0.{i % 200}.{i % 250}",
                "meta": audit.log.canonical_json({"q": "acme", "page": i % 9}),
            } for i in range(first, min(first + 100, events))]
            append(session, entries)
            session.commit()
            if (first + 100) % 10_000 == 0:
                audit.checkpoint_now(session, config)
        audit.checkpoint_now(session, config)
    return events / (time.perf_counter() - start)


def plain_read(engine: Engine) -> float:
    """Events/s of reading every row through the driver in the same batches: the floor."""
    raw = engine.raw_connection()
    try:
        postgres = engine.dialect.name == "postgresql"
        cursor = raw.cursor(binary=True) if postgres else raw.cursor()  # as verify reads
        sql = ('SELECT seq, ts, "user", action, entity, entity_id, count, ip, meta, prev_hash, '
               "hash FROM audit_events WHERE seq >= {p} ORDER BY seq LIMIT 10000")
        placeholder = "%s" if postgres else "?"
        position, count, start = 0, 0, time.perf_counter()
        while True:
            cursor.execute(sql.format(p=placeholder), (position,))
            rows = cursor.fetchall()
            if not rows:
                break
            count += len(rows)
            position = rows[-1][0] + 1
        return count / (time.perf_counter() - start)
    finally:
        raw.close()


def bench_log(engine: Engine, events: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        config = AuditConfig(Path(data), syslog_socket="")
        rate = fill(engine, config, events)
        row("append, 100 events per commit", rate, "events/s")
        floor = max(plain_read(engine) for _ in range(2))
        row("plain driver read of the same rows", floor, "events/s", "baseline")
        runs, cpu = [], []
        for _ in range(3):
            gc.collect()
            started = time.process_time()
            with Session(engine) as session:
                report = verify(session, config)
            cpu.append(events / (time.process_time() - started))
            if not report.ok:
                raise SystemExit(f"the benchmark log does not verify: {report.findings}")
            runs.append(report.rate)
        best = max(runs)
        row(f"verify {events:,} events (best of 3)", best, "events/s",
            f"x{best / floor:.2f} of baseline; target >= 100,000")
        row("verify (median of 3)", statistics.median(runs), "events/s")
        row("verify, per CPU second of this process", max(cpu), "events/s",
            "(what an idle machine allows, minus database time)")
        with Session(engine) as session:
            ms = median_ms(lambda: prove(session, config, events // 3), number=20, warmup=2)
            row(f"inclusion proof at {events:,} events (median)", ms, "ms")
            seqs = list(range(0, events, max(1, events // 100)))[:100]
            start = time.perf_counter()
            document = bundle(session, config, seqs=seqs)
            row(f"evidence bundle of {len(document['events'])} events",
                (time.perf_counter() - start) * 1000, "ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--postgres", default=os.environ.get("CITADEL_TEST_DATABASE_URL"))
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for kind in kinds:
        print(f"\n== {kind} ==")
        print("1. Append overhead per request")
        with database(kind, args.postgres) as engine:
            bench_request(engine, args.requests)
        print("2-4. Append, verify, prove")
        with database(kind, args.postgres) as engine:
            bench_log(engine, args.events)
    if not args.postgres:
        print("\n(PostgreSQL skipped: pass --postgres URL or set CITADEL_TEST_DATABASE_URL)")


if __name__ == "__main__":
    main()
