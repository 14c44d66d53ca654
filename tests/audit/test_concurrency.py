"""Concurrent appenders in separate processes, and processes killed mid-append.

The chain must never fork, seq must stay gapless, no committed event may be
lost, and the log must verify afterwards, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

import audit
from appliance.kernel.db import make_engine
from audit.anchor import read_anchor
from audit.config import AuditConfig
from audit.models import AuditEvent, Checkpoint
from tests.audit.conftest import add_events, run_verify

SPAWN = multiprocessing.get_context("spawn")


def _appender(url: str, data_dir: str, worker: int, rounds: int, seed: int) -> list[str]:
    """Append random batches, committing or rolling back at random; return what committed."""
    rng = random.Random(seed)
    engine = make_engine(url)
    config = AuditConfig(Path(data_dir), checkpoint_every=25, syslog_socket="")
    sessions = sessionmaker(engine, info=audit.session_info(config))
    committed: list[str] = []
    for n in range(rounds):
        with sessions() as session:
            ids = [f"{worker}-{n}-{k}" for k in range(rng.randint(1, 5))]
            for ident in ids:
                audit.record(session, rng.choice(["record.view", "export", "login"]),
                             user=f"w{worker}", meta={"id": ident})
            if rng.random() < 0.25:
                session.rollback()
            else:
                session.commit()
                committed += ids
        if rng.random() < 0.1:
            time.sleep(rng.random() / 100)
    engine.dispose()
    return committed


def stored_ids(engine) -> list[str]:
    with Session(engine) as session:
        return [json.loads(meta)["id"] for meta in
                session.scalars(select(AuditEvent.meta).order_by(AuditEvent.seq))]


def test_concurrent_appends_never_fork(database_url, engine, config):
    workers, rounds = 4, 40
    with SPAWN.Pool(workers) as pool:
        results = pool.starmap(_appender, [(database_url, str(config.data_dir), w, rounds, w)
                                           for w in range(workers)])
    committed = [ident for result in results for ident in result]
    ids = stored_ids(engine)
    assert sorted(ids) == sorted(committed)  # nothing lost, nothing rolled back kept
    with Session(engine) as session:
        seqs = session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        sizes = session.scalars(select(Checkpoint.tree_size)).all()
    assert seqs == list(range(len(committed)))
    # Checkpoints were signed along the way; racing signers yield to each other, so how
    # many varies, but each one is in the anchor and matches the events (verify, below).
    assert sizes and len(read_anchor(config.anchor_path).checkpoints) == len(sizes)
    report = run_verify(engine, config)
    assert report.ok, report.findings
    assert report.events == len(committed)


def _endless_appender(url: str, data_dir: str, ledger: str, every: int, pause: float) -> None:
    """Append until killed; after each commit returns, note its ids in the ledger."""
    engine = make_engine(url)
    config = AuditConfig(Path(data_dir), checkpoint_every=every, syslog_socket="")
    sessions = sessionmaker(engine, info=audit.session_info(config))
    rng = random.Random(os.getpid())

    @event.listens_for(Session, "before_commit")
    def _linger(_session: Session) -> None:  # widen the window between insert and commit
        time.sleep(rng.random() * pause)

    with open(ledger, "a") as out:
        n = 0
        while True:
            ids = [f"{os.getpid()}-{n}-{k}" for k in range(3)]
            with sessions() as session:
                for ident in ids:
                    audit.record(session, "record.view", user="k", meta={"id": ident})
                session.commit()
            out.write("\n".join(ids) + "\n")
            out.flush()
            os.fsync(out.fileno())
            n += 1


@pytest.mark.parametrize("every", [1000, 7])  # without, then with checkpoints in the commit path
def test_sigkill_mid_append_loses_no_committed_event(database_url, engine, config, tmp_path,
                                                     every):
    ledger = tmp_path / "ledger"
    ledger.touch()
    rng = random.Random(every)
    for _ in range(4):
        child = SPAWN.Process(target=_endless_appender,
                              args=(database_url, str(config.data_dir), str(ledger), every, 0.004))
        child.start()
        deadline = time.monotonic() + 60
        while ledger.stat().st_size < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.random() * 0.5)
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode == -signal.SIGKILL
        noted = set(ledger.read_text().split())
        ids = stored_ids(engine)
        assert noted <= set(ids), "a committed event was lost"
        assert len(set(ids) - noted) <= 3  # at most the one commit the ledger had not noted
        assert len(ids) == len(set(ids))
        report = run_verify(engine, config)
        assert report.ok, report.findings


def _checkpoint_then_linger(url: str, data_dir: str, signal_file: str) -> None:
    """Sign a checkpoint but stall between writing the anchor line and committing it."""
    engine = make_engine(url)
    config = AuditConfig(Path(data_dir), syslog_socket="")

    @event.listens_for(Session, "before_commit")
    def _stall(_session: Session) -> None:
        if len(read_anchor(config.anchor_path).checkpoints) == 2:  # the new line is written
            Path(signal_file).write_text("in the window")
            time.sleep(60)

    with Session(engine) as session:
        audit.checkpoint_now(session, config)


def test_sigkill_between_anchor_and_commit(database_url, engine, config, tmp_path):
    """The crash the anchor-first order is designed for: the line outlives the row."""
    add_events(engine, 30)
    with Session(engine) as session:
        audit.checkpoint_now(session, config)
    add_events(engine, 12, start_index=30)
    flag = tmp_path / "flag"
    child = SPAWN.Process(target=_checkpoint_then_linger,
                          args=(database_url, str(config.data_dir), str(flag)))
    child.start()
    deadline = time.monotonic() + 60
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert flag.exists()
    assert [cp.size for _n, cp in read_anchor(config.anchor_path).checkpoints] == [30, 42]
    with Session(engine) as session:
        assert session.scalars(select(Checkpoint.tree_size)).all() == [30]
    assert run_verify(engine, config).ok  # the lone line is checked against the events
    add_events(engine, 3, start_index=42)
    with Session(engine) as session:
        audit.checkpoint_now(session, config)
        assert session.scalars(select(Checkpoint.tree_size)
                               .order_by(Checkpoint.tree_size)).all() == [30, 42, 45]
    assert run_verify(engine, config).ok
