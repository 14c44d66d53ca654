"""Which archives to keep (grandfather-father-son) and how to prune the rest safely.

``keep`` is a pure function over archive timestamps: for each granularity
(day, ISO week, month, year) it keeps the newest archive of each of the N most
recent periods that have one, and always the newest archive of all.

``plan_prune`` applies it to a repository's verified archives and never:
deletes the newest verified archive; deletes a pack a kept archive still
references (archives share packs through deduplication); touches an archive
started within the grace period (it may still be uploading); deletes an
archive whose drill could not run ("could not verify": nothing is known
against it). Failed and interrupted archives are removed once the grace
period is over, and so are unfinished uploads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from backup.errors import ArchiveDamaged, ArchiveNotFound, BackupError
from backup.repository import (
    STATUS_UNVERIFIED,
    Repository,
    catalogue_name,
    index_name,
    manifest_name,
    pack_name,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """What to keep ([backup.keep] in citadel.toml): the newest archive of each of the N most
    recent periods of each kind, plus the ``last`` newest archives, plus every archive
    ``within`` of the newest one (as restic's ``--keep-within``)."""

    daily: int = 7
    weekly: int = 4
    monthly: int = 12
    yearly: int = 0
    last: int = 0
    within: timedelta = timedelta(0)

    @classmethod
    def from_config(cls, table: dict[str, Any]) -> Policy:
        """The policy from ``[backup.keep]``, unknown or negative values refused."""
        unknown = set(table) - {"daily", "weekly", "monthly", "yearly", "last", "within"}
        if unknown:
            raise BackupError(detail=f"unknown [backup.keep] settings: {', '.join(sorted(unknown))}")
        counts = {k: v for k, v in table.items() if k != "within"}
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in counts.values()):
            raise BackupError(detail="[backup.keep] counts must be whole numbers >= 0")
        within = parse_duration(table["within"]) if "within" in table else timedelta(0)
        return cls(**counts, within=within)


_DURATION = re.compile(r"(\d+)([hdw])")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_duration(text: Any) -> timedelta:
    """``"36h"``, ``"7d"``, ``"2w3d"``: a duration in hours, days and weeks."""
    spelled = str(text).strip().lower()
    parts = _DURATION.findall(spelled)
    if not parts or "".join(n + u for n, u in parts) != spelled:
        raise BackupError(detail=f"[backup.keep] within must look like 36h, 7d or 2w3d, not {text!r}")
    return sum((int(n) * _UNITS[u] for n, u in parts), timedelta(0))


_PERIODS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


def keep(items: Iterable[T], policy: Policy, when: Callable[[T], datetime] = lambda x: x) -> set[T]:
    """The items to keep under ``policy``; ``when`` gives each item's timestamp."""
    ordered = sorted(items, key=when, reverse=True)
    if not ordered:
        return set()
    kept = {ordered[0], *ordered[: policy.last]}
    newest = when(ordered[0])
    kept |= {item for item in ordered if newest - when(item) <= policy.within}
    for name, period in _PERIODS.items():
        slots = getattr(policy, name)
        seen: set[tuple[int, ...]] = set()
        for item in ordered:
            if len(seen) >= slots:
                break
            bucket = period(when(item).astimezone(UTC))
            if bucket not in seen:
                seen.add(bucket)
                kept.add(item)
    return kept


@dataclass
class PrunePlan:
    """Archives kept and deleted, and every object a prune removes."""

    keep: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    interrupted_uploads: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "keep": self.keep,
            "delete": self.delete,
            "objects": len(self.objects),
            "interrupted_uploads": self.interrupted_uploads,
        }


def archive_time(archive_id: str) -> datetime:
    """The UTC start time encoded in an archive id."""
    return datetime.strptime(archive_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def plan_prune(
    repo: Repository,
    policy: Policy,
    *,
    now: datetime | None = None,
    grace: timedelta = timedelta(hours=6),
) -> PrunePlan:
    """What pruning would delete; nothing is changed."""
    now = now or datetime.now(UTC)
    records, _bad = repo.catalogue()
    good = [r.archive_id for r in repo.good_archives()]
    # an archive whose drill could not run (full disk, unreachable server) is unproven, not
    # damaged: nothing is known against it, so it is never deleted on that basis
    unproven = {r.archive_id for r in records if r.status == STATUS_UNVERIFIED}
    kept = keep(good, policy, archive_time) | unproven
    started = repo.started_archive_ids()
    recent = {a for a in started if now - archive_time(a) < grace}
    recorded = {r.archive_id for r in records}
    delete = [a for a in started if a not in kept and a not in recent]
    delete += [a for a in sorted(recorded - set(started)) if a not in kept]  # record, no data
    plan = PrunePlan(keep=sorted(kept | recent), delete=sorted(set(delete)))
    referenced: set[str] = set()
    for archive_id in plan.keep:
        try:
            manifest = repo.load_manifest(archive_id)
        except ArchiveNotFound:
            continue  # still uploading (recent) and so keeps all its own packs below
        except ArchiveDamaged as exc:
            raise BackupError(
                detail=f"cannot prune: kept archive {archive_id} does not open ({exc.message}); nothing was deleted"
            ) from exc
        referenced |= {pack_name(p["archive"], p["seq"]) for p in manifest["packs"]}
    for archive_id in plan.delete:
        plan.objects.append(catalogue_name(archive_id))
        plan.objects.append(manifest_name(archive_id))
        own = repo.target.list(f"archives/{archive_id}/packs/")
        doomed = [name for name in own if name not in referenced]
        plan.objects += doomed
        if len(doomed) == len(own):
            plan.objects.append(index_name(archive_id))
    plan.interrupted_uploads = len(repo.target.interrupted_uploads())
    return plan


def prune(
    repo: Repository,
    policy: Policy,
    *,
    now: datetime | None = None,
    grace: timedelta = timedelta(hours=6),
) -> PrunePlan:
    """Apply ``plan_prune``: catalogue records first, so nothing half-deleted looks good."""
    plan = plan_prune(repo, policy, now=now, grace=grace)
    for name in plan.objects:
        repo.target.delete(name)
    repo.target.remove_interrupted(older_than=grace.total_seconds())
    return plan
