"""Scratch directories of backups and drills, named so a later run can clean up after a killed one.

Each is ``citadel-<kind>-<pid>-<random>`` in TMPDIR (or the given directory).
A run killed with SIGKILL, or by a power cut, cannot remove its own copy of the
database; the next run removes every such directory whose process is gone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
KINDS = ("snapshot", "drill", "recovery-drill")
_NAME = re.compile(r"^citadel-(?:" + "|".join(KINDS) + r")-(\d+)-")


def prefix(kind: str) -> str:
    """The name prefix of this process's scratch directories of ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"unknown scratch kind {kind!r}")
    return f"citadel-{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: not ours to judge
    return True


def remove_stale(directory: Path | None = None) -> list[Path]:
    """Remove scratch directories left by processes that no longer run; return them."""
    root = Path(directory or tempfile.gettempdir())
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _NAME.match(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink() or _alive(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        log.warning("removed %s, left behind by a backup or drill that was killed", entry)
        removed.append(entry)
    return removed
