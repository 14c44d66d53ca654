"""Officers see client records through an alert's evidence by name and owner only: the
evidence packet withholds what a record's changes said (old and new values, encrypted or not),
and its events still prove their place in the log to a third party."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from audit.models import AuditEvent
from crm.models import Account
from dlp.alerts import upsert

ROOT = Path(__file__).resolve().parents[2]
#: What dora writes into an account: none of it may reach an officer.
DETAILS = {"notes": "Board wants out, call before Friday", "city": "Leipzig",
           "website": "secret-deal.example"}


def _alert_on_a_change(org, db, login):
    dora = login("dora")
    account = db.scalars(select(Account).where(Account.name == "Acct sam 0")).one()
    edited = dora.post(f"/accounts/{account.id}/edit", data={
        "csrf_token": dora.csrf, "name": account.name, **DETAILS})
    assert edited.status_code == 302
    db.rollback()
    seq = db.scalars(select(AuditEvent.seq).where(AuditEvent.action == "record.update")).one()
    alert, _new = upsert(db, {"user": "dora", "ts": "2026-03-14T22:40:00Z", "score": 0.9,
                              "severity": "high", "scenario": "bulk-export",
                              "reasons": ["edits outside the book"], "events": [seq]},
                         key="officer-evidence")
    db.commit()
    return alert.id, account


def test_the_evidence_packet_names_records_and_withholds_their_details(app, org, db, login,
                                                                       tmp_path):
    alert_id, account = _alert_on_a_change(org, db, login)
    packet = login("otto").get(f"/alerts/{alert_id}/evidence.json")
    assert packet.status_code == 200
    text = packet.get_data(as_text=True)
    leaked = [v for v in DETAILS.values() if v in text]
    assert leaked == [] and '"enc"' not in text
    document = json.loads(text)
    (entry,) = document["bundle"]["events"]
    assert entry["redacted"] is True and "canonical" not in entry
    assert entry["event"]["meta"]["changes"] == ["city", "notes", "website"]
    assert {"id": str(account.id), "name": account.name, "owner": "sam"} \
        in document["packet"]["records"]
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(document["bundle"]))
    checked = subprocess.run([sys.executable, str(ROOT / "tools" / "verify_evidence.py"),
                              str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    entry["leaf_hash"] = "00" * 32  # a redacted event is still bound to the log
    path.write_text(json.dumps(document["bundle"]))
    forged = subprocess.run([sys.executable, str(ROOT / "tools" / "verify_evidence.py"),
                             str(path)], capture_output=True, text=True, check=False)
    assert forged.returncode == 1
