"""Files on accounts: encrypted on disk, rights of the account, audited, tamper-evident."""

from __future__ import annotations

import io
import re

from sqlalchemy import select

from audit.models import AuditEvent
from crm.attachments import Attachment, path_of

CONTENT = b"%PDF-1.4 contract for ACME: confidential terms 7 percent discount\n" * 50


def _upload(client, account, name="contract.pdf", content=CONTENT):
    return client.post(f"/accounts/{account.id}/attachments",
                       data={"csrf_token": client.csrf, "file": (io.BytesIO(content), name)},
                       content_type="multipart/form-data")


def test_upload_download_encrypted_at_rest(app, make, db, login, data_dir):
    alice = make.user("alice")
    account = make.account(alice)
    client = login("alice")
    assert _upload(client, account).status_code == 302
    attachment = db.scalars(select(Attachment)).one()
    stored = path_of(data_dir, attachment.id).read_bytes()
    assert b"confidential terms" not in stored and b"contract" not in stored
    response = client.get(f"/attachments/{attachment.id}")
    assert response.status_code == 200 and response.get_data() == CONTENT
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in response.headers["Content-Security-Policy"]
    page = client.get(f"/accounts/{account.id}").get_data(as_text=True)
    assert "contract.pdf" in page
    views = db.scalars(select(AuditEvent).where(AuditEvent.entity == "attachment")).all()
    assert [e.action for e in views] == ["record.create", "record.view"]


def test_path_names_are_only_names(app, make, db, login, data_dir):
    alice = make.user("alice")
    account = make.account(alice)
    client = login("alice")
    _upload(client, account, name="../../etc/passwd")
    _upload(client, account, name="..\\..\\boot.ini")
    names = sorted(a.filename for a in db.scalars(select(Attachment)))
    assert names == ["boot.ini", "passwd"]
    files = sorted(p.name for p in (data_dir / "attachments").iterdir())
    assert all(re.fullmatch(r"[0-9a-f-]{36}\.bin", n) for n in files)


def test_other_peoples_files_do_not_exist(app, make, db, login):
    alice = make.user("alice", team="North")
    make.user("bob", team="South")
    account = make.account(alice)
    _upload(login("alice"), account)
    attachment = db.scalars(select(Attachment)).one()
    bob = login("bob")
    assert bob.get(f"/attachments/{attachment.id}").status_code == 404
    assert bob.post(f"/attachments/{attachment.id}/delete", data={"csrf_token": bob.csrf}).status_code == 404
    assert _upload(bob, account).status_code == 404


def test_a_tampered_file_is_refused(app, make, db, login, data_dir):
    alice = make.user("alice")
    account = make.account(alice)
    client = login("alice")
    _upload(client, account)
    attachment = db.scalars(select(Attachment)).one()
    path = path_of(data_dir, attachment.id)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    response = client.get(f"/attachments/{attachment.id}")
    assert response.status_code == 409
    assert "restore it from a backup" in response.get_data(as_text=True)
    assert b"confidential" not in response.get_data()


def test_delete_removes_the_file(app, make, db, login, data_dir):
    alice = make.user("alice")
    account = make.account(alice)
    client = login("alice")
    _upload(client, account)
    attachment = db.scalars(select(Attachment)).one()
    assert client.post(f"/attachments/{attachment.id}/delete", data={"csrf_token": client.csrf}).status_code == 302
    assert not path_of(data_dir, attachment.id).exists()
