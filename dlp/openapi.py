"""Leak monitoring's part of ``/api/v1/openapi.json``: alerts and browser beacons."""

from __future__ import annotations

from typing import Any

from appliance.kernel.openapi import (
    LIST_PARAMS,
    NULLABLE_TEXT,
    body,
    errors,
    int_path,
    json_response,
    page,
    query,
    ref,
)
from dlp import beacons
from dlp.alerts import STATUSES

SCHEMAS: dict[str, Any] = {
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
}


def fragment() -> dict[str, dict[str, Any]]:
    return {"schemas": SCHEMAS, "paths": {
        "/alerts": {"get": {
            "summary": "Alerts (alerts:read)",
            "parameters": [*LIST_PARAMS[:2], query("status", {
                "type": "string", "description": "open (the default), one of "
                f"{', '.join(STATUSES)}, or anything else for every alert"}), query("user")],
            "responses": {"200": json_response("A page", page("#/components/schemas/Alert")),
                          **errors(400, 401, 403)}}},
        "/alerts/{alert_id}": {
            "parameters": [int_path("alert_id")],
            "get": {"summary": "One alert (alerts:read)", "responses": {
                "200": json_response("The alert", ref("Alert")), **errors(401, 403, 404)}},
            "patch": {"summary": "Triage an alert (alerts:triage)", "requestBody": body({
                "type": "object", "properties": {
                    "status": {"type": "string", "enum": list(STATUSES)},
                    "reason": {"type": "string", "description": "why (required to dismiss)"},
                    "assignee": {"type": ["string", "null"]}}}),
                "responses": {"200": json_response("The alert", ref("Alert")),
                              **errors(400, 401, 403, 404, 409, 422)}}},
        "/beacons": {"post": {
            "summary": "The browser's report of a copy, cut or print (records, never text)",
            "requestBody": body({"type": "object", "required": ["action"], "properties": {
                "action": {"type": "string", "enum": list(beacons.ACTIONS)},
                "entity": {"type": ["string", "null"], "enum": [*beacons.ENTITIES, None]},
                "ids": {"type": "array", "maxItems": beacons.MAX_IDS,
                        "items": {"type": "string", "format": "uuid"}},
                "size": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
                "page": {"description": "the page's address (any value is kept as text, "
                                        "200 characters at most)"}}}),
            "responses": {"201": json_response("Recorded", {"type": "object"}),
                          **errors(400, 401, 429)}}},
    }}
