"""Canaries live only in exported files and leak tracing's tables: never in the CRM."""

from __future__ import annotations

import html
import re
import uuid

from sqlalchemy import func, select

from appliance.auth import issue_token
from crm.access import Entity
from crm.models import Account, Contact
from dlp.trace import canary_positions
from tests.dlp_trace.conftest import export


def test_canaries_are_in_no_list_count_search_or_report(app, book, db, make, login):
    exports = [export(db, book.users[u]) for u in ("mark", "nina")]
    exports.append(export(db, book.users["mark"], Entity.CONTACT))
    canaries = [(done, row) for done in exports for row in done.canary_rows()]
    assert len(canaries) == 9
    assert db.scalar(select(func.count()).select_from(Account)) == 400
    assert db.scalar(select(func.count()).select_from(Contact)) == 120

    director = make.user("diana", roles=("director",))
    token = issue_token(db, director, "test")
    db.commit()
    api = app.test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert api.get("/api/v1/accounts?per_page=1").json["total"] == 400
    assert api.get("/api/v1/contacts?per_page=1").json["total"] == 120
    for done, row in canaries:
        cells = dict(zip(done.header, row, strict=True))
        assert api.get(f"/api/v1/{done.mark.entity}s/{cells['id']}").status_code == 404
        for term in (cells.get("email"), cells.get("phone")):
            if term:
                page = api.get(f"/api/v1/{done.mark.entity}s", query_string={"q": term})
                assert page.json["total"] == 0, term
        if cells.get("last_name"):  # a decoy's surname may well be a real contact's too
            page = api.get(f"/api/v1/{done.mark.entity}s", query_string={"q": cells["last_name"]})
            assert cells["id"] not in {item["id"] for item in page.json["items"]}

    web = login("diana")
    names = [dict(zip(d.header, r, strict=True)).get("name") for d, r in canaries]
    for path in ("/accounts", "/reports", "/reports/funnel", "/reports/revenue", "/"):
        page = web.get(path)
        assert page.status_code == 200, path
        text = html.unescape(page.get_data(as_text=True)).replace("\xa0", " ")
        # a whole element's text: a decoy "Weber GmbH" may be the start of a real "Weber GmbH 7"
        shown = {t.strip() for t in re.findall(r">([^<>]+)<", text)}
        assert not shown & {n.replace("\xa0", " ") for n in names if n}, path


def test_an_export_imported_back_shows_which_rows_are_canaries(book, db):
    done = export(db, book.users["mark"])
    found = canary_positions(db, done.header, done.marked)
    assert found == sorted(c.position for c in done.mark.canaries)
    assert canary_positions(db, done.header, done.rows) == []
    strangers = [[str(uuid.uuid4()), "Nobody GmbH", *[""] * (len(done.header) - 2)]]
    assert canary_positions(db, done.header, strangers) == []
