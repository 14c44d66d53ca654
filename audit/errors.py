"""Errors raised by the audit log, each with a message that says what to do."""

from __future__ import annotations

from appliance.kernel.errors import BadRequest, CitadelError, Conflict, ExitCode, NotFound


class AuditError(CitadelError):
    """The audit log could not do that: {detail}"""


class AuditUnavailable(AuditError):
    """The audit log cannot be checked: {detail}"""


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

    exit_code = ExitCode.PROBLEM_FOUND


class NotCheckpointed(Conflict):
    """{detail}: no signed checkpoint covers it yet. Run `appliance audit checkpoint` and retry."""


class NoSuchEvent(NotFound):
    """No audit event {seq}: the log holds events 0 to {last}."""


class SigningKeyError(AuditError):
    """The audit signing key cannot be used: {detail}"""


class ArchiveError(AuditError):
    """Archiving stopped and nothing was removed: {detail}"""


class ForwardError(AuditError):
    """Forwarding stopped; the position of the last delivered event is kept: {detail}"""
