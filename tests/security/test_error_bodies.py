"""Errors tell a person what to do and nothing about the inside: malformed and hostile JSON,
bodies over the size limit, every method a route does not take, ids that are not ids, bad
query arguments, and internal failures all answer 4xx (or a plain 500 when the app itself
fails) with the usual error shape, and never a stack trace, a file path, SQL or a library
name."""

from __future__ import annotations

import io
import re
from typing import Any

from sqlalchemy.exc import IntegrityError

from tests.security.routes import routes, targets

LEAK = re.compile(r"Traceback|File \"|site-packages|sqlalchemy|psycopg|sqlite3|werkzeug\.|jinja2|"
                  r"SELECT |INSERT INTO|UPDATE \w+ SET|/work/|\.py\b|0x[0-9a-f]{8}|<module>",
                  re.IGNORECASE)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
HUGE = b"x" * (20 * 1024 * 1024 + 1)
#: What a bad id looks like, by converter.
BAD_IDS = {"uuid": ("not-a-uuid", "00000000-0000-0000-0000-00000000000g", "1 OR 1=1", "%00",
                    "00000000-0000-0000-0000-000000000000"),
           "int": ("abc", "-1", "1.5", "99999999999999999999999", "0x10"),
           "default": ("not-a-uuid", "..", "%2e%2e%2f", "00000000-0000-0000-0000-000000000000")}


def clean(response: Any) -> list[str]:
    """What is wrong with one error answer."""
    body = response.get_data(as_text=True)
    found = [f"leaks {LEAK.search(body).group(0)!r}"] if LEAK.search(body) else []
    if response.status_code >= 500 and response.status_code != 503:
        found.append(f"status {response.status_code}")
    if response.request.path.startswith("/api/"):
        data = response.get_json(silent=True) or {}
        if not {"code", "message"} <= set(data.get("error", {})):
            found.append(f"not the error shape: {body[:80]}")
    return found


def _clients(app: Any, org: Any, login: Any) -> Any:
    """Who asks: the person whose rights reach past the rights check to the route's work."""
    web = {name: login(name) for name in ("dora", "otto", "ivan")}
    api = {name: org.api(app, name) for name in ("dora", "otto")}

    def pick(url: str) -> Any:
        if url.startswith("/api/"):
            return api["otto"] if url.startswith(("/api/v1/alerts", "/api/v1/audit")) else api["dora"]
        if url.startswith("/admin"):
            return web["ivan"]
        return web["otto"] if url.startswith(("/alerts", "/audit")) else web["dora"]

    return pick


def test_every_method_a_route_does_not_take(app, org, db, login):
    pick = _clients(app, org, login)
    every = routes(app, targets(org, db))
    taken: dict[str, set[str]] = {}
    for route in every:  # one address may have several rules, one per method
        taken.setdefault(route.url, set()).update(route.methods)
    wrong, tried = [], 0
    for url, methods in taken.items():
        client = pick(url)
        for method in set(METHODS) - methods:
            response = client.open(url, method=method)
            tried += 1
            if response.status_code != 405 or "Allow" not in response.headers:
                wrong.append(f"{method} {url}: {response.status_code}")
            wrong += [f"{method} {url}: {p}" for p in clean(response)]
    assert wrong == [], "\n".join(wrong)
    assert tried >= 150


