"""The audit trail's part of ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from appliance.kernel.http import MAX_SEQ
from appliance.kernel.openapi import LIST_PARAMS, NULLABLE_TEXT, errors, int_path, json_response, page, query, ref

SCHEMAS: dict[str, Any] = {
    "AuditEvent": {"type": "object", "required": ["seq", "ts", "user", "action", "entity",
                                                  "entity_id", "count", "ip", "meta"],
                   "properties": {"seq": {"type": "integer"},
                                  "ts": {"type": "string", "format": "date-time"},
                                  "user": NULLABLE_TEXT, "action": {"type": "string"},
                                  "entity": NULLABLE_TEXT, "entity_id": NULLABLE_TEXT,
                                  "count": {"type": "integer"}, "ip": NULLABLE_TEXT, "meta": {}}},
}


def fragment() -> dict[str, dict[str, Any]]:
    return {"schemas": SCHEMAS, "paths": {
        "/audit/events": {"get": {
            "summary": "Search the audit trail (audit:read)",
            "parameters": [*LIST_PARAMS[:2], *(query(n) for n in (
                "user", "action", "entity", "entity_id", "ip")),
                *(query(n, {"type": "string", "format": "date-time"}) for n in ("since", "until"))],
            "responses": {"200": json_response("A page", page("#/components/schemas/AuditEvent")),
                          **errors(400, 401, 403)}}},
        "/audit/events/{seq}": {
            "parameters": [int_path("seq", MAX_SEQ)],
            "get": {"summary": "One audit event (audit:read)", "responses": {
                "200": json_response("The event", ref("AuditEvent")), **errors(401, 403, 404)}}},
    }}
