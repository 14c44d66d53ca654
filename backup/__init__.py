"""Backups that prove they restore.

Owns snapshots of the database, attachments, configuration and wrapped keys;
the encrypted archive format; backup targets and retention; restore; and the
verification drill that restores every backup before it counts. The format and
its guarantees are in docs/backup-format.md.

What the rest of Citadel calls:

- ``backup.init_app(app, api)``: the backups page, for the app factory.
- ``backup.cli.backup``: the ``appliance backup`` click group (run, list,
  verify, restore, prune); ``backup.cli.backup_appliance(app)`` is one
  scheduled backup for the worker, due per ``BackupSettings.next_run``.
- ``backup.jobs.run_backup(target, keys, database_url, ...)``: snapshot,
  archive, drill, signed catalogue record; ``BackupOutcome.good`` says if it counts.
- ``backup.restore.restore_archive`` and ``backup.verify.run_drill`` for one archive.
- ``backup.disaster``: the wrapped key files copied to targets, the rebuild of a
  lost appliance from a target alone (``appliance init --restore-from``) and
  the recovery drill; ``register_recovery_check`` adds checks to that drill.
- ``backup.ledger``: the audit log's record of backups compared with a target;
  ``on_missing_archives`` is how deleted or rolled-back archives raise an alert.
- ``backup.checks.register_check(name, check)``: extra checks every drill runs.
- ``backup.keys.BackupKeys``: the keys, handed in by the caller (on the
  appliance: ``backup.cli.keys_from_appliance``).

Modules: ``snapshot`` (SQLite backup API, pg_dump on an exported snapshot,
files), ``chunker`` (page and FastCDC chunking), ``envelope`` (AES-256-GCM
objects, Ed25519 signatures), ``archive`` (packs, index, writer and reader),
``repository`` (layout, manifests, catalogue), ``tabledigest`` / ``rowhash``
(backend-independent table digests), ``targets`` (local, removable, SFTP, S3),
``retention`` (grandfather-father-son, keep-last, keep-within, safe pruning),
``scratch`` (scratch directories a killed run leaves are removed by the next),
``settings`` (the ``[backup]`` table of citadel.toml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Blueprint, Flask


def init_app(app: Flask, api: Blueprint) -> None:
    """Add the backups page to ``app`` (backups have no API resources of their own)."""
    from backup import views

    app.register_blueprint(views.bp)
