"""A removable disk: a local directory that is only used when the right volume is mounted.

Writing to an unmounted mount point would fill the root file system and leave
the backup on the box it should protect, so the target refuses unless the
path is a mount point and carries the marker file naming the expected volume.
"""

from __future__ import annotations

import os
from pathlib import Path

from backup.errors import TargetUnavailable
from backup.targets.local import LocalTarget

MARKER = ".citadel-backup-volume"


def prepare_volume(mount_point: str | os.PathLike[str], volume_id: str) -> Path:
    """Label a freshly mounted disk as backup volume ``volume_id``."""
    path = Path(mount_point) / MARKER
    path.write_text(volume_id + "\n")
    return path


class RemovableTarget(LocalTarget):
    """``<mount_point>/<subdir>`` on the mounted volume whose marker says ``volume_id``."""

    def __init__(self, mount_point: str | os.PathLike[str], volume_id: str, subdir: str = "citadel-backups") -> None:
        mount = Path(mount_point)
        label = f"removable disk {volume_id} at {mount}"
        if not os.path.ismount(mount):
            raise TargetUnavailable(target=label, detail="nothing is mounted there; plug in and mount the disk")
        try:
            found = (mount / MARKER).read_text().strip()
        except OSError:
            raise TargetUnavailable(
                target=label,
                detail=f"the mounted disk has no {MARKER} marker; it is not a Citadel backup disk",
            ) from None
        if found != volume_id:
            raise TargetUnavailable(target=label, detail=f"the mounted disk is volume {found!r}, not {volume_id!r}")
        super().__init__(mount / subdir)
        self.label = label
