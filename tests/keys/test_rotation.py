"""Rotation: a new version, everything rewritten online, resumable after SIGKILL, nothing lost."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance.keys import attachments, blind, files, write_encrypted
from appliance.keys import fields as fieldcrypt
from appliance.keys.errors import RotationError
from appliance.keys.keyring import file_lock
from appliance.keys.rotation import Rotation, pending_rotation, rotate
from tests.keys.models import Client, Contact

ROWS = 45


def seed(engine, rows: int = ROWS) -> dict:
    expected = {}
    with Session(engine) as session:
        for i in range(rows):
            client = Client(name=f"client {i:03}", email=f"person{i}@example.com",
                            phone=f"+33 1 {i:04}", notes=f"note {i}" if i % 3 else None,
                            amount=Decimal(i) / 4)
            session.add(client)
            session.add(Contact(email=f"contact{i}@example.com", body=f"body {i}"))
            expected[client.id] = (client.email, client.phone, client.notes, client.amount)
        session.commit()
    return expected


def versions_in(engine, column: str, table=Client.__table__) -> set[int]:
    with engine.connect() as conn:
        values = conn.execute(select(table.c[column]).where(table.c[column].is_not(None))).scalars()
        if column.endswith("_bidx"):
            return {blind.index_version(v) for v in values}
        return {fieldcrypt.stored_version(v) for v in values}


def assert_intact(engine, expected: dict) -> None:
    with Session(engine) as session:
        for client in session.scalars(select(Client)):
            assert (client.email, client.phone, client.notes, client.amount) == expected[client.id]


def updated_stamps(engine) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(Client.id, Client.updated_at)).all())


def test_rotating_fields_rewrites_every_value_and_keeps_timestamps(keyring, tables):
    expected = seed(tables)
    stamps = updated_stamps(tables)
    batches = []
    result = rotate(tables, keyring, "fields", batch_size=10, on_batch=batches.append)
    assert result.version == 2 and not result.resumed and result.leftovers == 0
    assert result.rewritten == ROWS * 2  # rows: every client and every contact
    for column in ("email", "phone", "notes", "amount"):
        assert versions_in(tables, column) == {2}
    assert versions_in(tables, "email", Contact.__table__) == {2}
    assert versions_in(tables, "email_bidx") == {1}  # the blind index key did not change
    assert_intact(tables, expected)
    assert updated_stamps(tables) == stamps
    assert keyring.version_info("fields")[1]["state"] == "retired"
    assert pending_rotation(keyring.data_dir, "fields") is None
    assert sum(batches) >= ROWS * 2


def test_rotating_blind_indexes_keeps_search_working(keyring, tables):
    seed(tables)
    rotate(tables, keyring, "blind_index", batch_size=7)
    assert versions_in(tables, "email_bidx") == {2}
    assert versions_in(tables, "phone_bidx") == {2}
    assert versions_in(tables, "email") == {1}
    with Session(tables) as session:
        query = select(Client.name).where(Client.email.matches("PERSON7@example.com"))
        assert session.scalars(query).all() == ["client 007"]


def test_search_finds_old_and_new_indexes_during_a_rotation(keyring, tables):
    seed(tables, rows=3)
    keyring.add_version("blind_index")  # as if a rotation had just begun
    with Session(tables) as session:
        session.add(Client(name="new", email="person1@example.com"))
        session.commit()
        query = select(Client.name).where(Client.email.matches("person1@example.com"))
        assert sorted(session.scalars(query)) == ["client 001", "new"]


def test_concurrent_edits_win_and_stale_writes_are_swept(keyring, tables):
    expected = seed(tables)
    ids = sorted(expected)
    late, stale = ids[-1], ids[-2]

    def meanwhile(_n: int) -> None:
        if meanwhile.done:
            return
        meanwhile.done = True
        with Session(tables) as session:  # an edit through the app, already on the new version
            session.get(Client, late).email = "edited@example.com"
            session.commit()
        old = fieldcrypt.encrypt_bytes("keytest_clients", "email", stale,
                                       b"stale@example.com", version=1)
        with tables.begin() as conn:  # a process still on the old version writes after the scan
            conn.execute(update(Client.__table__).where(Client.__table__.c.id == stale)
                         .values(email=old))
    meanwhile.done = False

    rotation = Rotation(tables, keyring, "fields", batch_size=40, on_batch=meanwhile)
    rotation.progress = {}
    result = rotation.run()
    assert result.leftovers == 0
    assert versions_in(tables, "email") == {2}
    with Session(tables) as session:
        assert session.get(Client, late).email == "edited@example.com"
        assert session.get(Client, stale).email == "stale@example.com"


def test_only_one_rotation_of_a_purpose_runs_at_a_time(keyring, tables):
    with file_lock(keyring.data_dir, "rotate-fields") as got:
        assert got
        with pytest.raises(RotationError, match="another rotation"):
            rotate(tables, keyring, "fields")


def test_signing_purposes_just_get_a_new_version(keyring, tables):
    before = keyring.backup_keys()
    result = rotate(tables, keyring, "backups")
    after = keyring.backup_keys()
    assert result.version == 2 and after.key_version == 2
    assert after.previous == {1: before.data_key}
    assert set(keyring.public_keys("backups")) == {1, 2}
    rotate(tables, keyring, "audit_signing")
    assert keyring.audit_signing_key().version == 2


def test_attachments_registered_by_a_package_are_rewritten(keyring, tables, tmp_path,
                                                           monkeypatch):
    stored = []
    for i in range(3):
        path = tmp_path / f"{i}.enc"
        write_encrypted(path, f"file-{i}", io.BytesIO(b"attachment %d" % i))
        stored.append((path, f"file-{i}"))
    monkeypatch.setattr(attachments, "SOURCES", [])
    attachments.register_attachment_source(lambda _engine: stored)
    result = rotate(tables, keyring, "attachments")
    assert result.rewritten == 3
    assert {attachments.file_version(p) for p, _ in stored} == {2}
    assert attachments.read_decrypted(stored[1][0], "file-1") == b"attachment 1"


CHILD = """
import os, signal, sys
from pathlib import Path
from appliance.kernel.db import make_engine
from appliance.keys import state
from appliance.keys.rotation import rotate
import tests.keys.models  # registers the encrypted fields

