"""What can go wrong with a backup, each with what to do about it.

Every class's docstring is its message template (see ``appliance.kernel.errors``).
"""

from __future__ import annotations

from appliance.kernel.errors import CitadelError, ConfigError, Conflict, ExitCode, NotFound


class BackupError(CitadelError):
    """The backup failed: {detail}"""

    code = "backup"


class DrillFailed(BackupError):
    """The backup failed: {detail}"""

    exit_code = ExitCode.PROBLEM_FOUND  # the drill ran and found the backup unproven


class ArchiveDamaged(BackupError):
    """Backup archive {archive} is damaged or was tampered with ({detail}); use an older one."""

    exit_code = ExitCode.PROBLEM_FOUND

    code = "backup_damaged"


class PackDamaged(ArchiveDamaged):
    """Backup archive {archive} is damaged or was tampered with ({detail}); use an older one."""

    @property
    def pack(self) -> str:
        """The object name of the damaged or missing pack."""
        return str(self.facts["pack"])


class WrongKey(BackupError):
    """The backup key (version {version}) cannot open this repository: {detail}."""
    code = "backup_key"


class ArchiveNotFound(NotFound):
    """No backup archive {archive} on {target}; run `appliance backup list` to see the archives."""


class NoRepository(ArchiveNotFound):
    """There are no backups on {target} yet: run `appliance backup run` first."""


class RepositoryConfigMissing(BackupError):
    """Backup target {target} holds archives but no repository config (deleted or lost);
    nothing was written: a new repository would make every archive there unreadable. Put the
    `config` object back from a copy of the target, or start over with
    `appliance backup init-target --force`."""

    exit_code = 2
    code = "backup_config_missing"


class RepositoryRolledBack(BackupError):
    """Backup target {target} lacks archives the audit log records: {detail}. They were
    deleted or the target was rolled back to older contents; check the target and the
    officers' alert."""

    exit_code = 2
    code = "backup_rolled_back"


class TargetUnavailable(BackupError):
    """Backup target {target} cannot be used: {detail}"""
    code = "backup_target"


class TargetFull(TargetUnavailable):
    """Backup target {target} is full ({detail}); free space or prune old archives, then retry."""


class SnapshotFailed(BackupError):
    """Could not take a snapshot of the database: {detail}"""


class RestoreRefused(Conflict):
    """{detail} is not empty; restore into a new database, or pass --force to replace it."""


class BackupNotConfigured(ConfigError):
    """Backups are not configured: {detail}"""
