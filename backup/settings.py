"""The ``[backup]`` table of citadel.toml.

::

    [backup]
    target = "offsite"             # the target used when --target is not given
    files = ["citadel.toml", "secret_key", "keys/keyring.json", "keys/seal.json", "attachments", "audit"]
    # (the wrapped key files are also copied to every target outside the archives, for recovery)
    scratch_url = "postgresql://postgres@127.0.0.1/postgres"   # server for PostgreSQL drills
    schedule = "02:30"             # daily, UTC, for `appliance worker`
    workers = 2                    # compression/encryption threads
    recovery_drill_days = 7        # every N days after a scheduled backup, rebuild the whole
                                   # appliance from the target alone in scratch space (0: never)

    [backup.keep]                  # grandfather-father-son retention
    daily = 7
    weekly = 4
    monthly = 12
    yearly = 0

    [backup.targets.offsite]       # any number of named targets, see backup.targets
    type = "sftp"
    host = "backup.example.org"
    username = "citadel"
    root = "/srv/citadel"
    key_file = "/etc/citadel/backup_ed25519"
    known_hosts = "/etc/citadel/backup_known_hosts"

Without ``files`` the defaults below are taken, each only if it exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from backup.errors import BackupNotConfigured
from backup.retention import Policy
from backup.targets import Target, open_target

DEFAULT_FILES = ["citadel.toml", "secret_key", "keys/keyring.json", "keys/seal.json", "attachments",
                 "audit/anchor.log", "audit/signing.key", "audit/signing.pub", "audit/trusted", "audit/archive"]
_SCHEDULE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_KNOWN = {"target", "files", "scratch_url", "schedule", "workers", "keep", "targets", "recovery_drill_days"}


@dataclass
class BackupSettings:
    """The ``[backup]`` table, checked."""

    targets: dict[str, dict[str, Any]]
    default_target: str | None
    files: list[str]
    files_required: bool
    scratch_url: str | None
    schedule: str | None
    workers: int = 2
    keep: Policy = field(default_factory=Policy)
    recovery_drill_days: int = 7

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> BackupSettings:
        """Check and read the ``[backup]`` table (``BackupNotConfigured`` says what is wrong)."""
        unknown = set(section) - _KNOWN
        if unknown:
            raise BackupNotConfigured(detail=f"unknown [backup] settings: {', '.join(sorted(unknown))}")
        schedule = section.get("schedule")
        if schedule is not None and not _SCHEDULE.match(str(schedule)):
            raise BackupNotConfigured(detail=f"[backup] schedule must be HH:MM (UTC), not {schedule!r}")
        for table in ("targets", "keep"):
            if not isinstance(section.get(table, {}), dict):
                raise BackupNotConfigured(detail=f"[backup.{table}] must be a TOML table")
        drill_days = section.get("recovery_drill_days", 7)
        if not isinstance(drill_days, int) or isinstance(drill_days, bool) or drill_days < 0:
            raise BackupNotConfigured(detail="[backup] recovery_drill_days must be a whole number >= 0 (0: never)")
        files = section.get("files")
        if files is not None and (not isinstance(files, list) or not all(isinstance(f, str) for f in files)):
            raise BackupNotConfigured(detail="[backup] files must be a list of paths or globs")
        return cls(
            targets=dict(section.get("targets") or {}),
            default_target=section.get("target"),
            files=list(files) if files is not None else list(DEFAULT_FILES),
            files_required=files is not None,
            scratch_url=section.get("scratch_url"),
            schedule=schedule,
            workers=int(section.get("workers", 2)),
            keep=Policy.from_config(dict(section.get("keep") or {})),
            recovery_drill_days=drill_days,
        )

    def next_run(self, after: datetime) -> datetime | None:
        """When the scheduled backup is next due after ``after`` (UTC), or None if unscheduled."""
        if self.schedule is None:
            return None
        hour, minute = (int(x) for x in self.schedule.split(":"))
        after = after.astimezone(UTC)
        due = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return due if due > after else due + timedelta(days=1)

    def open_target(self, name: str | None = None) -> Target:
        """The named target, the configured default, or the only one."""
        if not self.targets:
            raise BackupNotConfigured(detail="add a [backup.targets.<name>] table to citadel.toml")
        chosen = name or self.default_target or (next(iter(self.targets)) if len(self.targets) == 1 else None)
        if chosen is None:
            raise BackupNotConfigured(detail="several targets are configured: set [backup] target or pass --target")
        if chosen not in self.targets:
            raise BackupNotConfigured(detail=f"no target named {chosen!r} (known: {', '.join(sorted(self.targets))})")
        return open_target(chosen, self.targets[chosen])
