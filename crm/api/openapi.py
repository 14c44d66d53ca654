"""The CRM's part of ``/api/v1/openapi.json``: its resources described from the same
field specs that validate requests (``crm.validation``), so the document cannot drift from the code."""

from __future__ import annotations

from typing import Any

from appliance.kernel.http import MAX_INT_ID
from appliance.kernel.openapi import (
    LIST_PARAMS,
    NULLABLE_TEXT,
    body,
    errors,
    json_response,
    page,
    ref,
)
from crm.access import FIELDS, MODELS, Entity
from crm.api.records import RESOURCES
from crm.api.serialize import META_FIELDS
from crm.queries import FILTERS, SORTS
from crm.validation import SCHEMAS, FieldSpec

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


ID_PARAM = {"name": "record_id", "in": "path", "required": True,
            "schema": {"type": "string", "format": "uuid"}}


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
                        "application/json": {"schema": page(ref)}}}, **errors(400, 401, 403)}},
            "post": {"summary": f"Create a {entity.value}", "requestBody": body,
                     "responses": {"201": one["200"], **errors(400, 401, 403, 404, 422)}},
        },
        f"/{resource}/{{record_id}}": {
            "parameters": [ID_PARAM],
            "get": {"summary": f"One {entity.value}", "responses": {**one, **errors(401, 404)}},
            "patch": {"summary": f"Change a {entity.value}", "requestBody": {
                "required": True, "content": {"application/json": {"schema": {
                    "$ref": new.replace("Input", "Patch")}}}},
                "responses": {**one, **errors(400, 401, 403, 404, 422)}},
            "delete": {"summary": f"Delete a {entity.value}",
                       "responses": {"204": {"description": "Deleted"},
                                     **errors(401, 403, 404)}},
        },
    }


# -- resources beside client records --------------------------------------------
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

}


def _other_paths() -> dict[str, Any]:
    """Exports, reports and users."""
    return {
        "/exports": {
            "get": {"summary": "Your exports", "parameters": LIST_PARAMS[:2], "responses": {
                "200": json_response("A page", page("#/components/schemas/Export")), **errors(400, 401)}},
            "post": {"summary": "Export a list as CSV (caps apply)", "requestBody": body({
                "type": "object", "required": ["resource"], "properties": {
                    "resource": {"type": "string", "enum": list(RESOURCES)},
                    "q": {"type": ["string", "null"]}, "sort": {"type": ["string", "null"]},
                    "format": {"type": "string", "enum": ["csv", "xlsx"]},
                    "filters": {"type": ["object", "null"],
                                "additionalProperties": {"type": "string"}}}}),
                "responses": {"200": {"description": "The file (CSV or XLSX)", "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                        "schema": {"type": "string", "format": "binary"}}}}, **errors(400, 401, 403)}},
        },
        "/reports": {"get": {"summary": "Reports you may run", "responses": {
            "200": json_response("Reports", {"type": "object", "properties": {"items": {
                "type": "array", "items": {"type": "object", "properties": {
                    "key": {"type": "string"}, "title": {"type": "string"}}}}}}),
            **errors(401, 403)}}},
        "/reports/{key}": {
            "parameters": [{"name": "key", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["funnel", "revenue", "overdue"]}}],
            "get": {"summary": "Run a report over what you may read", "responses": {
                "200": json_response("Figures", ref("Report")), **errors(401, 403, 404)}}},
        "/users": {"get": {"summary": "Users", "parameters": LIST_PARAMS, "responses": {
            "200": json_response("A page", page("#/components/schemas/User")), **errors(400, 401)}}},
        "/users/me": {"get": {"summary": "Who you are and what you may do", "responses": {
            "200": json_response("You", ref("User")), **errors(401)}}},
    }


def fragment() -> dict[str, dict[str, Any]]:
    """The CRM's part of the OpenAPI document: client records, exports, reports, users."""
    schemas: dict[str, Any] = {}
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
    return {"schemas": schemas, "paths": paths}
