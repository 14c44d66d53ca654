"""Fuzzing the JSON API from its own OpenAPI document (schemathesis, in-process WSGI).

Every operation the document describes is called as every built-in role over a seeded
organisation, with valid and with invalid input. Whatever is sent:

- the answer is never a 5xx;
- the answer matches the document (status code, content type, body schema);
- invalid input is refused with a 4xx;
- nothing in the answer lies outside the caller's rights: every record id returned is one
  the access policy lets this person read (export: export), hidden fields are absent and
  masked ones masked, alerts and audit events only for those with the capability, and user
  details only for user administrators.

``make test`` runs a few examples per operation and role; the ``slow`` run many more.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections import Counter
from typing import Any

import openpyxl
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from appliance.kernel.permissions import Cap
from crm.access import FIELDS, Action, Entity, mask
from crm.api.serialize import META_FIELDS
from tests.security.world import BY_ROLE, RESOURCES, Oracle, Org, alert_ids, record_of

#: Examples per operation, role and generation mode: quick by default, deep when slow.
QUICK = int(os.environ.get("CITADEL_FUZZ_EXAMPLES", "5"))
DEEP = 60
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
#: The quick run sends invalid input as two people who pass most rights checks (so it
#: reaches validation); the deep run sends it as everyone.
QUICK_NEGATIVE = ("staff", "security_officer")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
#: Fields a non-administrator may see of another user.
USER_PUBLIC = {"id", "username", "full_name", "team_id"}


def _fuzz(app, org: Org, db, examples: int, negative_as: tuple[str, ...] = tuple(BY_ROLE)
          ) -> tuple[Counter, list[str]]:
    calls: Counter = Counter()
    failures: list[str] = []
    schemas = {role: _schema_as(app, org.tokens[username]) for role, username in BY_ROLE.items()}
    labels = [(op.method.upper(), op.path) for op in _operations(schemas["staff"])]
    # deletes last, so every other operation meets a full organisation
    labels.sort(key=lambda label: label[0] == "DELETE")
    for method, path in labels:
        for role, username in BY_ROLE.items():
            operation = schemas[role][path][method]
            for mode in (POSITIVE, NEGATIVE) if role in negative_as else (POSITIVE,):
                try:
                    _run(app, org, db, operation, username, mode, examples, calls)
                except (Exception, BaseExceptionGroup) as exc:  # all collected into one report
                    failures.append(f"{operation.method.upper()} {operation.path} as {role}, "
                                    f"{mode.value}: {_describe(exc)}")
    return calls, failures


def _schema_as(app, token: str) -> Any:
    """The API's own document, loaded from the app, with one person's bearer token."""
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"bearer": {"bearer": token}}}})
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def _run(app, org, db, operation, username: str, mode: GenerationMode, examples: int,
         calls: Counter) -> None:
    real_ids = _real_ids(org, db, operation.path) if mode is POSITIVE else []
    checks = CHECKS + ([negative_data_rejection] if mode is NEGATIVE else [])

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode),
           real=st.sampled_from(real_ids) if real_ids else st.none(), use_real=st.booleans())
    def attack(case, real, use_real):
        if use_real and real is not None:
            _point_at(case, real)
        response = case.call()
        calls[f"{operation.method.upper()} {operation.path}"] += 1
        case.validate_response(response, checks=checks)
        if response.status_code < 300 and response.content:
            _no_leak(db, username, operation, case, response)

    attack()


def _describe(exc: BaseException) -> str:
    """The failure's message without the request dump that follows it."""
    if isinstance(exc, FailureGroup):
        curl = next((line.strip() for line in str(exc).splitlines() if "curl " in line), "")
        return "; ".join(f"{type(e).__name__}: {str(e)[:400]}" for e in exc.exceptions) + \
            f"\n    {curl}"
    if isinstance(exc, BaseExceptionGroup):  # several distinct failures of one operation
        return "\n  ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {str(exc)[:600]}"


def _real_ids(org: Org, db, path: str) -> list[str]:
    """Ids of things that exist, so that calls reach real records and not only 404s."""
    first = path.strip("/").split("/")[0]
    if first in RESOURCES:
        return [str(i) for i in org.records[RESOURCES[first]]]
    if first == "alerts":
        return [str(i) for i in alert_ids(db)]
    if first == "audit":
        return ["1", "2", "3", "5", "8"]
    return []


