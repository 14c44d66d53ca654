"""The file sensor: client data in a watched folder becomes one `file.external` event."""

from __future__ import annotations

import json
import os
import pwd
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from audit.models import AuditEvent
from dlp.sensors.files import FileSensor, SensorConfig, ignored, target_of
from tests.dlp_trace.conftest import export


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    usb = tmp_path / "media" / "usb"
    usb.mkdir(parents=True)
    return usb


@pytest.fixture
def sensor(appliance, folder: Path) -> FileSensor:
    return FileSensor(appliance, SensorConfig(folders=[folder.parent], debounce=0.3, rescan=0.5))


def events(db) -> list[AuditEvent]:
    db.rollback()  # a fresh snapshot: the sensor commits in its own sessions
    return db.scalars(select(AuditEvent).where(AuditEvent.action == "file.external")
                      .order_by(AuditEvent.seq)).all()


def test_an_exported_file_copied_out_is_recorded_against_its_exporter(book, db, sensor, folder):
    done = export(db, book.users["alice"])
    copy = folder / "clients.csv"
    copy.write_bytes(done.csv())
    sighting = sensor.process(copy)
    assert sighting is not None and sighting.how == "canary" and sighting.user == "alice"
    (event,) = events(db)
    assert (event.user, event.entity, event.count) == ("alice", "account", 200)
    meta = json.loads(event.meta)
    assert meta["path"] == str(copy) and meta["size"] == copy.stat().st_size
    assert meta["how"] == "canary" and meta["export"] == str(done.mark.export_id)
    assert len(meta["sha256"]) == 64 and meta["confidence"] >= 0.999999
    assert meta["target"] == "share"  # a temporary folder, not removable media
    assert sensor.process(copy) is None and len(events(db)) == 1  # the same file, once


def test_a_hand_made_list_of_client_addresses_is_recognised_by_fingerprint(book, db, sensor, folder):
    made = folder / "contacts for later.csv"
    made.write_text("email\n" + "\n".join(a.email.upper() for a in book.accounts[:25]) + "\n")
    sighting = sensor.process(made)
    assert sighting is not None and sighting.how == "fingerprint"
    (event,) = events(db)
    assert event.user == pwd.getpwuid(os.getuid()).pw_name
    assert event.count == 25 and event.entity == "account"
    assert json.loads(event.meta)["export"] is None


def test_unrelated_and_unreadable_files_record_nothing(book, db, sensor, folder):
    (folder / "holiday.csv").write_text("name,email\nAnn,ann@elsewhere.example\nBo,bo@x.example\n")
    (folder / "photo.jpg").write_bytes(os.urandom(4000))
    (folder / "empty.csv").write_bytes(b"")
    (folder / "two clients.csv").write_text("email\n" + "\n".join(
        a.email for a in book.accounts[:2]))  # fewer than watch_min_records
    os.mkfifo(folder / "pipe.csv")
    for path in folder.iterdir():
        assert sensor.process(path) is None
    assert sensor.process(folder / "vanished.csv") is None
    assert events(db) == []


def test_temporary_files_are_ignored(book, db, sensor, folder):
    done = export(db, book.users["bob"])
    for name in ("~$clients.xlsx", ".~lock.clients.csv#", "clients.csv.part", ".clients.csv",
                 "clients.crdownload", "clients.csv~", "clients.tmp"):
        assert ignored(Path(name))
        (folder / name).write_bytes(done.csv())
        assert sensor.process(folder / name) is None
    assert not ignored(Path("clients.csv"))
    assert events(db) == []


def test_the_watching_sensor_records_a_slow_copy_once(book, db, sensor, folder):
    done = export(db, book.users["bob"])
    stopping = threading.Event()
    watcher = threading.Thread(target=sensor.run, args=(stopping,), daemon=True)
    watcher.start()
    try:
        time.sleep(1.0)  # the observer is scheduled once run() has started it
        target = folder / "sub" / "bob.xlsx"
        target.parent.mkdir()
        data = done.xlsx()
        with target.open("wb") as out:  # written in pieces, as a copy to a slow stick is
            for start in range(0, len(data), 4096):
                out.write(data[start:start + 4096])
                out.flush()
                time.sleep(0.01)
        deadline = time.monotonic() + 30
        while not events(db) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # any further, duplicate event would arrive now
    finally:
        stopping.set()
        watcher.join(timeout=20)
    (event,) = events(db)
    assert event.user == "bob" and json.loads(event.meta)["path"] == str(target)
    assert not watcher.is_alive()


def test_config_reads_the_dlp_section(appliance, tmp_path):
    settings = appliance.settings
    settings.values["dlp"] = {"watch": [str(tmp_path / "a")], "export_dir": str(tmp_path / "b"),
                              "watch_debounce": 5, "watch_min_records": 10, "watch_max_mb": 8}
    config = SensorConfig.from_settings(settings, [str(tmp_path / "c")])
    assert config.folders == [tmp_path / "a", tmp_path / "c", tmp_path / "b"]
    assert target_of(tmp_path / "b" / "x.csv", config.export_dir) == "export_dir"
    assert target_of(Path("/media/alice/STICK/x.csv"), config.export_dir) == "usb"
    assert target_of(tmp_path / "a" / "x.csv", config.export_dir) == "share"
    assert (config.debounce, config.min_records, config.max_bytes) == (5.0, 10, 8 * 2**20)
