"""``/api/v1/openapi.json``: the API described from the same schemas that
validate requests, so the document cannot drift from the code."""

from __future__ import annotations

from functools import cache
from typing import Any

from appliance.api import bp
from appliance.web import MAX_INT_ID, MAX_PAGE, MAX_PER_PAGE, MAX_SEQ
from crm.access import FIELDS, MODELS, Entity
from crm.api.records import RESOURCES
from crm.api.serialize import META_FIELDS
from crm.queries import FILTERS, SORTS
from crm.schemas import SCHEMAS, FieldSpec

JSON_TYPES: dict[str, dict[str, Any]] = {
    "text": {"type": "string"},
    "email": {"type": "string"},
    "phone": {"type": "string"},
    "tax_id": {"type": "string"},
    "country": {"type": "string"},
    "website": {"type": "string"},
    "int": {"type": "integer"},
    "decimal": {"type": "string", "description": "a decimal number, as text"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "uuid": {"type": "string", "format": "uuid"},
    "bool": {"type": "boolean"},
}


def _input(spec: FieldSpec, nullable: bool = True) -> dict[str, Any]:
    schema = dict(JSON_TYPES[spec.kind])
    if spec.kind == "decimal":
        schema = {"oneOf": [{"type": "number"}, {"type": "string"}]}
    if spec.choices:
        schema["enum"] = list(spec.choices)
    if schema.get("type") == "string" and spec.kind not in ("date", "datetime", "uuid"):
        schema["maxLength"] = spec.max_len
    if spec.lo is not None and spec.kind == "int":
        schema["minimum"] = spec.lo
    if spec.hi is not None and spec.kind == "int":
        schema["maximum"] = spec.hi
    if not spec.required and nullable:
        schema = {"anyOf": [schema, {"type": "null"}]} if spec.kind != "bool" else schema
    return schema


def _clearable(entity: Entity, name: str) -> bool:
    """May a change set this field to null? Not where the column must hold a value (on
    creation, null there means the default); ``owner_id: null`` means the caller."""
    column = MODELS[entity].__table__.columns.get(name)
    return name == "owner_id" or column is None or column.nullable


#: Fields a record shows but no request sets directly.
OUTPUT_ONLY = {"team_id": FieldSpec("int"), "done_at": FieldSpec("datetime")}


def _output(entity: Entity) -> dict[str, Any]:
    """A record as returned: hidden fields are absent, masked ones are text."""
    props: dict[str, Any] = {"id": {"type": "string", "format": "uuid"}}
    for name in META_FIELDS[entity]:
        props[name] = {"type": ["string", "null"]}
    specs = SCHEMAS[entity.value]
    for name in FIELDS[entity]:
        spec = specs.get(name) or OUTPUT_ONLY[name]
        base = JSON_TYPES[spec.kind]["type"]
        props[name] = {"type": sorted({base, "string", "null"})}
    return {"type": "object", "properties": props, "required": ["id"], "additionalProperties": False}


def _page(ref: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "total", "page", "per_page"], "properties": {
        "items": {"type": "array", "items": {"$ref": ref}},
        "total": {"type": "integer"}, "page": {"type": "integer"},
        "per_page": {"type": "integer"}}}


ERROR = {"description": "Error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}
LIST_PARAMS = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
    {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                   "maximum": MAX_PER_PAGE}},
    {"name": "q", "in": "query", "schema": {
        "type": "string", "description": "search text; its first 200 characters count"}},
]
ID_PARAM = {"name": "record_id", "in": "path", "required": True,
            "schema": {"type": "string", "format": "uuid"}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): ERROR for code in codes}


def _list_params(entity: Entity) -> list[dict[str, Any]]:
    """Paging and search, the sort keys, and the filters each list takes."""
    keys = sorted(SORTS[entity])
    sort = {"name": "sort", "in": "query", "schema": {
        "type": "string", "enum": ["", *keys, *(f"-{k}" for k in keys)],
        "description": "a key, or -key for descending; empty for the usual order"}}
    empty = {"type": "string", "maxLength": 0}
    filters = [{"name": name, "in": "query", "description": "empty means no filter", "schema": {
        "anyOf": [{"type": "integer", "minimum": -MAX_INT_ID, "maximum": MAX_INT_ID}
                  if name in ("owner_id", "team_id") else
                  {"type": "string", "format": "uuid"} if name.endswith("_id") else
                  {"type": "string"}, empty]}}
        for name in FILTERS[entity]]
    return [*LIST_PARAMS, sort, *filters]


