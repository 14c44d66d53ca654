"""Cross-site scripting, stored and reflected: a payload goes into every text a person can
type that is shown back (record names and notes, user names, comments, reasons, search
boxes, CSV cells, file names, even a failed sign-in's user name, which officers read in the
audit trail); then every page of the app is read as every kind of person. The payload must
never come back as markup, and each one must come back at least once (escaped), so the sweep
proves it looked where the text is shown.

In a real browser, with the payload on the pages, no injected script runs; and when markup is
forced into a page (as if a template forgot to escape), the Content-Security-Policy still
stops inline scripts and handlers.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from crm.access import MODELS, Entity
from crm.export_requests import ExportRequest
from crm.identity import User
from crm.rights import RightsChange
from dlp.alerts import Alert
from tests.factories import PASSWORD, csrf_token
from tests.security.routes import routes, targets
from tests.security.world import BY_ROLE, Org

#: Audit actions a GET may write: reading, printing, searching, and refusals.
READ_ACTIONS = {"record.view", "record.search", "api.read", "report.run", "print", "audit.search",
                "audit.view", "audit.export", "alert.view", "alert.evidence", "access.denied",
                "input.rejected"}
#: Raw markup any payload would leave if a page did not escape it.
INJECTED = re.compile(r"<script>xsshit|<img src=x onerror|<svg/onload|\" autofocus onfocus=",
                      re.IGNORECASE)


def payload(tag: str) -> str:
    """Breaks out of text, of attributes in either quote, and of tags; calls ``xssHit(tag)``."""
    return (f"\" autofocus onfocus=xssHit('{tag}') '><script>xssHit('{tag}')</script>"
            f"<img src=x onerror=xssHit('{tag}')>")


def file_payload(tag: str) -> str:
    """A file name as a browser sends it (a double quote would arrive as %22)."""
    return f"'><img src=x onerror=xssHit('{tag}')>.pdf"


def shown(html: str) -> set[str]:
    """Tags of payloads a page shows, escaped (or with quotes made harmless, as file names)."""
    return set(re.findall(r"xssHit\((?:&#39;|_)([a-z]+(?:_[a-z]+)*)(?:&#39;|_)\)", html))


STORED = ("acct_name", "acct_industry", "acct_city", "acct_address", "acct_notes", "acct_website",
          "cont_first", "cont_last", "cont_title", "cont_notes", "deal_name", "act_subject",
          "act_body", "user_full", "alert_comment", "change_reason", "export_reason",
          "freeze_reason", "login_name", "beacon_page", "file_name")
REFLECTED = ("q_accounts", "q_contacts", "q_deals", "q_activities", "audit_user", "alert_user",
             "next")


def _post(client: Any, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    response = client.post(path, data={"csrf_token": client.csrf, **data}, **kwargs)
    assert response.status_code in (200, 302), (path, response.status_code,
                                                 response.get_data(as_text=True)[:300])
    return response


def plant(app: Any, org: Org, db: Any, login: Any) -> list[str]:
    """Every stored payload, typed where a person types it. Returns extra URLs to visit."""
    where = targets(org, db)
    rec = where.records
    dora, sam, otto = login("dora"), login("sam"), login("otto")
    _post(dora, f"/accounts/{rec[Entity.ACCOUNT]}/edit", {
        "name": payload("acct_name"), "industry": payload("acct_industry")[:80],
        "city": payload("acct_city")[:100], "address": payload("acct_address"),
        "notes": payload("acct_notes"), "website": "x.io/\"'><svg/onload=xssHit('acct_website')>"})
    _post(dora, f"/contacts/{rec[Entity.CONTACT]}/edit", {
        "first_name": payload("cont_first")[:100], "last_name": payload("cont_last")[:100],
        "title": payload("cont_title")[:120], "notes": payload("cont_notes")})
    _post(dora, f"/deals/{rec[Entity.DEAL]}/edit", {"name": payload("deal_name")})
    _post(dora, f"/activities/new?account_id={rec[Entity.ACCOUNT]}", {
        "kind": "call", "subject": payload("act_subject"), "body": payload("act_body")})
    ivan, iris = login("ivan"), login("iris")
    _post(ivan, "/admin/users", {"username": "mallory", "full_name": payload("user_full"),
                                 "password": PASSWORD, "roles": "staff", "team": "North"})
    _post(iris, f"/admin/changes/{org.rights_change_id}/reject", {"reason": payload("change_reason")})
    _post(otto, f"/alerts/{org.alert_id}/comment", {"body": payload("alert_comment")})
    _post(otto, f"/admin/users/{org.people['tina'].id}/freeze", {"reason": payload("freeze_reason")})
    _post(sam, "/exports/requests", {"entity": "account", "rows": "900",
                                     "reason": payload("export_reason")})
    _post(sam, f"/accounts/{rec[Entity.ACCOUNT]}/attachments",
          {"file": (io.BytesIO(b"%PDF"), file_payload("file_name"))}, content_type="multipart/form-data")
    beacon = sam.post("/api/v1/beacons", json={"action": "copy", "page": payload("beacon_page")},
                      headers={"X-CSRFToken": sam.csrf})
    assert beacon.status_code == 201
    stranger = app.test_client()
    stranger.post("/login", data={"username": "<script>xssHit('login_name')</script>",
                                  "password": "guess", "csrf_token": csrf_token(stranger)})
    db.rollback()
    mallory = db.scalars(select(User).where(User.username == "mallory")).one()
    seqs = db.scalars(select(AuditEvent.seq).where(AuditEvent.action.in_(
        ("copy", "login.failed", "alert.comment", "user.freeze", "rights.reject",
         "export.request")))).all()
    return [*(f"/audit/events/{seq}" for seq in seqs), f"/admin/users/{mallory.id}",
            "/audit/users/%3Cscript%3ExssHit('login_name')%3C%2Fscript%3E"]


def reflected_urls() -> dict[str, str]:
    from urllib.parse import quote

    return {f"/{name}?q={quote(payload('q_' + name))}": "q_" + name
            for name in ("accounts", "contacts", "deals", "activities")} | {
        f"/audit?user={quote(payload('audit_user')[:60])}": "audit_user",
        f"/alerts?user={quote(payload('alert_user'))}": "alert_user",
        f"/login?next={quote(payload('next'))}": "next",
    }


def sweep(app: Any, org: Org, db: Any, clients: dict[str, Any],
          extra: list[str]) -> tuple[int, list[str], set[str]]:
    """Read every GET page as each person; return pages read, injections, tags seen."""
    where = targets(org, db)
    urls = [r.url for r in routes(app, where, frozenset({"GET"}))] + extra + list(reflected_urls())
    injected, seen, pages = [], set(), 0
    for username, client in clients.items():
        for url in dict.fromkeys(urls):
            response = client.get(url)
            assert response.status_code < 500, f"{url} as {username}"
            if not response.mimetype.startswith("text/html"):
                continue
            html = response.get_data(as_text=True)
            pages += 1
            found = INJECTED.search(html)
            if found:
                injected.append(f"{url} as {username}: ...{html[found.start() - 80:][:200]}")
            seen |= shown(html)
    next_url = next(url for url in reflected_urls() if url.startswith("/login"))
    html = app.test_client().get(next_url).get_data(as_text=True)
    if INJECTED.search(html):
        injected.append(f"{next_url} anonymously")
    return pages, injected, seen | shown(html)


#: The quick sweep reads as the three people whose pages differ most (all client data, the
#: officer's console and audit trail, administration); the slow one as every role.
SWEEPS = [pytest.param(("dora", "otto", "ivan"), id="quick"),
          pytest.param(tuple(BY_ROLE.values()), id="everyone", marks=pytest.mark.slow)]


@pytest.mark.parametrize("people", SWEEPS)
def test_every_page_escapes_every_payload_and_no_get_changes_anything(app, org, db, login, people):
    """Also the proof that no GET changes anything: reading every page records only reads
    and leaves every record as it was."""
    extra = plant(app, org, db, login)
    clients = {username: login(username) for username in people}
    rows, since = _rows(db), _last_seq(db)
    pages, injected, seen = sweep(app, org, db, clients, extra)
    assert injected == []
    expected = set(STORED) | set(REFLECTED)
    assert expected <= seen, f"never shown: {expected - seen}"
    assert pages >= 40 * len(people)
    written = set(db.scalars(select(AuditEvent.action).where(AuditEvent.seq > since)))
    assert written <= READ_ACTIONS, f"GETs wrote {written - READ_ACTIONS}"
    assert _rows(db) == rows


def _last_seq(db: Any) -> int:
    db.rollback()
    return db.scalar(select(func.max(AuditEvent.seq))) or 0


def _rows(db: Any) -> tuple[int, ...]:
    db.rollback()
    return tuple(db.scalar(select(func.count()).select_from(model))
                 for model in (*MODELS.values(), User, Alert, ExportRequest, RightsChange))


def test_csv_import_cells_and_file_name_are_escaped_in_the_preview(app, org, login):
    sam = login("sam")
    cells = [payload("csv_name"), payload("csv_city")[:100], payload("csv_notes")]
    content = "name,city,notes\n" + ",".join(_csv_cell(c) for c in cells) + "\n"
    response = sam.post("/import", data={"csrf_token": sam.csrf,
                                         "file": (io.BytesIO(content.encode()), file_payload("csv_file"))},
                        content_type="multipart/form-data")
    html = response.get_data(as_text=True)
    assert response.status_code in (200, 422), html[:300]
    assert not INJECTED.search(html)
    assert {"csv_name", "csv_notes"} <= shown(html)


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def test_json_answers_are_never_sniffed_as_pages(app, org, db, login):
    plant(app, org, db, login)
    dora = org.api(app, "dora")
    for url in ("/api/v1/accounts", f"/api/v1/accounts/{targets(org, db).records[Entity.ACCOUNT]}",
                "/api/v1/users", "/accounts/suggest?q=xss"):
        response = (login("dora") if url.startswith("/accounts") else dora).get(url)
        assert response.mimetype == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


# -- in a real browser -------------------------------------------------------------
#: Downloads, not pages.
DOWNLOADS = {"attachments.download", "alerts.packet", "audit.export"}
#: The browser does not care which database served the page: the quick run uses SQLite only.
BROWSER_RUNS = [pytest.param("sqlite", ("dora", "otto"), False, id="sqlite-quick"),
                pytest.param("sqlite", tuple(BY_ROLE.values()), True, id="sqlite-everyone",
                             marks=pytest.mark.slow),
                pytest.param("postgresql", tuple(BY_ROLE.values()), True, id="postgresql-everyone",
                             marks=pytest.mark.slow)]


@pytest.mark.e2e
@pytest.mark.parametrize(("database_url", "people", "everywhere"), BROWSER_RUNS,
                         indirect=["database_url"])
def test_no_injected_script_runs_in_the_browser(app, org, db, login, live_server, browser, people,
                                                everywhere):
    """With every payload stored, pages where they show run none of them (the quick run visits
    the pages that show each payload as a director and an officer; the slow one every page
    as everyone)."""
    extra = plant(app, org, db, login)
    where = targets(org, db)
    pages = [f"/accounts/{where.records[Entity.ACCOUNT]}", "/accounts", "/deals/board",
             "/activities", f"/alerts/{org.alert_id}", "/admin/changes", "/admin/users",
             "/audit", *extra, *reflected_urls()]
    if everywhere:
        pages += [r.url for r in routes(app, where, frozenset({"GET"})) if r.endpoint not in DOWNLOADS]
    hits: list = []
    for username in people:
        page = _browser_page(browser, live_server, username, hits, [])
        for path in dict.fromkeys(pages):
            page.goto(f"{live_server}{path}")
        page.context.close()
    assert hits == []


@pytest.mark.e2e
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_csp_blocks_inline_script_even_if_markup_got_through(org, live_server, browser):
    """Force unescaped markup into a real page (as if a template failed to escape): with the
    server's own headers, inline scripts and event handlers do not run."""
    hits, refused = [], []
    page = _browser_page(browser, live_server, "dora", hits, refused)

    def inject(route: Any) -> None:
        response = route.fetch()
        body = response.text().replace(
            "</main>", "<script>xssHit('inline')</script><img src=x onerror=\"xssHit('handler')\">"
                       "<a id=js href=\"javascript:xssHit('href')\">x</a></main>", 1)
        route.fulfill(response=response, body=body)

    page.route(f"{live_server}/accounts", inject)
    page.goto(f"{live_server}/accounts")
    page.wait_for_load_state("load")
    page.click("#js")
    page.wait_for_timeout(300)
    assert hits == []
    assert refused, "the browser reported no Content-Security-Policy refusal"
    page.context.close()


def _browser_page(browser: Any, base: str, username: str, hits: list, refused: list) -> Any:
    context = browser.new_context()
    context.expose_function("xssHit", lambda tag: hits.append((username, tag)))
    page = context.new_page()
    page.on("console", lambda msg: refused.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/**")
    page.evaluate("xssHit('probe')")  # the detector works: a script that runs is seen
    assert hits.pop() == (username, "probe")
    return page
