"""One backup, start to finish: snapshot, archive, drill, catalogue record.

``run_backup`` is what the CLI and the worker call. The catalogue record is
written last, after the drill: an archive whose upload was interrupted, or
whose drill failed, is never listed as good.
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from backup import scratch as scratch_dirs
from backup.archive import ArchiveWriter
from backup.errors import ArchiveDamaged, ArchiveNotFound
from backup.keys import BackupKeys
from backup.repository import (
    STATUS_FAILED,
    STATUS_UNVERIFIED,
    STATUS_VERIFIED,
    CatalogueRecord,
    Repository,
    pack_name,
)
from backup.snapshot import collect_files, snapshot_database
from backup.targets.base import Target
from backup.verify import NamedCheck, run_drill

log = logging.getLogger(__name__)
Progress = Callable[[int], None]
#: Read before the database snapshot. A checkpoint reaches the audit anchor after
#: the events it covers are committed (and before its own row is), so an anchor
#: read first names only events the snapshot holds: the restored log verifies
#: against its restored anchor. Read after, it could name events the snapshot lacks.
READ_BEFORE_SNAPSHOT = frozenset({"files/audit/anchor.log"})


@dataclass
class BackupOutcome:
    """One backup: its archive, manifest, signed drill report and catalogue record."""

    archive_id: str
    manifest: dict[str, Any]
    report: dict[str, Any]
    record: CatalogueRecord
    seconds: float
    healed: list[str] = field(default_factory=list)  #: damaged packs whose chunks were stored anew
    reverified: dict[str, str] = field(default_factory=dict)  #: older archives drilled again: status

    @property
    def good(self) -> bool:
        return self.record.good


def parent_manifest(repo: Repository) -> dict[str, Any] | None:
    """What a new archive deduplicates against: every pack any live verified archive uses.

    The result has the shape of a manifest: the newest verified archive's id
    (recorded as the new archive's ``parent``) and key version, and the union of
    the packs of every verified archive made with that key version whose
    manifest still opens. Deduplicating against all of them, not only the newest,
    means data that came back (a reverted change, a restored table) is not stored
    again; retention keeps every pack a kept archive references.
    """
    newest: dict[str, Any] | None = None
    packs: dict[tuple[str, int], dict[str, Any]] = {}
    for record in reversed(repo.good_archives()):
        try:
            manifest = repo.load_manifest(record.archive_id)
        except (ArchiveDamaged, ArchiveNotFound):
            log.warning("archive %s cannot be used as a dedup parent", record.archive_id)
            continue
        if newest is None:
            newest = manifest
        if manifest.get("key_version") != newest.get("key_version"):
            continue  # chunk ids under another key never match
        for pack in manifest["packs"]:
            packs.setdefault((pack["archive"], pack["seq"]), pack)
    if newest is None:
        return None
    return {**newest, "packs": list(packs.values())}


#: A pack the newest archive uses less than this fraction of is not reused: its live chunks
#: are stored anew in full packs, so prune can delete it once the older archives go.
REPACK_BELOW = 0.75


def sparse_packs(repo: Repository, parent: dict[str, Any] | None) -> set[str]:
    """Packs written by an archive that is gone (pruned or failed) of which the newest
    archive uses less than ``REPACK_BELOW`` of the chunks.

    Without this a pack stays alive as long as one chunk of it is used, and a
    repository keeping one archive grows round after round with dead chunks. A
    live archive's packs stay for that archive anyway: reusing them costs nothing.
    """
    if parent is None:
        return set()
    live = {r.archive_id for r in repo.good_archives()}
    try:
        newest = repo.load_manifest(parent["archive_id"])
    except (ArchiveDamaged, ArchiveNotFound):
        return set()
    used: dict[int, set[int]] = {}
    for entry in newest["files"]:
        for index, first, count in entry["runs"]:
            used.setdefault(index, set()).update(range(first, first + count))
    return {pack_name(p["archive"], p["seq"]) for index, p in enumerate(newest["packs"])
            if p["archive"] not in live and p["chunks"] and len(used.get(index, ())) < REPACK_BELOW * p["chunks"]}


def packs_to_avoid(repo: Repository, parent: dict[str, Any] | None) -> set[str]:
    """Packs a new archive must not reuse: reported damaged by any drill, or missing.

    Without this, one damaged pack that later archives share through
    deduplication would fail every following backup's drill as well.
    """
    bad: set[str] = set()
    for record in repo.catalogue()[0]:
        bad |= {str(name) for name in record.report.get("bad_packs") or []}
    if parent is not None:
        listed = set(repo.target.list("archives/"))
        bad |= {name for name in (pack_name(p["archive"], p["seq"]) for p in parent["packs"]) if name not in listed}
    return bad


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
    avoid: Iterable[str] = (),
) -> NewArchive:
    """Snapshot the database and files into a new archive (scratch space in ``scratch``).

    A SQLite snapshot stays in ``scratch`` for the drill to take the source's
    table digests from; PostgreSQL digests are taken inside the dump's own
    snapshot and stored in the manifest.
    """
    items = collect_files(data_dir, list(files), required=files_required) if data_dir is not None and files else []
    early = {item.archive_path: item.source.read_bytes() for item in items
             if item.archive_path in READ_BEFORE_SNAPSHOT}
    parent = parent_manifest(repo)
    writer = ArchiveWriter(repo, parent=parent, workers=workers, avoid=packs_to_avoid(repo, parent) | set(avoid),
                           repack=sparse_packs(repo, parent))
    try:
        with snapshot_database(database_url, scratch) as snap:
            chunker = writer.page_chunker(snap.page_size) if snap.page_size else writer.content_chunker()
            writer.add_stream(snap.archive_path, "database", snap.stream, chunker, progress=progress)
        digests = snap.digests.result() if snap.digests is not None else None
        for item in items:
            with _open_item(item, early) as stream:
                writer.add_stream(
                    item.archive_path, "file", stream, writer.content_chunker(), mode=item.mode, progress=progress
                )
        database = {"backend": snap.backend, "path": snap.archive_path, "tables": digests}
        extra: dict[str, Any] = {"database": database}
        if writer.healed:
            extra["healed"] = writer.healed  # damaged packs whose chunks this archive stores anew
        if writer.repacked:
            extra["repacked"] = writer.repacked  # sparse packs whose live chunks it stores anew
        return NewArchive(writer.finish(extra), snap.snapshot_file)
    except BaseException:
        writer.abort()
        raise


def _open_item(item: Any, early: dict[str, bytes]) -> BinaryIO:
    if item.archive_path in early:
        return io.BytesIO(early[item.archive_path])
    return open(item.source, "rb")  # noqa: SIM115 - the caller closes it


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
    """Back up, then prove the archive restores; the outcome says whether it counts.

    Self-healing: when the drill finds a damaged or missing pack that this
    archive reused from an older one, the archive is recorded failed and one
    more is written at once, storing those chunks anew from the live data; then
    every verified archive that uses a healed pack is drilled again (and so
    recorded failed: it really is damaged). The outcome lists both.
    """
    started = time.perf_counter()
    scratch_dirs.remove_stale(workdir)  # full database copies a killed run left behind
    repo = Repository.open(target, keys, create=True)
    checks = list(checks)

    def attempt() -> tuple[dict[str, Any], dict[str, Any], CatalogueRecord]:
        with tempfile.TemporaryDirectory(prefix=scratch_dirs.prefix("snapshot"), dir=workdir) as scratch:
            new = create_archive(repo, database_url, Path(scratch), data_dir=data_dir, files=files,
                                 files_required=files_required, workers=workers, progress=progress)
            manifest, archive_id = new.manifest, new.manifest["archive_id"]
            report = run_drill(repo, archive_id, scratch_url=scratch_url, checks=checks, workdir=workdir,
                               source_snapshot=new.snapshot_file)
        size = sum(p["size"] for p in manifest["packs"] if p["archive"] == archive_id)
        status = STATUS_VERIFIED if report["ok"] else STATUS_UNVERIFIED if report.get("could_not_verify") \
            else STATUS_FAILED
        return manifest, report, repo.record(archive_id, status, manifest["created"], size, report)

    manifest, report, record = attempt()
    if not record.good and _reused_damage(manifest, report):
        log.error("backup %s reused a damaged pack (%s); writing another that stores its chunks anew",
                  record.archive_id, ", ".join(report["bad_packs"]))
        manifest, report, record = attempt()
    if not record.good:
        log.error("backup %s failed its drill: %s", record.archive_id, report.get("error") or report)
    healed = list(manifest.get("healed") or [])
    reverified = reverify_users_of(repo, healed, scratch_url=scratch_url, checks=checks, workdir=workdir,
                                   skip=record.archive_id) if record.good and healed else {}
    return BackupOutcome(record.archive_id, manifest, report, record, time.perf_counter() - started,
                         healed, reverified)


def _reused_damage(manifest: dict[str, Any], report: dict[str, Any]) -> bool:
    """Whether the drill failed on a pack an older archive wrote (a new archive can avoid it)."""
    own = f"archives/{manifest['archive_id']}/"
    bad = report.get("bad_packs") or []
    return bool(bad) and not any(name.startswith(own) for name in bad)


def reverify_users_of(
    repo: Repository,
    packs: Iterable[str],
    *,
    scratch_url: str | None,
    checks: Iterable[NamedCheck],
    workdir: Path | None,
    skip: str,
) -> dict[str, str]:
    """Drill again every verified archive that uses one of ``packs``; archive id -> new status."""
    wanted, results = set(packs), {}
    for earlier in repo.good_archives():
        if earlier.archive_id == skip:
            continue
        try:
            uses = {pack_name(p["archive"], p["seq"]) for p in repo.load_manifest(earlier.archive_id)["packs"]}
        except (ArchiveDamaged, ArchiveNotFound):
            uses = wanted  # its manifest no longer opens: drill it, and let the drill say so
        if not uses & wanted:
            continue
        report = run_drill(repo, earlier.archive_id, scratch_url=scratch_url, checks=checks, workdir=workdir,
                           source_tables=earlier.report.get("source_tables"))
        status = STATUS_VERIFIED if report["ok"] else STATUS_UNVERIFIED if report.get("could_not_verify") \
            else STATUS_FAILED
        repo.record(earlier.archive_id, status, earlier.created, earlier.size, report)
        results[earlier.archive_id] = status
    return results
