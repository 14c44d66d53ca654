"""Every way an owner of the database (and, where noted, of the files) can edit history,
and the kind and position ``audit verify`` must name for it. Real databases, both backends."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text, update

from audit.chain import canonical_row, entry_hash, leaf_hash
from audit.merkle import root_of
from audit.models import AuditEvent
from audit.signing import Ed25519Signer
from audit.statements import SignedCheckpoint
from audit.verify import (
    ANCHOR_MISMATCH,
    BAD_SIGNATURE,
    DELETED,
    INSERTED,
    MODIFIED,
    REORDERED,
    TRUNCATED,
)
from tests.audit.conftest import rows, sql

COLUMNS = ("ts", "user", "action", "entity", "entity_id", "count", "ip", "meta", "prev_hash",
           "hash")
# 105 events; checkpoints at 25, 50, 75 and 100; events 100..104 not yet covered.
EVENTS, EVERY = 100, 25


@pytest.fixture
def log(filled, attacker):
    filled(EVENTS, EVERY, tail=5)
    return attacker


TABLE = AuditEvent.__table__


def event(engine, seq):
    """A stored row with typed values (SQLite's raw text becomes a datetime)."""
    with engine.connect() as conn:
        return conn.execute(select(TABLE).where(TABLE.c.seq == seq)).first()


def all_events(engine):
    with engine.connect() as conn:
        return list(conn.execute(select(TABLE).order_by(TABLE.c.seq)))


def put(engine, seq, **values):
    with engine.begin() as conn:
        conn.execute(update(TABLE).where(TABLE.c.seq == seq).values(**values))


def shift_up(engine, first, last):
    for seq in range(last, first - 1, -1):  # one row at a time: seq is the primary key
        sql(engine, "UPDATE audit_events SET seq = seq + 1 WHERE seq = :s", s=seq)


def insert(engine, seq, row):
    with engine.begin() as conn:
        conn.execute(TABLE.insert().values(seq=seq, **{c: getattr(row, c) for c in COLUMNS}))


def canonical(row, seq=None, **changes):
    values = {c: getattr(row, c) for c in COLUMNS} | changes
    return canonical_row(row.seq if seq is None else seq, values["ts"], values["user"],
                         values["action"], values["entity"], values["entity_id"],
                         values["count"], values["ip"], values["meta"])


def rechain_from(engine, first, **changes):
    """Rewrite event ``first`` and recompute every later hash: a consistent forgery."""
    prev = event(engine, first).prev_hash
    last = rows(engine, "SELECT max(seq) FROM audit_events")[0][0]
    for seq in range(first, last + 1):
        row = event(engine, seq)
        edits = changes if seq == first else {}
        entry = entry_hash(prev, canonical(row, **edits))
        put(engine, seq, prev_hash=prev, hash=entry, **edits)
        prev = entry


def first_finding(verified):
    report = verified()
    assert not report.ok
    return report.first


def test_an_untouched_log_verifies(log, verified):
    report = verified()
    assert report.ok, report.findings
    assert report.events == 105 and report.checkpoints == 4 and report.anchor_lines == 4
    assert any("triggers are missing" in w for w in report.warnings)
    assert any("event" in w and "not covered" in w for w in report.warnings)


def test_modified_field(log, verified):
    put(log, 40, user="mallory")
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (MODIFIED, 40)


def test_deleted_event(log, verified):
    sql(log, "DELETE FROM audit_events WHERE seq = 40")
    assert (first_finding(verified).kind, first_finding(verified).seq) == (DELETED, 40)


def test_deleted_events_then_renumbered(log, verified):
    sql(log, "DELETE FROM audit_events WHERE seq IN (40, 41)")
    for seq in range(42, 105):
        sql(log, "UPDATE audit_events SET seq = seq - 2 WHERE seq = :s", s=seq)
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (DELETED, 40)


def test_inserted_forgery_with_a_valid_hash(log, verified):
    before = event(log, 49)
    shift_up(log, 50, 104)
    forged = canonical(before, seq=50, user="mallory", action="logout")
    values = {c: getattr(before, c) for c in COLUMNS} | {
        "user": "mallory", "action": "logout", "prev_hash": before.hash,
        "hash": entry_hash(before.hash, forged)}
    insert(log, 50, type("Row", (), values))
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (INSERTED, 50)


def test_inserted_copy_of_an_event(log, verified):
    shift_up(log, 50, 104)
    insert(log, 50, event(log, 20))
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (INSERTED, 50)


def test_inserted_junk(log, verified):
    shift_up(log, 50, 104)
    junk = event(log, 20)
    values = {c: getattr(junk, c) for c in COLUMNS} | {"user": "mallory", "hash": bytes(32)}
    insert(log, 50, type("Row", (), values))
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (INSERTED, 50)


@pytest.mark.parametrize(("a", "b"), [(30, 60), (30, 31)])
def test_swapped_events(log, verified, a, b):
    first, second = event(log, a), event(log, b)
    put(log, a, **{c: getattr(second, c) for c in COLUMNS})
    put(log, b, **{c: getattr(first, c) for c in COLUMNS})
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (REORDERED, a)


def test_truncated_tail(log, verified):
    sql(log, "DELETE FROM audit_events WHERE seq >= 80")
    finding = first_finding(verified)
    assert (finding.kind, finding.seq, finding.checkpoint) == (TRUNCATED, 80, 100)


def test_truncated_tail_and_checkpoints_caught_by_the_anchor(log, verified):
    sql(log, "DELETE FROM audit_events WHERE seq >= 60")
    sql(log, "DELETE FROM audit_checkpoints WHERE tree_size > 50")
    sql(log, "DELETE FROM audit_tree_nodes")
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (TRUNCATED, 60)
    assert "anchor line 4" in finding.detail


def test_everything_truncated(log, verified):
    sql(log, "DELETE FROM audit_events")
    sql(log, "DELETE FROM audit_checkpoints")
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (TRUNCATED, 0)


def test_consistent_rewrite_is_caught_by_the_signed_checkpoints(log, verified):
    rechain_from(log, 60, user="mallory")
    report = verified()
    assert not report.ok
    assert report.first.kind == MODIFIED and 50 <= report.first.seq <= 60
    assert report.first.checkpoint == 75


def test_consistent_rewrite_with_resigned_checkpoints(log, verified, config):
    """The attacker rewrites history, then every checkpoint row, with a key of his own."""
    rechain_from(log, 10, user="mallory")
    all_rows = all_events(log)
    leaves = [leaf_hash(canonical(row)) for row in all_rows]
    forger = Ed25519Signer(Ed25519PrivateKey.generate())
    sql(log, "DELETE FROM audit_checkpoints")
    sql(log, "DELETE FROM audit_tree_nodes")
    for size in (25, 50, 75, 100):
        cp = SignedCheckpoint.sign(forger, size, root_of(leaves[:size]), all_rows[size - 1].hash,
                                   all_rows[size - 1].ts)
        sql(log, "INSERT INTO audit_checkpoints VALUES (:s, :r, :h, :t, :k, :g)", s=size,
            r=cp.root, h=cp.head, t=cp.ts, k=cp.key_id, g=cp.signature)
    report = verified()
    kinds = {f.kind for f in report.findings}
    assert {BAD_SIGNATURE, ANCHOR_MISMATCH, MODIFIED} <= kinds
    modified = next(f for f in report.findings if f.kind == MODIFIED)
    assert modified.seq <= 10 and "anchor line 1" in modified.detail


def test_forged_checkpoint_signature(log, verified):
    (signature,) = rows(log, "SELECT signature FROM audit_checkpoints WHERE tree_size = 50")[0]
    sql(log, "UPDATE audit_checkpoints SET signature = :g WHERE tree_size = 50",
        g=bytes([signature[0] ^ 1]) + signature[1:])
    finding = first_finding(verified)
    assert (finding.kind, finding.checkpoint) == (BAD_SIGNATURE, 50)


def test_checkpoint_root_changed(log, verified):
    sql(log, "UPDATE audit_checkpoints SET root_hash = :r WHERE tree_size = 75", r=bytes(32))
    report = verified()
    assert report.first.kind == BAD_SIGNATURE and report.first.checkpoint == 75
    assert ANCHOR_MISMATCH in {f.kind for f in report.findings}


def test_checkpoint_removed_from_the_database(log, verified):
    sql(log, "DELETE FROM audit_checkpoints WHERE tree_size = 50")
    finding = first_finding(verified)
    assert (finding.kind, finding.checkpoint) == (ANCHOR_MISMATCH, 50)


def test_tree_node_changed(log, verified):
    sql(log, "UPDATE audit_tree_nodes SET hash = :h WHERE level = 4 AND idx = 2", h=bytes(32))
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (MODIFIED, 32)
    assert "tree node" in finding.detail


def test_truncated_anchor(log, verified, config):
    lines = config.anchor_path.read_text().splitlines()
    config.anchor_path.write_text(lines[0] + "\n")
    report = verified()
    assert report.first.kind == ANCHOR_MISMATCH
    assert {f.checkpoint for f in report.findings} == {50, 75, 100}


def test_deleted_anchor(log, verified, config):
    config.anchor_path.unlink()
    assert first_finding(verified).kind == ANCHOR_MISMATCH


def test_replaced_anchor(log, verified, config):
    """A new anchor signed with another key, or lines edited in place."""
    forger = Ed25519Signer(Ed25519PrivateKey.generate())
    lines = []
    for line in config.anchor_path.read_text().splitlines():
        cp = SignedCheckpoint.from_json(json.loads(line))
        lines.append(SignedCheckpoint.sign(forger, cp.size, cp.root, cp.head, cp.ts).line())
    config.anchor_path.write_text("\n".join(lines) + "\n")
    report = verified()
    assert report.first.kind == ANCHOR_MISMATCH
    assert all(f.kind == ANCHOR_MISMATCH for f in report.findings)


def test_anchor_line_edited(log, verified, config):
    lines = config.anchor_path.read_text().splitlines()
    lines[1] = lines[1].replace('"size":50', '"size":49')
    config.anchor_path.write_text("\n".join(lines) + "\n")
    assert first_finding(verified).kind == ANCHOR_MISMATCH


def test_key_replaced_on_disk(log, verified, config):
    """Replacing the public key file does not make old signatures someone else's."""
    forger = Ed25519PrivateKey.generate().public_key()
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    (config.directory / "signing.pub").write_bytes(
        forger.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    report = verified()
    assert {f.kind for f in report.findings} == {BAD_SIGNATURE, ANCHOR_MISMATCH}


def _flips(value):
    """Every single-character change of a text that a database will still store."""
    for i, ch in enumerate(value):
        flipped = chr(ord(ch) ^ 1)
        if flipped != "\x00":
            yield value[:i] + flipped + value[i + 1:]


def test_every_byte_of_an_event_is_protected(log, verified):
    """Flip each byte of each stored field of event 41: each flip is caught, at 41."""
    original = event(log, 41)
    cases = []
    for column in ("hash", "prev_hash"):
        value = getattr(original, column)
        cases += [(column, value[:i] + bytes([value[i] ^ 0x01]) + value[i + 1:])
                  for i in range(32)]
    for column in ("user", "action", "entity", "entity_id", "ip", "meta"):
        cases += [(column, changed) for changed in _flips(getattr(original, column))]
    cases += [("count", original.count ^ (1 << bit)) for bit in range(31)]
    stamp = original.ts
    cases += [("ts", stamp + delta) for delta in (
        timedelta(microseconds=1), timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1),
        timedelta(days=1), timedelta(days=31), timedelta(days=366), -timedelta(microseconds=1))]
    assert len(cases) > 150
    for column, value in cases:
        put(log, 41, **{column: value})
        report = verified()
        assert not report.ok, f"{column} = {value!r} went unnoticed"
        assert (report.first.kind, report.first.seq) == (MODIFIED, 41), (column, value)
        put(log, 41, **{column: getattr(original, column)})
    assert verified().ok


def test_moving_an_event_by_changing_its_seq(log, verified):
    sql(log, "UPDATE audit_events SET seq = 1000 WHERE seq = 40")
    finding = first_finding(verified)
    assert (finding.kind, finding.seq) == (DELETED, 40)


def test_verify_from_a_later_position(log, verified):
    put(log, 10, user="mallory")
    assert verified(start=60).ok
    assert verified(start=5).first.seq == 10
    put(log, 70, user="mallory")
    assert verified(start=60).first.seq == 70


def test_raw_text_edits_in_sqlite(engine, filled, attacker, verified):
    """SQLite keeps types loosely: a stored value of the wrong type is still caught."""
    if engine.dialect.name != "sqlite":
        pytest.skip("only SQLite stores any type in any column")
    filled(40, 20, tail=0)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET count = 'many' WHERE seq = 12"))
    assert (verified().first.kind, verified().first.seq) == (MODIFIED, 12)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET count = 0, ts = 'yesterday' WHERE seq = 12"))
    assert (verified().first.kind, verified().first.seq) == (MODIFIED, 12)