def _point_at(case, real: str) -> None:
    """Aim a generated call at an existing record: by its path, or by the account it names."""
    for name in ("record_id", "alert_id", "seq"):
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = int(real) if name != "record_id" else real
            return
    if isinstance(case.body, dict) and "account_id" in case.body:
        case.body["account_id"] = real


# -- the leak check ------------------------------------------------------------
def _no_leak(db, username: str, operation, case, response) -> None:
    oracle = Oracle(db, username)
    path, method = operation.path, operation.method.upper()
    first = path.strip("/").split("/")[0]
    if first in RESOURCES:
        entity = RESOURCES[first]
        body = response.json()
        items = body["items"] if path == f"/{first}" and method == "GET" else \
            ([body] if body else [])
        readable = oracle.readable(entity)
        for item in items:
            assert item["id"] in readable, f"{username} got {entity.value} {item['id']} via {method} {path}"
            _fields_as_allowed(db, oracle, entity, item)
    elif path == "/exports" and method == "POST":
        entity = RESOURCES[case.body["resource"]]
        header, ids = _exported(response)
        # decoy rows (the export's watermark) name no stored record; every real one must be
        # one this person may export
        leaked = (ids & oracle.existing(entity)) - oracle.readable(entity, Action.EXPORT)
        assert not leaked, f"{username} exported {entity.value}s {leaked}"
        assert not set(header) & oracle.hidden(entity), f"{username} exported hidden fields"
    elif first == "alerts":
        assert oracle.holds(Cap.ALERTS_READ), f"{username} read alerts"
    elif first == "audit":
        assert oracle.holds(Cap.AUDIT_READ), f"{username} read the audit trail"
    elif path == "/users" and not oracle.holds(Cap.USERS_ADMIN):
        for item in response.json()["items"]:
            assert set(item) <= USER_PUBLIC, f"{username} saw {set(item) - USER_PUBLIC} of users"


def _exported(response) -> tuple[list[str], set[str]]:
    """The header and the record ids of an exported file, CSV or XLSX."""
    if _content_type(response).startswith("text/csv"):
        rows = list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))
    else:
        sheet = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True).active
        rows = [["" if c is None else str(c) for c in row] for row in sheet.iter_rows(values_only=True)]
    if not rows:
        return [], set()
    header = [cell.strip("\u200b\u200c\u200d\u2060\ufeff") for cell in rows[0]]
    column = header.index("id")
    return header, {row[column] for row in rows[1:] if len(row) > column}


def _content_type(response) -> str:
    """The answer's media type, whichever way this schemathesis spells its headers."""
    for name, value in response.headers.items():
        if name.lower() == "content-type":
            return value[0] if isinstance(value, list) else value
    return ""


def _fields_as_allowed(db, oracle: Oracle, entity: Entity, item: dict[str, Any]) -> None:
    shown = set(item) & oracle.hidden(entity)
    assert not shown, f"hidden {entity.value} fields {shown} in {item['id']}"
    known = {"id", *META_FIELDS[entity], *FIELDS[entity]}
    assert set(item) <= known, f"{entity.value} shows {set(item) - known}"
    record = record_of(db, entity, item["id"])
    for name in oracle.masked(entity) & set(item):
        clear = getattr(record, name)
        assert item[name] == _jsonish(mask(name, clear)), f"{entity.value}.{name} not masked"


def _jsonish(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float) else str(value)


# -- the tests -------------------------------------------------------------------
def test_every_operation_as_every_role_holds(app, org, db):
    started = time.perf_counter()
    calls, failures = _fuzz(app, org, db, QUICK, QUICK_NEGATIVE)
    print(f"\nschemathesis: {len(calls)} operations, {sum(calls.values())} calls, "
          f"{time.perf_counter() - started:.1f}s")
    assert not failures, f"{len(failures)} failures:\n" + "\n\n".join(failures)
    assert len(calls) >= 20


@pytest.mark.slow
def test_every_operation_as_every_role_holds_deeply(app, org, db):
    started = time.perf_counter()
    calls, failures = _fuzz(app, org, db, DEEP)
    print(f"\nschemathesis (deep): {len(calls)} operations, {sum(calls.values())} calls, "
          f"{time.perf_counter() - started:.1f}s")
    assert not failures, f"{len(failures)} failures:\n" + "\n\n".join(failures)
    assert len(calls) >= 20
