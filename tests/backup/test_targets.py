"""Each target against the real thing: a directory, a mounted tmpfs, OpenSSH, an S3 server."""

from __future__ import annotations

import pytest

from backup.errors import TargetUnavailable
from backup.jobs import run_backup
from backup.repository import Repository
from backup.restore import restore_archive
from backup.targets import open_target
from backup.targets.removable import RemovableTarget, prepare_volume
from backup.targets.sftp import SFTPTarget
from tests.backup.conftest import add_rows


def exercise(target) -> None:
    target.put("archives/x/packs/000000", b"one")
    target.put("archives/x/packs/000000", b"two")  # replaced atomically
    target.put("catalogue/x.json", b"{}")
    assert target.get("archives/x/packs/000000") == b"two"
    assert target.list() == ["archives/x/packs/000000", "catalogue/x.json"]
    assert target.list("archives/") == ["archives/x/packs/000000"]
    with pytest.raises(FileNotFoundError):
        target.get("archives/y/manifest")
    target.delete("catalogue/x.json")
    assert target.list("catalogue/") == []
    with pytest.raises(ValueError):
        target.put("../escape", b"")


def backup_and_restore(target, keys, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    add_rows(url, 1, 300, blob_bytes=500)
    outcome = run_backup(target, keys, url, workdir=tmp_path)
    assert outcome.good, outcome.report
    repo = Repository.open(target, keys)
    assert [r.archive_id for r in repo.good_archives()] == [outcome.archive_id]
    restore_archive(repo, outcome.archive_id, f"sqlite:///{tmp_path / 'dst.db'}")


def test_local_target(target, keys, tmp_path):
    exercise(target)
    target.delete("archives/x/packs/000000")
    backup_and_restore(target, keys, tmp_path)


def test_sftp_target_against_openssh(sshd, keys, tmp_path):
    spec = {k: sshd[k] for k in ("host", "port", "username", "key_file", "known_hosts")}
    with SFTPTarget(root=str(tmp_path / "remote"), **spec) as target:
        exercise(target)
        assert target.interrupted_uploads() == []
        (tmp_path / "remote" / "tmp" / "dead.part").write_bytes(b"x")
        assert target.interrupted_uploads() == ["tmp/dead.part"]
        assert target.remove_interrupted() == 1
        target.delete("archives/x/packs/000000")
        backup_and_restore(target, keys, tmp_path)


def test_sftp_refuses_an_unknown_host_key(sshd, tmp_path):
    (tmp_path / "empty_known_hosts").write_text("")
    with pytest.raises(TargetUnavailable, match="SSH refused"):
        SFTPTarget(
            sshd["host"],
            port=sshd["port"],
            username="root",
            root=str(tmp_path),
            key_file=sshd["key_file"],
            known_hosts=str(tmp_path / "empty_known_hosts"),
        )


def test_s3_target_against_a_local_server(s3_target, keys, tmp_path):
    exercise(s3_target)
    s3_target.delete("archives/x/packs/000000")
    client = s3_target._client
    started = client.create_multipart_upload(Bucket=s3_target.bucket, Key="archives/y/manifest")
    client.upload_part(
        Bucket=s3_target.bucket,
        Key="archives/y/manifest",
        PartNumber=1,
        UploadId=started["UploadId"],
        Body=b"half",
    )
    assert s3_target.list("archives/") == []  # an unfinished multipart upload is invisible
    assert len(s3_target.interrupted_uploads()) == 1
    assert s3_target.remove_interrupted() == 1
    assert s3_target.interrupted_uploads() == []
    backup_and_restore(s3_target, keys, tmp_path)


def test_removable_disk_must_be_the_mounted_expected_volume(tiny_tmpfs, tmp_path):
    with pytest.raises(TargetUnavailable, match="nothing is mounted"):
        RemovableTarget(tmp_path, "vol-1")
    with pytest.raises(TargetUnavailable, match="no .citadel-backup-volume marker"):
        RemovableTarget(tiny_tmpfs, "vol-1")
    prepare_volume(tiny_tmpfs, "vol-2")
    with pytest.raises(TargetUnavailable, match="is volume 'vol-2', not 'vol-1'"):
        RemovableTarget(tiny_tmpfs, "vol-1")
    target = open_target("usb", {"type": "removable", "mount_point": str(tiny_tmpfs), "volume_id": "vol-2"})
    exercise(target)


def test_open_target_explains_bad_configuration():
    with pytest.raises(Exception, match=r"\[backup.targets.x\] needs path"):
        open_target("x", {"type": "local"})
    with pytest.raises(Exception, match="type must be local, removable, sftp or s3"):
        open_target("x", {"type": "ftp"})
