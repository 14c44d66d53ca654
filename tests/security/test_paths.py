"""Path traversal: whatever file name or path a person sends (static files, CSV import
uploads, attachments), nothing outside the appliance's own places is read or written, stored
files are named by the appliance, and names offered for download carry no path."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from crm.access import Entity
from tests.security.routes import targets

#: Names that try to leave the folder they are put in.
TRAVERSING = ("../../../../../../tmp/citadel-pwned.csv", "..\\..\\..\\citadel-pwned.csv",
              "/etc/cron.d/citadel-pwned", "C:\\Windows\\citadel-pwned.csv",
              "....//....//citadel-pwned.csv", "%2e%2e%2f%2e%2e%2fcitadel-pwned.csv",
              "a/../../../citadel-pwned.csv", "..", ".", "citadel-pwned.csv\u202egpj.exe")
#: Paths under /static/ that try to reach the code, the configuration or the system.
STATIC = ("/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e/%2e%2e/pyproject.toml",
          "/static/..%5c..%5cappliance%5capp.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
          "/static/....//....//etc/passwd", "/static/..;/app.py", "/static/%252e%252e/app.py",
          "/static/citadel.css/../../app.py", "/static/%c0%ae%c0%ae/app.py")
SECRETS = re.compile(r"def create_app|root:.*:0:0|\[project\]|secret_key|BEGIN .*PRIVATE")


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def test_static_files_never_serve_anything_outside_the_static_folder(app, org):
    client = app.test_client()
    assert client.get("/static/citadel.css").status_code == 200
    for path in STATIC:
        response = client.get(path, follow_redirects=True)  # "//" is merged by a redirect
        body = response.get_data(as_text=True)
        assert response.status_code in (400, 404), (path, response.status_code)
        assert all(r.request.path.startswith("/static/") for r in response.history), path
        assert not SECRETS.search(body), path


def test_import_upload_names_touch_no_file(app, org, login, data_dir, tmp_path):
    sam = login("sam")
    root = tmp_path.parent  # everything this test run may write lives below
    before = _files(data_dir)
    for name in TRAVERSING:
        response = sam.post("/import", data={"csrf_token": sam.csrf,
                                             "file": (io.BytesIO(b"name,city\nTraversal AB,Oslo\n"), name)},
                            content_type="multipart/form-data")
        assert response.status_code in (200, 400, 422), (name, response.status_code)
    assert not list(root.rglob("citadel-pwned*"))
    assert not Path("/tmp/citadel-pwned.csv").exists()
    assert not Path("/etc/cron.d/citadel-pwned").exists()
    new = _files(data_dir) - before
    assert all(not str(p).startswith("..") for p in new)


def test_attachment_names_become_names_not_paths(app, org, db, login, data_dir, tmp_path):
    sam = login("sam")
    account = targets(org, db).records[Entity.ACCOUNT]
    before = _files(data_dir)
    for name in TRAVERSING:
        response = sam.post(f"/accounts/{account}/attachments", data={
            "csrf_token": sam.csrf, "file": (io.BytesIO(b"contents of " + name.encode()), name)},
            content_type="multipart/form-data")
        assert response.status_code == 302, (name, response.status_code)
    new = _files(data_dir) - before
    assert len(new) == len(TRAVERSING)
    assert all(re.fullmatch(r"attachments/[0-9a-f-]{36}\.bin", str(p)) for p in new), new
    assert not list(tmp_path.parent.rglob("citadel-pwned*"))
    from sqlalchemy import select

    from crm.attachments import Attachment

    db.rollback()
    for attachment in db.scalars(select(Attachment)):
        download = sam.get(f"/attachments/{attachment.id}")
        if download.status_code != 200:
            continue
        disposition = download.headers["Content-Disposition"]
        names = re.findall(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)", disposition)
        assert names and all(_plain_name(n) for n in names), disposition
        assert download.headers["Content-Security-Policy"].startswith("sandbox")


def _plain_name(name: str) -> bool:
    from urllib.parse import unquote

    text = unquote(name)
    return "/" not in text and "\\" not in text and not text.startswith(".") and \
        "\u202e" not in text


def test_export_and_download_names_are_made_by_the_appliance(app, org, db, login):
    dora, officer = login("dora"), login("otto")
    responses: list[Any] = [
        dora.post("/accounts/export", data={"csrf_token": dora.csrf, "q": "../../etc/passwd"}),
        org.api(app, "dora").post("/api/v1/exports", json={"resource": "deals",
                                                            "q": "..\\..\\boot.ini"}),
        officer.get("/audit/export.jsonl?user=../../x"),
        officer.get(f"/alerts/{org.alert_id}/evidence.json"),
    ]
    for response in responses:
        assert response.status_code == 200
        disposition = response.headers["Content-Disposition"]
        name = re.search(r'filename="([^"]+)"', disposition).group(1)
        assert re.fullmatch(r"[A-Za-z0-9._-]+", name) and ".." not in name, disposition
