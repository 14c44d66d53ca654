"""Back up, drill and restore on SQLite and PostgreSQL; dedup; refusals."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from appliance.kernel.db import make_engine
from backup.archive import ArchiveReader
from backup.errors import RestoreRefused
from backup.jobs import run_backup
from backup.repository import Repository
from backup.restore import restore_archive
from backup.tabledigest import table_digests
from tests.backup.conftest import FILES, accounts, add_rows


def new_database_url(database_url: str, tmp_path: Path) -> str:
    """A fresh, not yet existing database on the same backend."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{tmp_path / f'restored-{uuid.uuid4().hex[:6]}.db'}"
    return url.set(database=f"citadel_r_{uuid.uuid4().hex[:10]}").render_as_string(False)


@pytest.fixture
def drop_later():
    urls: list[str] = []
    yield urls
    for url in urls:
        if make_url(url).get_backend_name() == "postgresql":
            admin = make_engine(
                make_url(url).set(database="postgres").render_as_string(False),
                isolation_level="AUTOCOMMIT",
            )
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
            admin.dispose()


def test_backup_is_drilled_and_restores_into_a_new_database(
    populated, target, keys, data_dir, scratch_url, tmp_path, drop_later
):
    outcome = run_backup(
        target,
        keys,
        populated,
        data_dir=data_dir,
        files=FILES,
        scratch_url=scratch_url,
        workdir=tmp_path,
    )
    assert outcome.good, outcome.report
    assert outcome.report["tables"]["bk_accounts"] == {
        "rows": 200,
        "expected_rows": 200,
        "ok": True,
        "sha256": outcome.report["source_tables"]["bk_accounts"]["sha256"],
    }
    assert outcome.report["files"] == 5

    restored_url = new_database_url(populated, tmp_path)
    drop_later.append(restored_url)
    repo = Repository.open(target, keys)
    result = restore_archive(repo, outcome.archive_id, restored_url, files_dir=tmp_path / "out")
    assert result.seconds > 0
    source, restored = make_engine(populated), make_engine(restored_url)
    try:
        assert table_digests(restored) == table_digests(source)
        with restored.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(accounts)) == 200
    finally:
        source.dispose()
        restored.dispose()
    for rel in (
        "attachments/2026/contract.pdf",
        "attachments/notes.txt",
        "citadel.toml",
        "keys/field.wrapped",
    ):
        assert (tmp_path / "out" / rel).read_bytes() == (data_dir / rel).read_bytes()
    assert (tmp_path / "out" / "keys/field.wrapped").stat().st_mode & 0o777 == 0o600
    # Nothing on the medium names a table, a file or a row in the clear.
    for name in target.list():
        raw = target.get(name)
        for secret in (b"bk_accounts", b"contract.pdf", b"field.wrapped", b"Zurich", "Zürich".encode()):
            assert secret not in raw, (name, secret)


def test_second_backup_stores_only_changed_chunks(populated, target, keys, scratch_url, tmp_path):
    add_rows(populated, 1000, 3000, blob_bytes=200)
    first = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    engine = make_engine(populated)
    with engine.begin() as conn:
        conn.execute(accounts.update().where(accounts.c.id == 2500).values(notes="changed"))
    engine.dispose()
    second = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    assert first.good and second.good
    assert second.manifest["parent"] == first.archive_id
    stats = second.manifest["stats"]
    assert stats["bytes_new"] < stats["bytes_in"] / 3
    assert second.report["tables"]["bk_accounts"]["sha256"] != first.report["tables"]["bk_accounts"]["sha256"]
    shared = {(p["archive"], p["seq"]) for p in second.manifest["packs"]} & {
        (p["archive"], p["seq"]) for p in first.manifest["packs"]
    }
    assert shared


def test_restore_refuses_a_non_empty_database_unless_forced(populated, target, keys, scratch_url, tmp_path):
    outcome = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    repo = Repository.open(target, keys)
    with pytest.raises(RestoreRefused):
        restore_archive(repo, outcome.archive_id, populated)
    add_rows(populated, 5000, 10)
    restore_archive(repo, outcome.archive_id, populated, force=True)
    engine = make_engine(populated)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(accounts)) == 200
    engine.dispose()


