"""The archive lock: archiving takes it exclusively, readers of archived and live
events share it, so events never move between a segment and the table under a
reader's feet."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from audit.config import AuditConfig
from audit.errors import ArchiveError


@contextmanager
def archive_lock(config: AuditConfig, *, exclusive: bool) -> Iterator[None]:
    """Hold ``audit/archive/.lock``; an exclusive request fails at once if it is taken."""
    config.archive_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(config.archive_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if exclusive:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ArchiveError(detail="an export, a forwarder or another archive run is "
                                   "reading the log; retry when it is done") from None
        else:
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
