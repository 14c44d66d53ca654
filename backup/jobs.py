"""One backup, start to finish: snapshot, archive, drill, catalogue record.

``run_backup`` is what the CLI and the worker call. The catalogue record is
written last, after the drill: an archive whose upload was interrupted, or
whose drill failed, is never listed as good.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backup.archive import ArchiveWriter
from backup.errors import ArchiveDamaged, ArchiveNotFound
from backup.keys import BackupKeys
from backup.repository import STATUS_FAILED, STATUS_VERIFIED, CatalogueRecord, Repository
from backup.snapshot import collect_files, snapshot_database
from backup.targets.base import Target
from backup.verify import NamedCheck, run_drill

log = logging.getLogger(__name__)
Progress = Callable[[int], None]


@dataclass
class BackupOutcome:
    """One backup: its archive, manifest, signed drill report and catalogue record."""

    archive_id: str
    manifest: dict[str, Any]
    report: dict[str, Any]
    record: CatalogueRecord
    seconds: float

    @property
    def good(self) -> bool:
        return self.record.good


def parent_manifest(repo: Repository) -> dict[str, Any] | None:
    """The newest verified archive's manifest, to deduplicate against (if it still opens)."""
    for record in reversed(repo.good_archives()):
        try:
            return repo.load_manifest(record.archive_id)
        except (ArchiveDamaged, ArchiveNotFound):
            log.warning("archive %s cannot be used as a dedup parent", record.archive_id)
    return None


@dataclass
class NewArchive:
    """A freshly written (not yet verified) archive, and the snapshot file it was made from."""

    manifest: dict[str, Any]
    snapshot_file: Path | None


def create_archive(
    repo: Repository,
    database_url: str,
    scratch: Path,
    *,
    data_dir: Path | None = None,
    files: Iterable[str] = (),
    files_required: bool = True,
    workers: int = 2,
    progress: Progress | None = None,
) -> NewArchive:
    """Snapshot the database and files into a new archive (scratch space in ``scratch``).

    A SQLite snapshot stays in ``scratch`` for the drill to take the source's
    table digests from; PostgreSQL digests are taken inside the dump's own
    snapshot and stored in the manifest.
    """
    items = collect_files(data_dir, list(files), required=files_required) if data_dir is not None and files else []
    writer = ArchiveWriter(repo, parent=parent_manifest(repo), workers=workers)
    try:
        with snapshot_database(database_url, scratch) as snap:
            chunker = writer.page_chunker(snap.page_size) if snap.page_size else writer.content_chunker()
            writer.add_stream(snap.archive_path, "database", snap.stream, chunker, progress=progress)
        digests = snap.digests.result() if snap.digests is not None else None
        for item in items:
            with open(item.source, "rb") as stream:
                writer.add_stream(
                    item.archive_path, "file", stream, writer.content_chunker(), mode=item.mode, progress=progress
                )
        database = {"backend": snap.backend, "path": snap.archive_path, "tables": digests}
        return NewArchive(writer.finish({"database": database}), snap.snapshot_file)
    except BaseException:
        writer.abort()
        raise


def run_backup(
    target: Target,
    keys: BackupKeys,
    database_url: str,
    *,
    data_dir: Path | None = None,
    files: Iterable[str] = (),
    files_required: bool = True,
    scratch_url: str | None = None,
    checks: Iterable[NamedCheck] = (),
    workers: int = 2,
    progress: Progress | None = None,
    workdir: Path | None = None,
) -> BackupOutcome:
    """Back up, then prove the archive restores; the outcome says whether it counts."""
    started = time.perf_counter()
    repo = Repository.open(target, keys, create=True)
    with tempfile.TemporaryDirectory(prefix="citadel-snapshot-", dir=workdir) as scratch:
        new = create_archive(
            repo,
            database_url,
            Path(scratch),
            data_dir=data_dir,
            files=files,
            files_required=files_required,
            workers=workers,
            progress=progress,
        )
        manifest, archive_id = new.manifest, new.manifest["archive_id"]
        report = run_drill(
            repo, archive_id, scratch_url=scratch_url, checks=checks, workdir=workdir, source_snapshot=new.snapshot_file
        )
    size = sum(p["size"] for p in manifest["packs"] if p["archive"] == archive_id)
    status = STATUS_VERIFIED if report["ok"] else STATUS_FAILED
    record = repo.record(archive_id, status, manifest["created"], size, report)
    if not record.good:
        log.error("backup %s failed its drill: %s", archive_id, report.get("error") or report)
    return BackupOutcome(archive_id, manifest, report, record, time.perf_counter() - started)
