"""The audit log's record of backups, compared with what a target holds.

Whoever controls the target can delete the newest archives, or put back
yesterday's copy of the whole target: every object left is genuine and signed,
so the target alone cannot tell. The appliance's audit log can: every backup
writes a ``backup.run`` event (archive id, status, target), every prune a
``backup.prune`` event naming what it deleted, and ``appliance backup
init-target --force`` a ``backup.init_target`` event that writes off what the
target held before. An archive the log says was
written to this target, and never pruned, must still be there (its manifest
and its catalogue record); one that is not is reported by id and time, and
raises an alert for the officers and IT (through the listeners the
composition root registers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from backup.targets.base import Target

log = logging.getLogger(__name__)
PAGE = 500

_LISTENERS: list[Callable[[Any, str], None]] = []


@dataclass(frozen=True)
class MissingArchive:
    """An archive the audit log records on this target that the target no longer has."""

    archive_id: str
    recorded: str  #: when its ``backup.run`` was recorded (UTC, ISO 8601)
    status: str  #: the status that run recorded
    lacks: str  #: "manifest", "catalogue record" or "manifest and catalogue record"

    def describe(self) -> str:
        return f"archive {self.archive_id} (backed up {self.recorded}, {self.status}) has no {self.lacks}"

    def as_dict(self) -> dict[str, Any]:
        return {"archive_id": self.archive_id, "recorded": self.recorded, "status": self.status,
                "lacks": self.lacks}


def on_missing_archives(listener: Callable[[Any, str], None]) -> None:
    """Call ``listener(appliance, detail)`` whenever archives are found missing."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def report_missing(appliance: Any, detail: str) -> None:
    for listener in list(_LISTENERS):
        try:
            listener(appliance, detail)
        except Exception:  # noqa: BLE001 - the finding is printed and exits non-zero anyway
            log.exception("could not raise the alert for missing backup archives")


def recorded_archives(session: Session, target_label: str) -> dict[str, tuple[str, str]]:
    """Archive id -> (time, status) of every ``backup.run`` to this target not pruned since."""
    from audit.query import Search, search

    runs: dict[str, tuple[str, str]] = {}
    criteria = Search(actions=("backup.run", "backup.prune", "backup.init_target"), newest_first=False)
    page = 1
    while True:
        found = search(session, criteria, page=page, per_page=PAGE)
        for event in found.items:
            meta = event.get("meta") or {}
            if event["action"] == "backup.run" and meta.get("target") == target_label and meta.get("archive"):
                runs[str(meta["archive"])] = (str(event["ts"]), str(meta.get("status", "?")))
            elif event["action"] == "backup.init_target" and meta.get("target") == target_label:
                runs.clear()  # IT started a new repository there on purpose: older archives are written off
            elif event["action"] == "backup.prune":
                for archive_id in meta.get("deleted") or []:
                    runs.pop(str(archive_id), None)
        if page * PAGE >= found.total:
            return runs
        page += 1


def missing_archives(session: Session, target: Target) -> list[MissingArchive]:
    """Recorded archives whose manifest or catalogue record is gone from ``target``, oldest first.

    Reads only object names, so it needs no key and works on a target whose
    repository config is gone too.
    """
    recorded = recorded_archives(session, target.label)
    if not recorded:
        return []
    manifests = {name.split("/")[1] for name in target.list("archives/")
                 if name.count("/") == 2 and name.endswith("/manifest")}
    records = {name.removeprefix("catalogue/").removesuffix(".json") for name in target.list("catalogue/")}
    missing = []
    for archive_id, (when, status) in recorded.items():  # in the log's order: ids tell only the second
        lacks = [what for what, present in (("manifest", archive_id in manifests),
                                            ("catalogue record", archive_id in records)) if not present]
        if lacks:
            missing.append(MissingArchive(archive_id, when, status, " and ".join(lacks)))
    return missing


def summary(missing: list[MissingArchive]) -> str:
    """One line naming the newest missing archive and how many are missing."""
    newest = missing[-1]
    more = f" and {len(missing) - 1} older" if len(missing) > 1 else ""
    return f"{newest.describe()}{more}"