data_dir, url, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
keyring = state.sync(data_dir)
assert keyring is not None, "the child must find the key in the kernel keyring"
batches = 0

def on_batch(_rows):
    global batches
    batches += 1
    if batches == kill_at:  # committed, progress not yet saved: the worst moment
        os.kill(os.getpid(), signal.SIGKILL)

rotate(make_engine(url), keyring, "fields", batch_size=10, on_batch=on_batch)
"""


def test_a_rotation_killed_halfway_resumes_and_loses_nothing(keyring, tables, database_url):
    expected = seed(tables)
    child = subprocess.run([sys.executable, "-c", CHILD, str(keyring.data_dir), database_url, "4"],
                           cwd=Path(__file__).parents[2], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    progress = json.loads(files.rotation_path(keyring.data_dir, "fields").read_text())
    assert progress["to_version"] == 2 and progress["phase"] == "rewrite"
    assert versions_in(tables, "email") == {1, 2}  # half done
    assert_intact(tables, expected)  # readable mid-way: old and new versions both open

    result = rotate(tables, keyring, "fields", batch_size=10)
    assert result.resumed and result.version == 2
    assert keyring.versions("fields") == [1, 2]  # the resumed run made no third version
    for column in ("email", "phone", "notes", "amount"):
        assert versions_in(tables, column) == {2}
    assert versions_in(tables, "email", Contact.__table__) == {2}
    assert_intact(tables, expected)
    assert pending_rotation(keyring.data_dir, "fields") is None


def test_a_crash_before_the_new_version_exists_does_not_make_two(keyring, tables):
    seed(tables, rows=5)
    files.write_json(files.rotation_path(keyring.data_dir, "fields"),
                     {"purpose": "fields", "to_version": 2, "started": "x", "phase": "rewrite",
                      "tables": {}})
    result = rotate(tables, keyring, "fields")
    assert result.resumed and keyring.versions("fields") == [1, 2]
    assert versions_in(tables, "email") == {2}


def test_a_progress_file_that_disagrees_with_the_keyring_stops(keyring, tables):
    keyring.add_version("fields")
    keyring.add_version("fields")
    files.write_json(files.rotation_path(keyring.data_dir, "fields"),
                     {"purpose": "fields", "to_version": 2, "started": "x", "phase": "rewrite",
                      "tables": {}})
    with pytest.raises(RotationError, match="targets version 2"):
        rotate(tables, keyring, "fields")


def test_other_processes_pick_up_a_new_version(keyring, tables, box):
    from appliance.keys import state

    assert state.sync(box.data_dir) is keyring
    other = type(keyring).open(box.data_dir, keyring._master)  # another process's view
    other.add_version("fields")
    assert keyring.changed_on_disk()
    assert state.sync(box.data_dir).current_version("fields") == 2
