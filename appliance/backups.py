"""Backups wired into the appliance: what every drill checks besides the row digests,
the scheduled job, and what happens when a backup fails.

Every drill restores the archive into scratch space and then also checks that
the restored schema is the newest, that the restored audit log verifies
(chain, tree and checkpoint signatures), and that a sample of encrypted fields
decrypts with the appliance's keys. A failed or unverified backup opens a
high-severity alert for the officers (and notifies them) and is shown to IT on
the backups page.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from appliance.kernel.config import Settings
from appliance.kernel.runtime import Appliance
from appliance.schema import is_current
from backup.checks import register_check
from backup.verify import DrillContext

log = logging.getLogger("citadel.backup")
SAMPLE = 25


def schema_is_current(ctx: DrillContext) -> tuple[bool, str]:
    with ctx.engine.connect() as conn:
        current = is_current(conn)
    return current, "schema at the newest version" if current else "schema is not the newest version"


def audit_log_verifies(ctx: DrillContext) -> tuple[bool, str]:
    """The restored log's chain, tree and signed checkpoints, against the restored public keys."""
    from audit.verify import verify

    with tempfile.TemporaryDirectory() as empty:
        # the anchor file is copied at another moment than the database snapshot: the restored
        # database is checked on its own (chain, tree, its signed checkpoints)
        root = Path(empty)
        (root / "keys").mkdir()
        restored_keys = ctx.files_dir / "keys" / "keyring.json"
        if restored_keys.exists():
            (root / "keys" / "keyring.json").write_bytes(restored_keys.read_bytes())
        restored_audit = ctx.files_dir / "audit"
        for name in ("signing.pub",):
            if (restored_audit / name).exists():
                (root / "audit").mkdir(exist_ok=True)
                (root / "audit" / name).write_bytes((restored_audit / name).read_bytes())
        settings = Settings(root, {"audit": _audit_section(ctx)})
        with Session(ctx.engine) as db:
            report = verify(db, settings, with_anchor=False)
    if report.ok:
        return True, f"audit log verifies ({report.end} events, {report.checkpoints} checkpoints)"
    first = report.first
    return False, f"audit log: {first.kind} at {first.position}" if first else "audit log does not verify"


def _audit_section(ctx: DrillContext) -> dict[str, Any]:
    config = ctx.files_dir / "citadel.toml"
    if config.exists():
        import tomllib

        return dict(tomllib.loads(config.read_text()).get("audit", {}))
    return {}


def fields_decrypt(ctx: DrillContext) -> tuple[bool, str]:
    """A sample of encrypted values in the restored copy decrypts with this appliance's keys."""
    from crm.models import Account, Contact

    decrypted = 0
    with Session(ctx.engine) as db:
        for model, names in ((Account, ("email", "phone", "tax_id", "address")), (Contact, ("email", "phone"))):
            for record in db.scalars(select(model).limit(SAMPLE)):
                for name in names:
                    getattr(record, name)  # raises if it does not decrypt
                    decrypted += 1
    return True, f"{decrypted} encrypted values decrypted"


register_check("schema-current", schema_is_current)
register_check("audit-log", audit_log_verifies)
register_check("fields-decrypt", fields_decrypt)


def scheduled_backup(appliance: Appliance) -> object:
    """Back up when ``[backup] schedule`` (HH:MM UTC, daily) is due; alert when it fails."""
    from backup.settings import BackupSettings

    section = appliance.settings.section("backup")
    requested = appliance.data_dir / "backup-requested"
    if requested.exists():  # IT asked for one from the backups page
        requested.unlink()
        return run_and_alert(appliance)
    if not section.get("schedule"):
        return None
    settings = BackupSettings.from_section(section)
    state = appliance.data_dir / "backup-last-run"
    try:
        last = datetime.fromisoformat(state.read_text().strip())
    except (FileNotFoundError, ValueError):
        last = datetime.now(UTC)
        state.write_text(last.isoformat())
    due = settings.next_run(last)
    if due is None or due > datetime.now(UTC):
        return None
    state.write_text(datetime.now(UTC).isoformat())
    return run_and_alert(appliance)


def run_and_alert(appliance: Appliance) -> object:
    """One backup with its drill; a failure becomes an alert for officers and a notification."""
    from backup.cli import backup_appliance

    try:
        return backup_appliance(appliance)
    except Exception as exc:  # any failure means no proven backup today: say so loudly
        log.exception("scheduled backup failed")
        raise_backup_alert(appliance, str(exc))
        raise


def raise_backup_alert(appliance: Appliance, detail: str) -> None:
    from dlp import alerts
    from dlp.notify import notify

    now = datetime.now(UTC)
    incident = {"user": "appliance", "ts": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "score": 0.9,
                "severity": "high", "scenario": "backup-failed",
                "reasons": [f"the scheduled backup failed or could not be verified: {detail[:300]}",
                            "no proven backup exists for today; IT must act"], "events": []}
    with appliance.session() as db:
        alert, _new = alerts.upsert(db, incident, key=f"backup@{now:%Y-%m-%d}")
        audit.record(db, "backup.failed", user=None, meta={"detail": detail[:500]})
    notify(appliance, [alert])
