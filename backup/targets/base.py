"""What every backup target offers: atomic named objects.

Names are ``/``-separated relative paths (``archives/<id>/packs/000001``).
``put`` is atomic: a reader sees the whole object or none of it, never a
truncated one. Uploads in flight live under ``tmp/`` (or as unfinished
multipart uploads) and are removed by ``remove_interrupted``.
"""

from __future__ import annotations

import errno
import re
from abc import ABC, abstractmethod

from backup.errors import TargetFull, TargetUnavailable

TMP_PREFIX = "tmp/"
_NAME = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_name(name: str) -> str:
    """``name`` if it is a safe relative object name, else ``ValueError``."""
    if not _NAME.match(name) or ".." in name.split("/"):
        raise ValueError(f"not a valid object name: {name!r}")
    return name


class Target(ABC):
    """A place archives are stored. Implementations must be safe to call from threads."""

    label: str = "target"

    @abstractmethod
    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` atomically, replacing any previous object."""

    @abstractmethod
    def get(self, name: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` if there is none."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Names of the finished objects under ``prefix`` (recursive), sorted."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove the object; missing objects are ignored."""

    @abstractmethod
    def interrupted_uploads(self) -> list[str]:
        """Uploads that were started and never finished."""

    @abstractmethod
    def remove_interrupted(self, older_than: float = 0.0) -> int:
        """Remove unfinished uploads started more than ``older_than`` seconds ago; how many."""

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:  # noqa: B027 - most targets hold nothing to release
        """Release connections."""

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def translate_os_error(self, exc: OSError, action: str) -> Exception:
        """A person-readable error for an ``OSError`` raised while ``action``."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return TargetFull(target=self.label, detail=f"no space left while {action}")
        return TargetUnavailable(target=self.label, detail=f"{action} failed: {exc.strerror or exc}")
