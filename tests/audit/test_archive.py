"""Archiving: old events move into sealed segments and stay verifiable and provable."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import zstandard
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import audit
from audit.archive import archive_before
from audit.errors import ArchiveError
from audit.events import EventFilter, iter_events
from audit.evidence import consistency, prove
from audit.guard import sealed_removal
from audit.merkle import verify_inclusion
from audit.models import AuditEvent, Segment
from audit.segments import SegmentReader
from audit.verify import BAD_SEGMENT, DELETED, INSERTED, MODIFIED
from tests.audit.conftest import T0, add_events, sql


@pytest.fixture
def archived(engine, config, filled):
    """300 events (checkpoints every 50, 7 uncovered), those before minute 200 archived."""
    filled(300, 50, tail=7)
    with Session(engine) as session:
        done = archive_before(session, config, T0 + timedelta(minutes=200), max_events=64)
    return done


def live_seqs(engine):
    with Session(engine) as session:
        return session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()


def test_archive_seals_whole_blocks_and_removes_only_them(archived, engine, config):
    # Minute 200 is event 200; whole blocks of 16 end the last segment at 192.
    assert [(a.first, a.end) for a in archived] == [(0, 64), (64, 128), (128, 192)]
    assert live_seqs(engine) == list(range(192, 307))
    for segment in archived:
        with SegmentReader(config.archive_dir / segment.path.split("/")[-1]) as reader:
            assert [seq for seq, *_ in reader.events()] == list(range(segment.first, segment.end))
            assert reader.checkpoint.size >= segment.end


def test_history_still_verifies_proves_and_exports(archived, engine, config, verified):
    report = verified()
    assert report.ok, report.findings
    assert (report.events, report.archived_events, report.segments) == (307, 192, 3)
    with Session(engine) as session:
        audit.checkpoint_now(session, config)
        for seq in (0, 63, 64, 191, 192, 306):
            proof = prove(session, config, seq)
            assert verify_inclusion(seq, proof["tree_size"], bytes.fromhex(proof["leaf_hash"]),
                                    [bytes.fromhex(p) for p in proof["proof"]],
                                    bytes.fromhex(proof["checkpoint"]["root"]))
        assert consistency(session, config, 50, 307)["valid"]
        exported = [e.seq for e in iter_events(session, config)]
        users = {e.public["user"] for e in iter_events(session, config, EventFilter(user="user1"))}
    assert exported == list(range(307))
    assert users == {"user1"}


def test_the_log_continues_after_archiving(archived, engine, config, verified):
    add_events(engine, 20, start_index=307)
    with Session(engine) as session:
        audit.checkpoint_now(session, config)
        assert archive_before(session, config, T0 + timedelta(days=30)) != []
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 327 - 320
    add_events(engine, 3, start_index=327)
    assert live_seqs(engine)[0] == 320 and verified().ok


def test_everything_archived_then_new_events(engine, config, filled, verified):
    filled(64, 32, tail=0)
    with Session(engine) as session:
        archive_before(session, config, T0 + timedelta(days=30))
    assert live_seqs(engine) == []
    add_events(engine, 3, start_index=64)
    assert live_seqs(engine) == [64, 65, 66] and verified().ok


def test_nothing_uncheckpointed_is_archived(engine, config):
    add_events(engine, 50)
    with Session(engine) as session:
        assert archive_before(session, config, T0 + timedelta(days=30)) == []
    with pytest.raises(ArchiveError), Session(engine) as session:
        archive_before(session, config, T0 + timedelta(days=30), max_events=8)


def test_database_refuses_deleting_unsealed_events(archived, engine):
    with Session(engine) as session, sealed_removal(session):
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text("DELETE FROM audit_events WHERE seq = 250"))
        session.rollback()
    assert 250 in live_seqs(engine)


def test_missing_segment_file(archived, config, verified):
    (config.archive_dir / archived[1].path.split("/")[-1]).unlink()
    report = verified()
    assert (report.first.kind, report.first.seq) == (DELETED, 64)


def test_edited_segment_file(archived, config, verified):
    path = config.archive_dir / archived[2].path.split("/")[-1]
    raw = zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=1 << 26)
    edited = raw.replace(b'"user":"user3"', b'"user":"userX"', 1)
    assert edited != raw
    path.write_bytes(zstandard.ZstdCompressor().compress(edited))
    assert verified().first.kind == BAD_SEGMENT


def test_edited_stub(archived, attacker, verified):
    sql(attacker, "UPDATE audit_segments SET end_seq = 120 WHERE first_seq = 64")
    report = verified()
    assert (report.first.kind, report.first.seq) == (BAD_SEGMENT, 64)


def test_deleted_stub(archived, attacker, verified):
    sql(attacker, "DELETE FROM audit_segments WHERE first_seq = 0")
    report = verified()
    assert (report.first.kind, report.first.seq) == (DELETED, 0)


def test_events_slipped_back_into_the_archived_range(archived, attacker, verified):
    with attacker.connect() as conn:
        row = conn.execute(select(AuditEvent.__table__).where(AuditEvent.seq == 250)).first()
    values = dict(row._mapping) | {"seq": 10}
    with attacker.begin() as conn:
        conn.execute(AuditEvent.__table__.insert().values(**values))
    report = verified()
    assert (report.first.kind, report.first.seq) == (INSERTED, 10)


def test_segment_event_lines_are_checked_one_by_one(archived, config, verified):
    """A re-signed-looking file is still replayed event by event."""
    path = config.archive_dir / archived[0].path.split("/")[-1]
    raw = zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=1 << 26)
    header, *lines = raw.split(b"\n")
    lines[5] = lines[5].replace(b'"count":1', b'"count":9')
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join([header, *lines])))
    report = verified()
    assert not report.ok and report.first.seq <= 5
    assert report.first.kind in (BAD_SEGMENT, MODIFIED)


def test_stub_and_file_agree(archived, engine, config):
    with Session(engine) as session:
        stubs = session.scalars(select(Segment).order_by(Segment.first_seq)).all()
    for stub in stubs:
        with SegmentReader(config.archive_dir / stub.file_name) as reader:
            assert reader.header["first"] == stub.first_seq
            assert reader.header["end"] == stub.end_seq
            assert json.loads(json.dumps(reader.header["checkpoint"]))["size"] == \
                stub.checkpoint_size