def test_a_failing_extra_check_fails_the_drill(populated, target, keys, scratch_url, tmp_path):
    seen = []

    def schema_is_current(ctx):
        seen.append(ctx.archive_id)
        with ctx.engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(accounts)) == 200

    def audit_chain(_ctx):
        return False, "event 3 does not chain"

    outcome = run_backup(
        target,
        keys,
        populated,
        scratch_url=scratch_url,
        workdir=tmp_path,
        checks=[schema_is_current, ("audit-chain", audit_chain)],
    )
    assert seen == [outcome.archive_id]
    assert not outcome.good
    assert outcome.report["checks"] == [
        {"name": "schema_is_current", "ok": True, "detail": ""},
        {"name": "audit-chain", "ok": False, "detail": "event 3 does not chain"},
    ]
    repo = Repository.open(target, keys)
    assert repo.good_archives() == []
    assert [r.status for r in repo.catalogue()[0]] == ["failed"]


def test_reader_reports_every_pack_and_chunk(populated, target, keys, scratch_url, tmp_path):
    outcome = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    reader = ArchiveReader(Repository.open(target, keys), outcome.archive_id)
    reader.check_all_packs()
    assert reader.stats.packs == len(outcome.manifest["packs"])
    assert reader.stats.chunks == sum(p["chunks"] for p in outcome.manifest["packs"])
    assert outcome.report["packs"] == reader.stats.packs
    assert os.path.exists(target.root / "config")


def test_snapshot_is_consistent_while_the_database_is_written(populated, target, keys, scratch_url, tmp_path):
    """Rows committed during the backup are either wholly in the snapshot or not at all."""
    import threading

    from tests.backup.conftest import events

    add_rows(populated, 1000, 3000, blob_bytes=300)
    stop = threading.Event()
    engine = make_engine(populated)
    written = []

    def write():
        n = 0
        while not stop.is_set():
            with engine.begin() as conn:
                conn.execute(events.insert(), [{"kind": "live", "payload": str(n)}] * 20)
                conn.execute(accounts.update().where(accounts.c.id == 1).values(notes=str(n)))
            n += 1
        written.append(n)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        outcome = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    finally:
        stop.set()
        writer.join()
        engine.dispose()
    assert written[0] > 0
    assert outcome.good, outcome.report
    events_rows = outcome.report["source_tables"]["bk_events"]["rows"]
    assert (events_rows - 3200) % 20 == 0  # whole transactions only


def test_later_drills_compare_with_the_source_digests_of_the_first(populated, target, keys, scratch_url, tmp_path):
    from backup.verify import report_is_authentic, run_drill

    outcome = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    assert outcome.report["tables_compared"] and report_is_authentic(keys, outcome.report)
    repo = Repository.open(target, keys)
    source = outcome.report["source_tables"]
    again = run_drill(repo, outcome.archive_id, scratch_url=scratch_url, source_tables=source)
    assert again["ok"] and again["tables_compared"]
    forged = {**source, "bk_accounts": {"rows": 199, "sha256": "0" * 64}}
    wrong = run_drill(repo, outcome.archive_id, scratch_url=scratch_url, source_tables=forged)
    if outcome.manifest["database"]["tables"] is None:  # SQLite: the expectation comes from outside
        assert not wrong["ok"]
        assert wrong["tables"]["bk_accounts"] == {
            "rows": 200,
            "expected_rows": 199,
            "sha256": source["bk_accounts"]["sha256"],
            "ok": False,
        }
    else:  # PostgreSQL: the signed manifest's digests win
        assert wrong["ok"]
    tampered = dict(outcome.report, ok=True, error="none")
    assert not report_is_authentic(keys, tampered)


def test_archives_from_before_a_key_rotation_stay_readable(target, keys, tmp_path):
    from backup.keys import BackupKeys

    url = f"sqlite:///{tmp_path / 'rot.db'}"
    add_rows(url, 1, 100)
    old = run_backup(target, keys, url, workdir=tmp_path)
    fresh = BackupKeys.generate(key_version=2)
    rotated = BackupKeys(
        fresh.data_key,
        2,
        fresh.verify_key,
        fresh.signing_key,
        previous={1: keys.data_key},
        verify_keys={1: keys.verify_key},
    )
    new = run_backup(target, rotated, url, workdir=tmp_path)
    assert old.good and new.good
    assert not {p["archive"] for p in new.manifest["packs"]} & {old.archive_id}  # no dedup across keys
    repo = Repository.open(target, rotated)
    assert [r.archive_id for r in repo.good_archives()] == [old.archive_id, new.archive_id]
    restore_archive(repo, old.archive_id, f"sqlite:///{tmp_path / 'old.db'}")
    forgetful = BackupKeys(fresh.data_key, 2, fresh.verify_key, fresh.signing_key)
    with pytest.raises(Exception, match="key"):
        Repository.open(target, forgetful)  # the config was signed with version 1
