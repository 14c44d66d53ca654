"""The host file sensor: notice client data leaving through watched folders.

A watchdog observer follows the folders in ``[dlp] watch`` (removable media
under ``/media``, sync folders, outside shares) and ``[dlp] export_dir``.
When a file there has been quiet for ``watch_debounce`` seconds it is read
and recognised:

- by its marks: ``dlp.trace`` names the export it came from (``how`` is
  ``canary`` when a canary row proved it, else ``watermark``), and the event's
  user is that export's user;
- else by fingerprint: its e-mails, phones, tax ids and record ids are
  looked up in the CRM's blind indexes (``crm.readapi``); with
  ``watch_min_records`` or more real records recognised, the event's user is
  the file's owner.

Either way one ``file.external`` audit event records it (DESIGN.md): ``count``
the client records recognised, ``meta`` the path, size, SHA-256, how, and
the export, and the ``target`` (``usb`` under /media, /run/media or /mnt,
``export_dir``, else ``share``). Temporary files (office lock files, partial downloads, editor
swap files) are ignored; an unreadable file is logged and skipped, never
fatal. The same content at the same path is recorded once.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

import audit
from appliance import keys
from appliance.kernel.runtime import Appliance
from crm.readapi import entity_of
from dlp.sensors.readers import UnreadableFile, read_table

log = logging.getLogger(__name__)

IGNORED_PREFIXES = ("~$", ".~lock.", ".#", "~", ".")
IGNORED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download",
                    ".swp", ".swx", ".lock", "~", ".kate-swp")
REMOVABLE = ("/media/", "/run/media/", "/mnt/")


@dataclass
class SensorConfig:
    """Where to watch and how patiently (``[dlp]`` in citadel.toml)."""

    folders: list[Path] = field(default_factory=list)
    export_dir: Path | None = None
    debounce: float = 2.0
    min_records: int = 3
    max_bytes: int = 256 * 1024 * 1024
    rescan: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any, extra: list[str] | tuple[str, ...] = ()) -> SensorConfig:
        section = settings.section("dlp")
        folders = [*section.get("watch", []), *extra]
        export_dir = Path(section["export_dir"]).expanduser() if section.get("export_dir") else None
        if export_dir is not None:
            folders.append(str(export_dir))
        return cls(folders=[Path(f).expanduser() for f in dict.fromkeys(str(f) for f in folders)],
                   export_dir=export_dir,
                   debounce=float(section.get("watch_debounce", cls.debounce)),
                   min_records=int(section.get("watch_min_records", cls.min_records)),
                   max_bytes=int(float(section.get("watch_max_mb", cls.max_bytes / 2**20)) * 2**20))


@dataclass
class Sighting:
    """A file the sensor recognised as carrying client data."""

    path: str
    size: int
    sha256: str
    how: str
    user: str
    count: int
    entity: str | None
    export: str | None
    confidence: float | None = None

    target: str = "share"

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256,
                                "how": self.how, "export": self.export, "target": self.target}
        if self.confidence is not None:
            meta["confidence"] = self.confidence
        return meta


def ignored(path: Path) -> bool:
    """Temporary and hidden files: office lock files, partial downloads, swap files."""
    name = path.name
    return name.startswith(IGNORED_PREFIXES) or name.lower().endswith(IGNORED_SUFFIXES)


def target_of(path: Path, export_dir: Path | None) -> str:
    """Where the file went: ``usb`` (removable media), ``export_dir``, else ``share``."""
    if export_dir is not None and export_dir in path.parents:
        return "export_dir"
    if str(path).startswith(REMOVABLE):
        return "usb"
    return "share"


def owner_name(st: os.stat_result) -> str:
    try:
        return pwd.getpwuid(st.st_uid).pw_name[:64]
    except KeyError:
        return f"uid {st.st_uid}"


class FileSensor:
    """Recognises client data in files and records ``file.external`` for each one."""

    def __init__(self, appliance: Appliance, config: SensorConfig) -> None:
        self.appliance, self.config = appliance, config
        self._pending: dict[str, float] = {}
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()
        self._observer: Any = None
        self._watched: set[str] = set()

    # -- one file --

    def examine(self, path: str | Path) -> Sighting | None:
        """What the file holds, or None: not a file, ignored, unreadable, or no client data.

        Raises ``Sealed`` while the appliance is sealed (the file is then retried).
        """
        from dlp.trace import trace_report

        path = Path(path)
        if ignored(path):
            return None
        try:
            st = path.stat()
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_size > self.config.max_bytes:
            return None
        try:
            table = read_table(path, max_bytes=self.config.max_bytes)
        except UnreadableFile as exc:
            log.info("not a table: %s", exc.message)
            return None
        if self._seen.get(str(path)) == table.sha256:
            return None
        target = target_of(path, self.config.export_dir)
        with self.appliance.session() as db:
            report = trace_report(db, table, settings=self.appliance.settings)
            if report.matches:
                best = report.matches[0]
                return Sighting(str(path), table.size, table.sha256,
                                "canary" if best.canaries else "watermark", best.user,
                                report.recognised, best.entity, best.export_id or best.mark_id,
                                best.confidence, target)
            if report.strong_rows < self.config.min_records:
                return None
            entity = entity_of(db, report.record_ids)
        return Sighting(str(path), table.size, table.sha256, "fingerprint", owner_name(st),
                        report.recognised, entity, None, None, target)

    def process(self, path: str | Path) -> Sighting | None:
        """Examine a file and record what it holds; never raises (a sensor must not stop)."""
        try:
            if keys.sync(self.appliance.data_dir) is None:
                log.info("sealed: %s waits until the appliance is unsealed", path)
                return None
            sighting = self.examine(path)
            if sighting is None:
                return None
            with self.appliance.session() as db:
                audit.record(db, "file.external", user=sighting.user, entity=sighting.entity,
                             count=sighting.count, meta=sighting.meta())
            self._seen[sighting.path] = sighting.sha256
            log.warning("client data in %s (%s, %d records, user %s)", sighting.path,
                        sighting.how, sighting.count, sighting.user)
            return sighting
        except Exception:  # logged with its traceback for the operator; the sensor goes on
            log.exception("could not examine %s", path)
            return None

    # -- watching --

    def notice(self, path: str, delay: float | None = None) -> None:
        """Queue a path; it is examined once nothing has touched it for the debounce time."""
        with self._lock:
            self._pending[path] = time.monotonic() + (self.config.debounce if delay is None
                                                      else delay)

    def due(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            ready = [p for p, at in self._pending.items() if at <= now]
            for p in ready:
                del self._pending[p]
        return ready

    def start(self) -> None:
        self._observer = Observer()
        self._schedule_new()
        self._observer.start()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None

    def run(self, stopping: threading.Event, *, scan: bool = False) -> None:
        """Watch until ``stopping`` is set; ``scan`` first examines the files already there."""
        self.start()
        try:
            if scan:
                self.scan()
            next_rescan = time.monotonic() + self.config.rescan
            while not stopping.is_set():
                for path in self.due():
                    if self.process(path) is None and self._sealed():
                        self.notice(path, delay=self.config.rescan)  # retry once unsealed
                if time.monotonic() >= next_rescan:
                    self._schedule_new()
                    next_rescan = time.monotonic() + self.config.rescan
                stopping.wait(0.2)
        finally:
            self.stop()

    def scan(self) -> list[Sighting]:
        """Examine every file under the watched folders now."""
        found = []
        for folder in self.config.folders:
            for root, _dirs, names in os.walk(folder):
                for name in names:
                    sighting = self.process(Path(root) / name)
                    if sighting is not None:
                        found.append(sighting)
        return found

    def _sealed(self) -> bool:
        try:
            return keys.sync(self.appliance.data_dir) is None
        except Exception:
            return True

    def _schedule_new(self) -> None:
        """Watch configured folders that exist now, and file systems mounted under them
        since (a USB stick mounted below /media needs a watch of its own)."""
        if self._observer is None:
            return
        for folder in [*self.config.folders, *_mounts_under(self.config.folders)]:
            key = str(folder)
            if key in self._watched or not folder.is_dir():
                continue
            try:
                self._observer.schedule(_Handler(self), key, recursive=True)
                self._watched.add(key)
                log.info("watching %s", key)
            except OSError as exc:
                log.warning("cannot watch %s: %s", key, exc)


class _Handler(FileSystemEventHandler):
    def __init__(self, sensor: FileSensor) -> None:
        self.sensor = sensor

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("deleted", "opened", "closed_no_write"):
            return
        path = getattr(event, "dest_path", "") or event.src_path
        path = path.decode() if isinstance(path, bytes) else path
        if not ignored(Path(path)):
            self.sensor.notice(path)


def _mounts_under(folders: list[Path]) -> list[Path]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [Path(line.split()[1].replace("\\040", " ")) for line in lines if len(line.split()) > 1]
    return [p for p in points for f in folders if p != f and f in p.parents]


