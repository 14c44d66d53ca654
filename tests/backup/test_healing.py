"""A damaged or missing pack that later archives would share is stored anew from the live data,
and the archives that use it are drilled again."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.kernel.db import make_engine
from backup.jobs import run_backup
from backup.repository import STATUS_FAILED, Repository, pack_name
from backup.restore import restore_archive
from backup.tabledigest import table_digests
from tests.backup.conftest import add_rows
from tests.backup.test_roundtrip import drop_later, new_database_url  # noqa: F401 - a fixture


def _pack(target, archive_id: str) -> Path:
    return sorted((target.root / "archives" / archive_id / "packs").iterdir())[0]


def _digests(url: str) -> dict:
    engine = make_engine(url)
    try:
        return table_digests(engine)
    finally:
        engine.dispose()


def test_a_damaged_shared_pack_is_healed_by_the_next_backup(populated, target, keys, scratch_url, tmp_path,
                                                            drop_later):  # noqa: F811
    first = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    assert first.good
    pack = _pack(target, first.archive_id)
    damaged = bytearray(pack.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    pack.write_bytes(bytes(damaged))
    add_rows(populated, 1000, 5)
    healed = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    name = pack_name(first.archive_id, 0)
    assert healed.good, healed.report
    assert healed.healed == [name]
    assert healed.reverified == {first.archive_id: STATUS_FAILED}
    repo = Repository.open(target, keys)
    assert [r.archive_id for r in repo.good_archives()] == [healed.archive_id]
    assert all(p["archive"] != first.archive_id for p in healed.manifest["packs"])
    url = new_database_url(populated, tmp_path)
    drop_later.append(url)
    restore_archive(repo, healed.archive_id, url)
    assert _digests(url) == _digests(populated)
    again = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    assert again.good and again.healed == []  # healed for good: the next backup reuses the new packs


def test_a_missing_pack_is_stored_anew_in_the_same_run(populated, target, keys, scratch_url, tmp_path):
    first = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    _pack(target, first.archive_id).unlink()
    healed = run_backup(target, keys, populated, scratch_url=scratch_url, workdir=tmp_path)
    assert healed.good and healed.healed == [pack_name(first.archive_id, 0)]
    repo = Repository.open(target, keys)
    assert len(repo.archive_ids()) == 2  # no failed attempt first: the listing showed the pack gone
    assert healed.reverified == {first.archive_id: STATUS_FAILED}


def test_data_that_comes_back_dedups_against_older_archives(populated, target, keys, data_dir, scratch_url,
                                                            tmp_path):
    """Deduplication uses every live archive, not only the newest."""
    from tests.backup.conftest import FILES

    contract = data_dir / "attachments" / "2026" / "contract.pdf"
    kept = os.urandom(9 << 20)  # spans whole packs of its own (packs are ~4 MiB)
    contract.write_bytes(kept)

    def backup():
        outcome = run_backup(target, keys, populated, data_dir=data_dir, files=FILES, scratch_url=scratch_url,
                             workdir=tmp_path)
        assert outcome.good, outcome.report
        return outcome.manifest["stats"]

    backup()
    contract.unlink()
    backup()
    contract.write_bytes(kept)  # the file is back, as it was in the first archive
    assert backup()["bytes_new"] < 1 << 20


def test_a_repository_keeping_one_archive_stays_near_the_live_size(target, keys, tmp_path):
    """Packs mostly holding dead chunks are not reused, so prune can reclaim them."""
    import random
    from datetime import timedelta

    from sqlalchemy import update

    from backup.retention import Policy, prune
    from backup.targets.local import LocalTarget
    from tests.backup.conftest import accounts

    url = f"sqlite:///{tmp_path / 'live.db'}"
    add_rows(url, 1, 400, blob_bytes=3000)  # incompressible, like encrypted columns
    rng = random.Random(7)
    for _ in range(8):
        assert run_backup(target, keys, url, workdir=tmp_path).good
        prune(Repository.open(target, keys), Policy(daily=0, weekly=0, monthly=0, last=1), grace=timedelta(0))
        engine = make_engine(url)
        with engine.begin() as conn:  # 10% of the rows change
            for i in rng.sample(range(1, 401), 40):
                conn.execute(update(accounts).where(accounts.c.id == i).values(photo=os.urandom(3000)))
        engine.dispose()
    fresh = LocalTarget(tmp_path / "fresh")
    assert run_backup(fresh, keys, url, workdir=tmp_path).good

    def stored(root: Path) -> int:
        return sum(p.stat().st_size for p in (root / "archives").rglob("*") if p.is_file())

    assert stored(target.root) < 1.4 * stored(fresh.root)
