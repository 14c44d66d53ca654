"""Signed checkpoints: when they are made, what they sign, and where copies go."""

from __future__ import annotations

import json
import os
import socket
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import audit
from audit.anchor import read_anchor
from audit.config import AuditConfig
from audit.errors import AuditError, AuditTampered
from audit.merkle import Tree
from audit.models import Checkpoint, TreeNode
from audit.signing import (
    Ed25519Signer,
    FileKeyProvider,
    key_id_of,
    register_provider,
    trusted_keys,
)
from audit.statements import SignedCheckpoint
from audit.store import DbSource, checkpoints
from tests.audit.conftest import T0, add_events, drop_guards, run_verify, sql


def test_checkpoint_signs_root_and_head_and_writes_the_anchor(engine, config):
    with Session(engine) as session:
        assert audit.checkpoint_now(session, config) is None  # empty log: nothing to sign
    add_events(engine, 40)
    with Session(engine) as session:
        result = audit.checkpoint_now(session, config)
        assert result is not None and result.syslog_error is not None  # syslog is off here
        cp = result.checkpoint
        assert audit.checkpoint_now(session, config) is None  # nothing new
        assert cp.size == 40
        assert cp.root == Tree(DbSource(session, config)).root(40)
        assert checkpoints(session) == [cp]
        assert session.scalar(select(func.count()).select_from(TreeNode)) == 40 // 16
    assert cp.verify(trusted_keys(config))
    anchor = read_anchor(config.anchor_path)
    assert [c for _n, c in anchor.checkpoints] == [cp] and not anchor.unreadable
    assert json.loads(config.anchor_path.read_text())["sig"]


def test_key_files_are_created_once_and_private(engine, config):
    add_events(engine, 3)
    with Session(engine) as session:
        first = audit.checkpoint_now(session, config).checkpoint
    key, public = config.directory / "signing.key", config.directory / "signing.pub"
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert os.stat(public).st_mode & 0o777 == 0o644
    add_events(engine, 3)
    with Session(engine) as session:
        second = audit.checkpoint_now(session, config).checkpoint
    assert first.key_id == second.key_id == FileKeyProvider(config.directory).signer().key_id


def test_checkpoint_line_reaches_syslog(engine, tmp_path):
    path = str(tmp_path / "log.sock")
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(5)
    config = AuditConfig(tmp_path / "data", syslog_socket=path)
    add_events(engine, 5)
    try:
        with Session(engine) as session:
            result = audit.checkpoint_now(session, config)
        message = receiver.recv(65536).decode()
    finally:
        receiver.close()
    assert result.syslog_error is None
    assert message.startswith("<109>1 ")  # facility log audit (13), severity notice (5)
    assert " citadel-audit " in message and " checkpoint [citadel@32473 size=\"5\" " in message
    assert message.endswith(result.checkpoint.line())


def test_unreachable_syslog_never_blocks_a_checkpoint(engine, tmp_path):
    config = AuditConfig(tmp_path / "data", syslog_socket=str(tmp_path / "nobody-listens"))
    add_events(engine, 5)
    with Session(engine) as session:
        result = audit.checkpoint_now(session, config)
    assert "unreachable" in result.syslog_error
    assert read_anchor(config.anchor_path).checkpoints


def test_maybe_checkpoint_by_count_and_by_age(engine, tmp_path):
    config = AuditConfig(tmp_path / "data", checkpoint_every=10, checkpoint_seconds=60,
                         syslog_socket="")
    add_events(engine, 4)  # events at T0 + i minutes
    newest = T0 + timedelta(minutes=3)
    with Session(engine) as session:
        assert audit.maybe_checkpoint(session, config, now=T0 + timedelta(seconds=59)) is None
        by_age = audit.maybe_checkpoint(session, config, now=T0 + timedelta(seconds=60))
        assert by_age.checkpoint.size == 4
        assert audit.maybe_checkpoint(session, config, now=newest + timedelta(days=1)) is None
    add_events(engine, 9, start_index=100)  # T0 + 100.. minutes: young relative to `now`
    with Session(engine) as session:
        assert audit.maybe_checkpoint(session, config, now=T0 + timedelta(minutes=100)) is None
    add_events(engine, 1, start_index=109)
    with Session(engine) as session:
        by_count = audit.maybe_checkpoint(session, config, now=T0 + timedelta(minutes=100))
    assert by_count.checkpoint.size == 14


