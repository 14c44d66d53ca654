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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from appliance import key_commands
from appliance.kernel.config import Settings
from appliance.kernel.runtime import Appliance
from appliance.keys import on_key_files_changed
from appliance.schema import is_current, upgrade
from backup.checks import register_check
from backup.cli import unseal_prompts
from backup.disaster import register_recovery_check, upgrade_schema
from backup.ledger import on_missing_archives
from backup.verify import DrillContext

log = logging.getLogger("citadel.backup")
SAMPLE = 25
RECOVERY_DRILL_STATE = "backup-last-recovery-drill"


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


def restored_appliance_boots(data_dir: Path) -> tuple[bool, str]:
    """The rebuilt appliance starts, unsealed, and answers /healthz as healthy."""
    from appliance.app import create_app

    appliance = Appliance.open(data_dir)
    try:
        response = create_app(appliance).test_client().get("/healthz")
        checks = (response.get_json(silent=True) or {}).get("checks", {})
    finally:
        appliance.dispose()
    ok = response.status_code == 200 and checks.get("keys") == "ok"
    return ok, f"/healthz answered {response.status_code}, keys {checks.get('keys', '?')}"


def copy_keys_to_targets(data_dir: Path) -> None:
    """After a key rotation or reshare, copy the wrapped key files to every backup target
    that holds a repository: archives made with the new key must stay recoverable."""
    from appliance.kernel.errors import CitadelError
    from backup.disaster import store_key_document
    from backup.repository import CONFIG
    from backup.settings import BackupSettings

    try:
        settings = BackupSettings.from_section(Settings.load(data_dir).section("backup"))
    except CitadelError:
        return  # no appliance config or no backups configured: nothing to copy to
    for name in settings.targets:
        try:
            with settings.open_target(name) as target:
                if target.exists(CONFIG):
                    store_key_document(target, data_dir)
        except Exception:  # noqa: BLE001 - one unreachable target must not stop the others
            log.exception("could not copy the wrapped keys to backup target %s", name)


def alert_missing_archives(appliance: Appliance, detail: str) -> None:
    raise_backup_alert(appliance, detail, headline="backup archives were deleted or the target rolled back",
                       action="someone with access to the backup target removed them; officers and IT must act")


register_recovery_check("boots", restored_appliance_boots)
upgrade_schema.provide(upgrade)  # a disaster recovery migrates what it restored
unseal_prompts.provide(SimpleNamespace(unseal_with_cards=key_commands._unseal_with_cards,
                                       add_share=key_commands._add_share))
on_missing_archives(alert_missing_archives)
on_key_files_changed(copy_keys_to_targets)


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
    """One backup with its drill; a failure becomes an alert for officers and a notification.

    Every ``[backup] recovery_drill_days`` a good backup is followed by the full
    recovery drill (the appliance rebuilt from the target alone).
    """
    from backup.cli import backup_appliance

    try:
        outcome = backup_appliance(appliance)
    except Exception as exc:  # any failure means no proven backup today: say so loudly
        log.exception("scheduled backup failed")
        raise_backup_alert(appliance, str(exc))
        raise
    if recovery_drill_due(appliance):
        run_recovery_drill(appliance)
    return outcome


def recovery_drill_due(appliance: Appliance, now: datetime | None = None) -> bool:
    from backup.settings import BackupSettings

    days = BackupSettings.from_section(appliance.settings.section("backup")).recovery_drill_days
    if days == 0:
        return False
    try:
        last = datetime.fromisoformat((appliance.data_dir / RECOVERY_DRILL_STATE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return True
    return (now or datetime.now(UTC)) - last >= timedelta(days=days)


def run_recovery_drill(appliance: Appliance) -> dict[str, Any]:
    """The full recovery drill; a failure alerts officers and IT like a failed backup."""
    from backup.cli import recovery_drill_appliance

    try:
        report = recovery_drill_appliance(appliance)
    except Exception as exc:  # noqa: BLE001 - the backup itself is good; the drill's failure is reported
        log.exception("recovery drill failed")
        report = {"ok": False, "error": str(exc), "archive_id": None}
    (appliance.data_dir / RECOVERY_DRILL_STATE).write_text(datetime.now(UTC).isoformat())
    if not report["ok"]:
        failed = [c["name"] for c in report.get("checks", []) if not c["ok"]]
        audit_report = report.get("audit") or {"ok": True}
        audit_detail = None if audit_report["ok"] else audit_report["detail"]
        detail = report.get("error") or audit_detail or f"failed checks: {', '.join(failed)}"
        raise_backup_alert(appliance, f"the recovery drill could not rebuild the appliance from the target: {detail}")
    return report


def raise_backup_alert(appliance: Appliance, detail: str,
                       headline: str = "the scheduled backup failed or could not be verified",
                       action: str = "no proven backup exists for today; IT must act") -> None:
    from dlp import alerts
    from dlp.notify import notify

    now = datetime.now(UTC)
    incident = {"user": "appliance", "ts": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "score": 0.9,
                "severity": "high", "scenario": "backup-failed",
                "reasons": [f"{headline}: {detail[:300]}",
                            action], "events": []}
    with appliance.session() as db:
        alert, _new = alerts.upsert(db, incident, key=f"backup@{now:%Y-%m-%d}")
        audit.record(db, "backup.failed", user=None, meta={"detail": detail[:500]})
    notify(appliance, [alert])