def test_ids_that_are_not_ids(app, org, db, login):
    pick = _clients(app, org, login)
    where = targets(org, db)
    wrong, tried = [], 0
    for route in routes(app, where):
        placeholders = re.findall(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", route.rule)
        ids = [(conv or "default", name) for conv, name in placeholders
               if name.endswith("_id") or name in ("seq", "record_id")]
        if not ids:
            continue
        client = pick(route.url)
        for conv, name in ids:
            for bad in BAD_IDS.get(conv, BAD_IDS["default"]):
                url = _raw_url(route.rule, route.url, name, bad)
                for method in route.methods:
                    kwargs: dict[str, Any] = {}
                    if method != "GET" and not url.startswith("/api/"):
                        kwargs = {"data": {"csrf_token": client.csrf, "reason": "because",
                                           "file": (io.BytesIO(b"name\nX\n"), "x.csv")}}
                    response = client.open(url, method=method, **kwargs)
                    tried += 1
                    if response.status_code not in (400, 403, 404):  # 403: rights come first
                        wrong.append(f"{method} {url}: {response.status_code}")
                    wrong += [f"{method} {url}: {p}" for p in clean(response)]
    assert wrong == [], "\n".join(wrong)
    assert tried >= 150


def _raw_url(rule: str, built: str, name: str, bad: str) -> str:
    """``built`` with the value of parameter ``name`` replaced by ``bad``, unconverted."""
    placeholder = re.compile(r"<(?:\w+(?:\([^)]*\))?:)?" + name + ">")
    return "/".join(bad if placeholder.fullmatch(segment) else given
                    for segment, given in zip(rule.split("/"), built.split("/"), strict=True))


def test_malformed_and_hostile_json(app, org, db):
    api = org.api(app, "dora")
    where = targets(org, db)
    bodies = ("{bad", "[]", "\"text\"", "null", "1e999", "[" * 50_000 + "]" * 50_000,
              "{\"name\": \"\\ud800\"}", "{\"name\": \"a\\u0000b\"}", "{\"a\":" * 2000 + "1" + "}" * 2000,
              "{\"name\": " + "1" * 5000 + "}", "{\"name\": \"x\", \"name\": 1}")
    wrong = []
    for route in routes(app, where):
        if not route.url.startswith("/api/"):
            continue
        for method in route.methods & {"POST", "PATCH"}:
            for body in bodies:
                for ctype in ("application/json", "text/plain"):
                    response = api.open(route.url, method=method, data=body, content_type=ctype)
                    if not 400 <= response.status_code < 500:
                        wrong.append(f"{method} {route.url} {body[:20]!r} {ctype}: {response.status_code}")
                    wrong += [f"{method} {route.url} {body[:20]!r}: {p}" for p in clean(response)]
    assert wrong == [], "\n".join(wrong)


def test_bodies_over_the_limit(app, org, db, login):
    web, api = login("sam"), org.api(app, "sam")
    where = targets(org, db)
    sent = {
        "/import": web.post("/import", data=HUGE, content_type="multipart/form-data; boundary=x"),
        "attachment": web.post(f"/accounts/{where.records[next(iter(where.records))]}/attachments",
                               data=HUGE, content_type="application/octet-stream"),
        "/login": web.post("/login", data=HUGE, content_type="application/x-www-form-urlencoded"),
        "/api/v1/accounts": api.post("/api/v1/accounts", data=HUGE, content_type="application/json"),
        "/api/v1/exports": api.post("/api/v1/exports", data=HUGE, content_type="application/json"),
        "/api/v1/beacons": web.post("/api/v1/beacons", data=HUGE, content_type="application/json",
                                    headers={"X-CSRFToken": web.csrf}),
    }
    uploads = ("/import", "attachment")  # files may be larger than any form or JSON body
    for name, response in sent.items():
        assert response.status_code == 413, (name, response.status_code)
        limit = "20 MB" if name in uploads else "1 MB"
        assert limit in response.get_data(as_text=True) and not clean(response), name


def test_bad_query_arguments_are_explained(app, org, login):
    api, web = org.api(app, "dora"), login("otto")
    for url in ("/api/v1/accounts?page=abc", "/api/v1/accounts?page=0", "/api/v1/deals?per_page=201",
                "/api/v1/accounts?sort=bogus", "/api/v1/deals?owner_id=abc",
                "/api/v1/contacts?account_id=nope", "/api/v1/accounts?page=99999999999999999999"):
        response = api.get(url)
        assert response.status_code == 400 and not clean(response), url
        assert len(response.json["error"]["message"]) > 10
    for url in ("/api/v1/audit/events?since=yesterday", "/audit?until=soon", "/alerts?page=-1"):
        client = org.api(app, "otto") if url.startswith("/api/") else web
        response = client.get(url)
        assert response.status_code == 400 and not clean(response), url


def test_internal_failures_say_nothing_about_the_inside(app, org, login, monkeypatch):
    def explode(*_args: Any, **_kwargs: Any) -> Any:
        raise IntegrityError("INSERT INTO accounts (secret) VALUES ('x')", {"secret": "x"},
                             Exception("/work/main/crm/models.py line 12"))

    for endpoint in ("accounts.index", "api.records.list_records", "audit.index", "alerts.index"):
        monkeypatch.setitem(app.view_functions, endpoint, explode)
    web, api = login("otto"), org.api(app, "dora")
    for client, url in ((login("dora"), "/accounts"), (api, "/api/v1/accounts"), (web, "/audit"),
                        (web, "/alerts")):
        response = client.get(url)
        assert response.status_code == 500, url
        body = response.get_data(as_text=True)
        assert "Something went wrong on our side" in body and not LEAK.search(body), url
        assert response.headers["Content-Security-Policy"]
