"""Every change an attacker with the backup medium can make is caught.

Flipped bits anywhere, dropped, duplicated and reordered packs or chunks,
wrong keys, truncated and interrupted uploads, a full target, a backup killed
halfway: each is detected, none is listed as good, and the previous good
archive still restores.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import zstandard

from backup.archive import ArchiveReader, ArchiveWriter, decode_pack, encode_pack
from backup.envelope import KIND_PACK, seal, unseal
from backup.errors import ArchiveDamaged, ArchiveNotFound, TargetFull, WrongKey
from backup.jobs import run_backup
from backup.keys import BackupKeys
from backup.repository import STATUS_VERIFIED, Repository, pack_name
from backup.restore import restore_archive
from backup.retention import Policy, prune
from backup.targets.local import LocalTarget
from tests.backup.conftest import add_rows


def restorable(target: LocalTarget, keys: BackupKeys, archive_id: str) -> bool:
    """Listed as good, and every byte reads back authenticated."""
    try:
        repo = Repository.open(target, keys)
        if archive_id not in [r.archive_id for r in repo.good_archives()]:
            return False
        reader = ArchiveReader(repo, archive_id)
        for entry in reader.files():
            for _ in reader.iter_file(entry):
                pass
        reader.check_all_packs()
        return True
    except (ArchiveDamaged, WrongKey, ArchiveNotFound):
        return False


def small_archive(target: LocalTarget, keys: BackupKeys, *, size: int = 3000, pack_target: int = 1 << 20) -> str:
    repo = Repository.open(target, keys, create=True)
    writer = ArchiveWriter(repo, pack_target=pack_target)
    data = os.urandom(size // 2) + b"citadel " * (size // 16)
    writer.add_stream("database/citadel.db", "database", io.BytesIO(data), writer.page_chunker(512))
    writer.add_stream("files/a.txt", "file", io.BytesIO(b"attachment\n" * 50), writer.content_chunker())
    manifest = writer.finish({"database": {"backend": "sqlite", "tables": {}}})
    repo.record(manifest["archive_id"], STATUS_VERIFIED, manifest["created"], 0, {"ok": True})
    return manifest["archive_id"]


def test_every_flipped_bit_is_detected(target, keys):
    archive_id = small_archive(target, keys)
    assert restorable(target, keys, archive_id)
    names = target.list()
    assert {n.split("/")[0] for n in names} == {"config", "archives", "catalogue"}
    flips = 0
    for name in names:
        path = target.root / name
        original = path.read_bytes()
        for i in range(len(original)):
            damaged = bytearray(original)
            damaged[i] ^= 0x01
            path.write_bytes(bytes(damaged))
            assert not restorable(target, keys, archive_id), f"flip at {name}[{i}] undetected"
            flips += 1
        path.write_bytes(original)
    assert flips > 2000
    assert restorable(target, keys, archive_id)


@pytest.fixture
def multi_pack(target, keys):
    archive_id = small_archive(target, keys, size=120_000, pack_target=16_384)
    repo = Repository.open(target, keys)
    assert len(repo.load_manifest(archive_id)["packs"]) >= 3
    return archive_id


def _pack(target, archive_id, seq) -> Path:
    return target.root / pack_name(archive_id, seq)


def test_dropped_pack_is_detected(target, keys, multi_pack):
    _pack(target, multi_pack, 1).unlink()
    assert not restorable(target, keys, multi_pack)


def test_duplicated_pack_is_detected(target, keys, multi_pack):
    _pack(target, multi_pack, 1).write_bytes(_pack(target, multi_pack, 0).read_bytes())
    assert not restorable(target, keys, multi_pack)


def test_reordered_packs_are_detected(target, keys, multi_pack):
    a, b = _pack(target, multi_pack, 0), _pack(target, multi_pack, 1)
    first, second = a.read_bytes(), b.read_bytes()
    a.write_bytes(second)
    b.write_bytes(first)
    assert not restorable(target, keys, multi_pack)


@pytest.mark.parametrize("edit", ["reorder", "drop", "duplicate"])
def test_chunks_edited_by_someone_holding_the_data_key_are_detected(target, keys, multi_pack, edit):
    """Even re-encrypted with the right data key, the signed manifest catches chunk edits."""
    repo = Repository.open(target, keys)
    path = _pack(target, multi_pack, 0)
    plain = zstandard.ZstdDecompressor().decompress(
        unseal(keys, repo.repo_id, KIND_PACK, path.read_bytes(), multi_pack, 0)
    )
    ids, chunks = decode_pack(plain)
    pairs = list(zip(ids, [bytes(c) for c in chunks], strict=True))
    if edit == "reorder":
        pairs[0], pairs[1] = pairs[1], pairs[0]
    elif edit == "drop":
        del pairs[1]
    else:
        pairs[1] = pairs[0]
    forged = encode_pack([i for i, _ in pairs], [c for _, c in pairs])
    path.write_bytes(seal(keys, repo.repo_id, KIND_PACK, zstandard.compress(forged), multi_pack, 0))
    assert not restorable(target, keys, multi_pack)


def test_wrong_keys_are_refused(target, keys):
    archive_id = small_archive(target, keys)
    other_data = BackupKeys(os.urandom(32), keys.key_version, keys.verify_key, keys.signing_key)
    with pytest.raises(WrongKey):
        Repository.open(target, other_data)
    assert not restorable(target, other_data, archive_id)
    stranger = BackupKeys.generate()
    with pytest.raises(WrongKey):
        Repository.open(target, stranger)
    unknown_version = BackupKeys(keys.data_key, 7, keys.verify_key, keys.signing_key)
    assert not restorable(target, unknown_version, archive_id)


def test_manifest_moved_to_another_archive_is_detected(target, keys):
    first = small_archive(target, keys)
    second = small_archive(target, keys)
    (target.root / f"archives/{second}/manifest").write_bytes((target.root / f"archives/{first}/manifest").read_bytes())
    assert not restorable(target, keys, second)
    (target.root / f"catalogue/{second}.json").write_bytes((target.root / f"catalogue/{first}.json").read_bytes())
    repo = Repository.open(target, keys)
    assert [r.archive_id for r in repo.good_archives()] == [first]


def test_truncated_and_interrupted_uploads_are_never_good(target, keys):
    good = small_archive(target, keys)
    archive_id = small_archive(target, keys, size=60_000, pack_target=16_384)
    path = _pack(target, archive_id, 1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert not restorable(target, keys, archive_id)
    (target.root / "tmp" / "0123456789abcdef.part").write_bytes(b"half an object")
    assert target.interrupted_uploads() == ["tmp/0123456789abcdef.part"]
    assert "tmp/0123456789abcdef.part" not in target.list()
    assert restorable(target, keys, good)


def tiny_sqlite(tmp_path: Path, rows: int = 20, blob: int = 16) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    add_rows(url, 1, rows, blob_bytes=blob)
    return url


def test_full_target_fails_cleanly_and_keeps_the_previous_backup(tiny_tmpfs, keys, tmp_path):
    target = LocalTarget(tiny_tmpfs / "repo")
    url = tiny_sqlite(tmp_path)
    first = run_backup(target, keys, url, workdir=tmp_path)
    assert first.good
    add_rows(url, 1000, 300, blob_bytes=10_000)  # ~3 MB of incompressible rows
    with pytest.raises(TargetFull):
        run_backup(target, keys, url, workdir=tmp_path)
    repo = Repository.open(target, keys)
    assert [r.archive_id for r in repo.good_archives()] == [first.archive_id]
    assert target.interrupted_uploads() == []
    restore_archive(repo, first.archive_id, f"sqlite:///{tmp_path / 'back.db'}")
    prune(repo, Policy(daily=1), grace=timedelta(0))
    assert repo.started_archive_ids() == [first.archive_id]


KILLED_BACKUP = """
import sys, time
from pathlib import Path
from backup.jobs import run_backup
from backup.keys import BackupKeys
from backup.targets.local import LocalTarget
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

