"""Backup targets: a local directory, a removable disk, SFTP, S3.

``open_target`` builds one from its ``[backup.targets.<name>]`` table::

    type = "local"      path = "/var/backups/citadel"
    type = "removable"  mount_point = "/media/backup"  volume_id = "citadel-1"
    type = "sftp"       host, port, username, root, key_file, known_hosts
    type = "s3"         bucket, prefix, endpoint_url, region, access_key, secret_key
"""

from __future__ import annotations

from typing import Any

from backup.errors import BackupNotConfigured
from backup.targets.base import Target


def open_target(name: str, spec: dict[str, Any]) -> Target:
    """The target described by ``spec`` (paramiko and boto3 load only when used)."""
    spec = dict(spec)
    kind = spec.pop("type", None)
    try:
        if kind == "local":
            from backup.targets.local import LocalTarget

            return LocalTarget(spec.pop("path"), **spec)
        if kind == "removable":
            from backup.targets.removable import RemovableTarget

            return RemovableTarget(spec.pop("mount_point"), spec.pop("volume_id"), **spec)
        if kind == "sftp":
            from backup.targets.sftp import SFTPTarget

            return SFTPTarget(spec.pop("host"), **spec)
        if kind == "s3":
            from backup.targets.s3 import S3Target

            return S3Target(spec.pop("bucket"), **spec)
    except KeyError as exc:
        raise BackupNotConfigured(detail=f"[backup.targets.{name}] needs {exc.args[0]}") from None
    except TypeError as exc:
        raise BackupNotConfigured(detail=f"[backup.targets.{name}]: {exc}") from None
    raise BackupNotConfigured(
        detail=f"[backup.targets.{name}] type must be local, removable, sftp or s3 (found {kind!r})"
    )


__all__ = ["Target", "open_target"]