def _record_paths(resource: str, entity: Entity) -> dict[str, Any]:
    name = entity.value.capitalize()
    ref, new = f"#/components/schemas/{name}", f"#/components/schemas/{name}Input"
    one = {"200": {"description": name, "content": {"application/json": {"schema": {"$ref": ref}}}}}
    body = {"required": True, "content": {"application/json": {"schema": {"$ref": new}}}}
    return {
        f"/{resource}": {
            "get": {"summary": f"List {resource} you may read", "parameters": _list_params(entity),
                    "responses": {"200": {"description": "A page", "content": {
                        "application/json": {"schema": _page(ref)}}}, **_errors(400, 401, 403)}},
            "post": {"summary": f"Create a {entity.value}", "requestBody": body,
                     "responses": {"201": one["200"], **_errors(400, 401, 403, 404, 422)}},
        },
        f"/{resource}/{{record_id}}": {
            "parameters": [ID_PARAM],
            "get": {"summary": f"One {entity.value}", "responses": {**one, **_errors(401, 404)}},
            "patch": {"summary": f"Change a {entity.value}", "requestBody": {
                "required": True, "content": {"application/json": {"schema": {
                    "$ref": new.replace("Input", "Patch")}}}},
                "responses": {**one, **_errors(400, 401, 403, 404, 422)}},
            "delete": {"summary": f"Delete a {entity.value}",
                       "responses": {"204": {"description": "Deleted"},
                                     **_errors(401, 403, 404)}},
        },
    }


@cache
def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}
    paths: dict[str, Any] = {}
    for resource, entity in RESOURCES.items():
        name = entity.value.capitalize()
        specs = SCHEMAS[entity.value]
        props = {k: _input(s) for k, s in specs.items()}
        schemas[name] = _output(entity)
        schemas[f"{name}Input"] = {"type": "object", "properties": props,
                                   "required": [k for k, s in specs.items() if s.required],
                                   "additionalProperties": False}
        schemas[f"{name}Patch"] = {"type": "object", "additionalProperties": False,
                                   "properties": {k: _input(s, _clearable(entity, k))
                                                  for k, s in specs.items()}}
        paths.update(_record_paths(resource, entity))
    schemas.update(OTHER_SCHEMAS)
    paths.update(_other_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Citadel API", "version": "1",
                 "description": "Client records under the same rights as the web UI. "
                                "Every read is audited."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"session": []}],
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "A token from `appliance user token USER`."},
            "session": {"type": "apiKey", "in": "cookie", "name": "citadel",
                        "description": "The web UI's session; changes also need the "
                                       "X-CSRFToken header."}}},
        "paths": paths,
    }


# -- resources beside client records --------------------------------------------
def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _int_path(name: str, maximum: int = MAX_INT_ID) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": maximum}}


def _query(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema or {"type": "string"}}


NULLABLE_TEXT = {"type": ["string", "null"]}
OTHER_SCHEMAS: dict[str, Any] = {
    "Export": {"type": "object", "required": ["id", "entity", "format", "rows", "created_at"],
               "properties": {"id": {"type": "string", "format": "uuid"},
                              "entity": {"type": "string"}, "format": {"type": "string"},
                              "rows": {"type": "integer"},
                              "fields": {"type": "array", "items": {"type": "string"}},
                              "created_at": {"type": "string", "format": "date-time"},
                              "sha256": NULLABLE_TEXT}},
    "User": {"type": "object", "required": ["id", "username", "full_name", "team_id"],
             "properties": {"id": {"type": "integer"}, "username": {"type": "string"},
                            "full_name": {"type": "string"},
                            "team_id": {"type": ["integer", "null"]},
                            "roles": {"type": "array", "items": {"type": "string"}},
                            "active": {"type": "boolean"}, "frozen": {"type": "boolean"},
                            "on_notice": {"type": "boolean"}, "offboarded": {"type": "boolean"},
                            "capabilities": {"type": "array", "items": {"type": "string"}}},
             "description": "Roles and status are shown to user administrators and to "
                            "the user themselves."},
    "Report": {"type": "object", "required": ["key", "title", "records", "rows"],
               "properties": {"key": {"type": "string"}, "title": {"type": "string"},
                              "records": {"type": "integer"},
                              "rows": {"type": "array", "items": {"type": "object"}},
                              "extra": {"type": "object"}}},
    "Alert": {"type": "object", "required": ["id", "user", "ts", "score", "severity", "scenario",
                                             "reasons", "events", "status"],
              "properties": {"id": {"type": "integer"}, "user": {"type": "string"},
                             "ts": {"type": "string", "format": "date-time"},
                             "score": {"type": "number"}, "severity": {"type": "string"},
                             "scenario": {"type": "string"},
                             "reasons": {"type": "array", "items": {"type": "string"}},
                             "events": {"type": "array", "items": {"type": "integer"}},
                             "status": {"type": "string"}, "assignee": NULLABLE_TEXT,
                             "resolution": {"type": "string"}}},
    "AuditEvent": {"type": "object", "required": ["seq", "ts", "user", "action", "entity",
                                                  "entity_id", "count", "ip", "meta"],
                   "properties": {"seq": {"type": "integer"},
                                  "ts": {"type": "string", "format": "date-time"},
                                  "user": NULLABLE_TEXT, "action": {"type": "string"},
                                  "entity": NULLABLE_TEXT, "entity_id": NULLABLE_TEXT,
                                  "count": {"type": "integer"}, "ip": NULLABLE_TEXT, "meta": {}}},
}


