"""A directory on a local file system (or on a mounted removable disk).

``put`` writes ``tmp/<random>.part``, fsyncs it, renames it over the final
name and fsyncs the directory: a crash leaves either the old state or the new
object, plus at most a ``.part`` file that ``remove_interrupted`` deletes.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from backup.errors import TargetUnavailable
from backup.targets.base import TMP_PREFIX, Target, check_name


class LocalTarget(Target):
    """Objects as files under ``root``."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root)
        self.label = str(self.root)
        if create:
            try:
                (self.root / TMP_PREFIX).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self.translate_os_error(exc, "creating the backup directory") from exc
        elif not self.root.is_dir():
            raise TargetUnavailable(target=self.label, detail="the directory does not exist")

    def _path(self, name: str) -> Path:
        return self.root / check_name(name)

    def put(self, name: str, data: bytes) -> None:
        final = self._path(name)
        part = self.root / TMP_PREFIX / f"{secrets.token_hex(8)}.part"
        try:
            part.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise self.translate_os_error(exc, f"writing {name}") from exc

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self.translate_os_error(exc, f"reading {name}") from exc

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        names = []
        for path in base.rglob("*") if base.is_dir() else [base]:
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and not rel.startswith(TMP_PREFIX):
                names.append(rel)
        return sorted(names)

    def delete(self, name: str) -> None:
        path = self._path(name)
        path.unlink(missing_ok=True)
        # Drop directories emptied by the deletion, up to the root.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def interrupted_uploads(self) -> list[str]:
        tmp = self.root / TMP_PREFIX
        return sorted(f"{TMP_PREFIX}{p.name}" for p in tmp.glob("*.part")) if tmp.exists() else []

    def remove_interrupted(self, older_than: float = 0.0) -> int:
        removed = 0
        for name in self.interrupted_uploads():
            path = self.root / name
            try:
                if time.time() - path.stat().st_mtime >= older_than:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # finished or removed meanwhile
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
