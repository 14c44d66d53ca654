"""No client secret in clear at rest: not in the SQLite file or its WAL, not in PostgreSQL's
relation files or its WAL, not in the audit log, not in the data directory or the logs."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SECRETS = {
    "email": "zebedee.quirk@secret-client.example",
    "phone": "+49 30 8675309",
    "tax_id": "DE918273645",
    "address": "Geheimweg 17, 10115 Berlin",
    "notes": "Prefers payment via offshore vehicle Q7",
    "contact_email": "ursula.vexley@secret-client.example",
    "activity": "Discussed the Wolfsburg tender numbers",
}


def _leave_traces(client, make, db) -> None:
    """Use the app the way staff do, so every path that writes client data runs."""
    from crm.models import Account

    client.post("/accounts/new", data={
        "csrf_token": client.csrf, "name": "Secretive GmbH", "email": SECRETS["email"],
        "phone": SECRETS["phone"], "address": SECRETS["address"], "notes": SECRETS["notes"],
        "country": "DE"})
    account = db.query(Account).one()
    client.post(f"/contacts/new?account_id={account.id}", data={
        "csrf_token": client.csrf, "first_name": "Ursula", "last_name": "Vexley",
        "email": SECRETS["contact_email"]})
    client.post(f"/activities/new?account_id={account.id}", data={
        "csrf_token": client.csrf, "kind": "note", "subject": "Meeting", "body": SECRETS["activity"]})
    client.post(f"/accounts/{account.id}/edit", data={"csrf_token": client.csrf,
                                                      "phone": "+49 30 0000000"})
    client.get(f"/accounts?q={SECRETS['email']}")
    client.post("/accounts/export", data={"csrf_token": client.csrf, "q": SECRETS["email"]})
    csv = f"name,email,tax_id\nImported AG,{SECRETS['email'].replace('zebedee', 'imp')},{SECRETS['tax_id']}\n"
    client.post("/import", data={"csrf_token": client.csrf, "file": (io.BytesIO(csv.encode()), "c.csv")},
                content_type="multipart/form-data")


def _found_in(blob: bytes) -> list[str]:
    return [name for name, value in SECRETS.items() if value.encode() in blob
            or value.lower().encode() in blob]


def test_nothing_readable_in_files_or_logs(app, make, db, login, data_dir, database_url, caplog):
    make.user("alice", roles=("manager",))
    client = login("alice")
    with caplog.at_level(logging.DEBUG):
        _leave_traces(client, make, db)
    app.extensions["citadel.engine"].dispose()
    leaks = {}
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    if database_url.startswith("sqlite"):
        db_file = Path(make_url(database_url).database)
        files += [p for p in db_file.parent.glob(db_file.name + "*")]
    else:
        files += _postgres_files(database_url)
    assert files, "nothing was scanned"
    for path in files:
        found = _found_in(path.read_bytes())
        if found:
            leaks[str(path)] = found
    logged = _found_in("\n".join(r.getMessage() for r in caplog.records).encode())
    assert leaks == {}
    assert logged == []


def _postgres_files(database_url: str) -> list[Path]:
    """The test database's relation files and the server's WAL, flushed to disk first."""
    url = make_url(database_url).set(drivername="postgresql+psycopg")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("CHECKPOINT"))
        data = Path(conn.scalar(text("SHOW data_directory")))
        oid = conn.scalar(text("SELECT oid FROM pg_database WHERE datname = current_database()"))
    engine.dispose()
    relations = [p for p in (data / "base" / str(oid)).iterdir() if p.is_file()]
    wal = sorted((data / "pg_wal").glob("0*"), key=lambda p: p.stat().st_mtime)[-2:]
    return relations + wal