def test_commits_crossing_a_multiple_sign_a_checkpoint(engine, tmp_path):
    config = AuditConfig(tmp_path / "data", checkpoint_every=10, syslog_socket="")
    sessions = sessionmaker(engine, info=audit.session_info(config))
    with sessions() as session:
        for i in range(25):
            audit.record(session, "record.view", user="alice", meta={"i": i})
            if i % 3 == 2:
                session.commit()
        session.commit()
        sizes = [cp.size for cp in checkpoints(session)]
    assert sizes == [12, 21]  # the commits that carried the log past 10 and 20


def test_a_session_with_pending_work_is_refused(engine, config):
    with Session(engine) as session:
        audit.record(session, "login", user="alice")
        with pytest.raises(AuditError, match="pending"):
            audit.checkpoint_now(session, config)
        session.commit()


def test_nothing_unverified_is_signed(engine, config):
    add_events(engine, 20)
    with Session(engine) as session:
        audit.checkpoint_now(session, config)
    add_events(engine, 10, start_index=20)
    drop_guards(engine)
    sql(engine, "UPDATE audit_events SET \"user\" = 'mallory' WHERE seq = 25")
    with Session(engine) as session, pytest.raises(AuditTampered, match="event 25"):
        audit.checkpoint_now(session, config)
    assert len(read_anchor(config.anchor_path).checkpoints) == 1


def test_a_line_the_database_lost_in_a_crash_is_verified_then_recovered(engine, config):
    """The anchor line is written before the commit; a crash between leaves it alone."""
    add_events(engine, 20)
    with Session(engine) as session:
        audit.checkpoint_now(session, config)
    add_events(engine, 13, start_index=20)
    with Session(engine) as session:
        tree = Tree(DbSource(session, config))
        head = session.scalar(select(func.max(Checkpoint.tree_size)))
        assert head == 20
        from audit.store import live_rows

        last = live_rows(session, 32, 32)[0]
        orphan = SignedCheckpoint.sign(FileKeyProvider(config.directory).signer(), 33,
                                       tree.root(33), last.hash, T0)
    from audit.anchor import append_line

    append_line(config.anchor_path, orphan.line())
    assert run_verify(engine, config).ok  # the orphan is checked against the events
    add_events(engine, 2, start_index=33)
    with Session(engine) as session:
        result = audit.checkpoint_now(session, config)
        assert [cp.size for cp in checkpoints(session)] == [20, 33, 35]
        assert checkpoints(session)[1] == orphan
    assert result.checkpoint.size == 35
    assert run_verify(engine, config).ok


def test_another_key_provider_can_sign(engine, tmp_path):
    class MemoryProvider:
        """Stands for the appliance keyring: a key held in memory."""

        signer_ = Ed25519Signer(Ed25519PrivateKey.generate())

        def signer(self):
            return self.signer_

        def public_keys(self):
            return {self.signer_.key_id: self.signer_.public_key}

    register_provider("memory-test", lambda _config: MemoryProvider())
    config = AuditConfig(tmp_path / "data", signer="memory-test", syslog_socket="")
    add_events(engine, 5)
    with Session(engine) as session:
        cp = audit.checkpoint_now(session, config).checkpoint
    assert cp.key_id == key_id_of(MemoryProvider.signer_.public_key)
    assert not (config.directory / "signing.key").exists()
    assert run_verify(engine, config).ok


def test_unknown_provider_is_a_clear_error(engine, tmp_path):
    config = AuditConfig(tmp_path / "data", signer="nope", syslog_socket="")
    add_events(engine, 1)
    with Session(engine) as session, pytest.raises(AuditError, match="signer = 'nope'"):
        audit.checkpoint_now(session, config)


def test_settings_are_validated(tmp_path):
    from appliance.kernel.config import Settings
    from appliance.kernel.errors import ConfigError

    good = Settings(tmp_path, {"audit": {"checkpoint_every": 50, "checkpoint_seconds": 30}})
    config = AuditConfig.from_settings(good)
    assert (config.checkpoint_every, config.checkpoint_seconds) == (50, 30.0)
    assert config.anchor_path == tmp_path / "audit" / "anchor.log"
    for bad in ({"checkpoint_every": 0}, {"checkpoint_seconds": "soon"}):
        with pytest.raises(ConfigError):
            AuditConfig.from_settings(Settings(tmp_path, {"audit": bad}))