def _other_paths() -> dict[str, Any]:
    """Exports, reports, users, alerts, the audit trail and browser beacons."""
    from dlp import beacons
    from dlp.alerts import STATUSES

    return {
        "/exports": {
            "get": {"summary": "Your exports", "parameters": LIST_PARAMS[:2], "responses": {
                "200": _json("A page", _page("#/components/schemas/Export")), **_errors(400, 401)}},
            "post": {"summary": "Export a list as CSV (caps apply)", "requestBody": _body({
                "type": "object", "required": ["resource"], "properties": {
                    "resource": {"type": "string", "enum": list(RESOURCES)},
                    "q": {"type": ["string", "null"]}, "sort": {"type": ["string", "null"]},
                    "format": {"type": "string", "enum": ["csv", "xlsx"]},
                    "filters": {"type": ["object", "null"],
                                "additionalProperties": {"type": "string"}}}}),
                "responses": {"200": {"description": "The file (CSV or XLSX)", "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                        "schema": {"type": "string", "format": "binary"}}}}, **_errors(400, 401, 403)}},
        },
        "/reports": {"get": {"summary": "Reports you may run", "responses": {
            "200": _json("Reports", {"type": "object", "properties": {"items": {
                "type": "array", "items": {"type": "object", "properties": {
                    "key": {"type": "string"}, "title": {"type": "string"}}}}}}),
            **_errors(401, 403)}}},
        "/reports/{key}": {
            "parameters": [{"name": "key", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["funnel", "revenue", "overdue"]}}],
            "get": {"summary": "Run a report over what you may read", "responses": {
                "200": _json("Figures", _ref("Report")), **_errors(401, 403, 404)}}},
        "/users": {"get": {"summary": "Users", "parameters": LIST_PARAMS, "responses": {
            "200": _json("A page", _page("#/components/schemas/User")), **_errors(400, 401)}}},
        "/users/me": {"get": {"summary": "Who you are and what you may do", "responses": {
            "200": _json("You", _ref("User")), **_errors(401)}}},
        "/alerts": {"get": {
            "summary": "Alerts (alerts:read)",
            "parameters": [*LIST_PARAMS[:2], _query("status", {
                "type": "string", "description": "open (the default), one of "
                f"{', '.join(STATUSES)}, or anything else for every alert"}), _query("user")],
            "responses": {"200": _json("A page", _page("#/components/schemas/Alert")),
                          **_errors(400, 401, 403)}}},
        "/alerts/{alert_id}": {
            "parameters": [_int_path("alert_id")],
            "get": {"summary": "One alert (alerts:read)", "responses": {
                "200": _json("The alert", _ref("Alert")), **_errors(401, 403, 404)}},
            "patch": {"summary": "Triage an alert (alerts:triage)", "requestBody": _body({
                "type": "object", "properties": {
                    "status": {"type": "string", "enum": list(STATUSES)},
                    "reason": {"type": "string", "description": "why (required to dismiss)"},
                    "assignee": {"type": ["string", "null"]}}}),
                "responses": {"200": _json("The alert", _ref("Alert")),
                              **_errors(400, 401, 403, 404, 409, 422)}}},
        "/audit/events": {"get": {
            "summary": "Search the audit trail (audit:read)",
            "parameters": [*LIST_PARAMS[:2], *(_query(n) for n in (
                "user", "action", "entity", "entity_id", "ip")),
                *(_query(n, {"type": "string", "format": "date-time"}) for n in ("since", "until"))],
            "responses": {"200": _json("A page", _page("#/components/schemas/AuditEvent")),
                          **_errors(400, 401, 403)}}},
        "/audit/events/{seq}": {
            "parameters": [_int_path("seq", MAX_SEQ)],
            "get": {"summary": "One audit event (audit:read)", "responses": {
                "200": _json("The event", _ref("AuditEvent")), **_errors(401, 403, 404)}}},
        "/beacons": {"post": {
            "summary": "The browser's report of a copy, cut or print (records, never text)",
            "requestBody": _body({"type": "object", "required": ["action"], "properties": {
                "action": {"type": "string", "enum": list(beacons.ACTIONS)},
                "entity": {"type": ["string", "null"], "enum": [*beacons.ENTITIES, None]},
                "ids": {"type": "array", "maxItems": beacons.MAX_IDS,
                        "items": {"type": "string", "format": "uuid"}},
                "size": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
                "page": {"description": "the page's address (any value is kept as text, "
                                        "200 characters at most)"}}}),
            "responses": {"201": _json("Recorded", {"type": "object"}),
                          **_errors(400, 401, 429)}}},
    }


@bp.get("/openapi.json")
def openapi() -> Any:
    return document()
