"""The OpenAPI document of ``/api/v1``, put together from each package's fragment.

A package describes its own resources (``add_fragment(app, fragment)``, where a
fragment returns ``{"schemas": {...}, "paths": {...}}``), from the same schemas that
validate its requests, so the document cannot drift from the code. The pieces below
are the vocabulary the fragments share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from appliance.kernel.http import MAX_INT_ID
from appliance.kernel.paging import MAX_PAGE, MAX_PER_PAGE

Fragment = Callable[[], dict[str, dict[str, Any]]]

ERROR = {"description": "Error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}
LIST_PARAMS = [
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
    {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                   "maximum": MAX_PER_PAGE}},
    {"name": "q", "in": "query", "schema": {
        "type": "string", "description": "search text; its first 200 characters count"}},
]
NULLABLE_TEXT = {"type": ["string", "null"]}


def errors(*codes: int) -> dict[str, Any]:
    return {str(code): ERROR for code in codes}


def page(ref: str) -> dict[str, Any]:
    """A list's answer: ``{"items", "total", "page", "per_page"}``."""
    return {"type": "object", "required": ["items", "total", "page", "per_page"], "properties": {
        "items": {"type": "array", "items": {"$ref": ref}},
        "total": {"type": "integer"}, "page": {"type": "integer"},
        "per_page": {"type": "integer"}}}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def int_path(name: str, maximum: int = MAX_INT_ID) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": maximum}}


def query(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema or {"type": "string"}}


def add_fragment(app: Flask, fragment: Fragment) -> None:
    """Add a package's schemas and paths to ``app``'s document."""
    app.extensions.setdefault("citadel.openapi", []).append(fragment)


def document(app: Flask) -> dict[str, Any]:
    """``app``'s whole document, built once."""
    built = app.extensions.get("citadel.openapi.document")
    if built is None:
        built = app.extensions["citadel.openapi.document"] = _assemble(app.extensions.get("citadel.openapi", []))
    return built


def _assemble(fragments: list[Fragment]) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}
    paths: dict[str, Any] = {}
    for fragment in fragments:
        part = fragment()
        schemas.update(part.get("schemas", {}))
        paths.update(part.get("paths", {}))
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