class SlowTarget(LocalTarget):
    def put(self, name, data):
        time.sleep(0.3)  # a slow medium, so the kill lands between uploads
        super().put(name, data)

signing = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sys.argv[3]))
keys = BackupKeys(bytes.fromhex(sys.argv[2]), 1, signing.public_key(), signing)
run_backup(SlowTarget(sys.argv[1]), keys, sys.argv[4], workdir=Path(sys.argv[5]))
"""


def test_backup_killed_halfway_is_never_good(target, keys, tmp_path):
    from cryptography.hazmat.primitives import serialization

    url = tiny_sqlite(tmp_path)
    first = run_backup(target, keys, url, workdir=tmp_path)
    add_rows(url, 1000, 2500, blob_bytes=10_000)  # ~25 MB: several packs
    raw = keys.signing_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_BACKUP,
            str(target.root),
            keys.data_key.hex(),
            raw.hex(),
            url,
            str(tmp_path),
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    repo = Repository.open(target, keys)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        started = [a for a in repo.started_archive_ids() if a != first.archive_id]
        if started and len(target.list(f"archives/{started[0]}/packs/")) >= 2:
            break
        assert proc.poll() is None, "the backup finished before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = started[0]
    assert killed not in repo.archive_ids()  # no manifest
    assert [r.archive_id for r in repo.good_archives()] == [first.archive_id]
    assert restorable(target, keys, first.archive_id)
    plan = prune(repo, Policy(daily=7), grace=timedelta(0))
    assert plan.delete == [killed]
    assert repo.started_archive_ids() == [first.archive_id]
    assert target.interrupted_uploads() == []
    restore_archive(repo, first.archive_id, f"sqlite:///{tmp_path / 'after-kill.db'}")
