"""Errors raised by the audit log, each with a message that says what to do."""

from __future__ import annotations

from appliance.errors import BadRequest, CitadelError, Conflict, NotFound


class AuditError(CitadelError):
    """The audit log could not do that: {detail}"""


class AuditUnavailable(AuditError):
    """The audit log cannot be checked: {detail}"""

    exit_code = 2


class AuditImmutable(AuditError):
    """Audit rows are append-only: {detail}. History is never updated or deleted; old events
    leave the table only through `appliance audit archive`."""

    http_status = 409
    code = "audit_immutable"


class InvalidEvent(BadRequest):
    """This audit event cannot be recorded: {detail}"""


class AuditTampered(AuditError):
    """The audit log has been tampered with: {detail}. Run `appliance audit verify` for details
    and treat the log as evidence (do not repair it)."""


class NotCheckpointed(Conflict):
    """{detail}: no signed checkpoint covers it yet. Run `appliance audit checkpoint` and retry."""

    exit_code = 2


class NoSuchEvent(NotFound):
    """No audit event {seq}: the log holds events 0 to {last}."""

    exit_code = 2


class SigningKeyError(AuditError):
    """The audit signing key cannot be used: {detail}"""

    exit_code = 2


class ArchiveError(AuditError):
    """Archiving stopped and nothing was removed: {detail}"""

    exit_code = 2


class ForwardError(AuditError):
    """Forwarding stopped; the position of the last delivered event is kept: {detail}"""

    exit_code = 2
