"""Errors a person can act on.

Each class's docstring is its message template (wrapped lines are joined); ``exit_code`` is what the CLI
returns and ``http_status`` what the web and the API answer. Raise these with
the facts (``raise NotFound(entity="account")``); never let anything else
reach a person.

Exit codes go by family, so a script can tell "tampered" from "not found" from "bug"
by the code alone (the table is in README.md, "Exit codes").
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What an ``appliance`` command's exit status means."""

    OK = 0
    #: A check ran and found a problem: a tampered log, a damaged or unproven backup.
    PROBLEM_FOUND = 1
    #: The command could not do what was asked: configuration, state, a refused right.
    FAILED = 2
    #: The cryptographic self-test failed; no key was loaded.
    SELF_TEST_FAILED = 3
    NOT_FOUND = 4
    BAD_INPUT = 5
    SEALED = 6
    DATABASE_UNAVAILABLE = 7
    #: Anything unexpected: a bug (``EX_SOFTWARE`` of sysexits.h).
    BUG = 70


class CitadelError(Exception):
    """Something went wrong: {detail}"""

    exit_code: int = ExitCode.FAILED
    http_status = 500
    code = "internal"

    def __init__(self, message: str | None = None, **facts: object) -> None:
        self.facts = facts
        template = " ".join((type(self).__doc__ or "").split())
        super().__init__(message or template.format_map(_Lenient(facts)))

    @property
    def message(self) -> str:
        return str(self)


class _Lenient(dict):
    def __missing__(self, key: str) -> str:
        return "?"


class ConfigError(CitadelError):
    """The appliance is not configured correctly: {detail}"""

    code = "config"


class NotInitialised(ConfigError):
    """No appliance in {data_dir}: run `appliance init --data-dir {data_dir}` first."""


class BadRequest(CitadelError):
    """{detail}"""

    exit_code = ExitCode.BAD_INPUT
    http_status = 400
    code = "bad_request"


class ValidationFailed(BadRequest):
    """Some fields need fixing: {detail}"""

    code = "validation"
    http_status = 422

    def __init__(self, errors: dict[str, str], message: str | None = None) -> None:
        self.errors = errors
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        super().__init__(message, detail=detail)


class NotAuthenticated(CitadelError):
    """Sign in first."""

    http_status = 401
    code = "unauthenticated"


class Forbidden(CitadelError):
    """You do not have the right to {action}."""

    http_status = 403
    code = "forbidden"


class NotFound(CitadelError):
    """No such {entity}, or you may not see it."""

    exit_code = ExitCode.NOT_FOUND
    http_status = 404
    code = "not_found"


class Conflict(CitadelError):
    """{detail}"""

    http_status = 409
    code = "conflict"


class TooManyRequests(CitadelError):
    """Too many attempts; wait {minutes} minutes and try again."""

    http_status = 429
    code = "rate_limited"


class Sealed(CitadelError):
    """The appliance is sealed: officers must unseal it (`appliance keys unseal`)."""

    exit_code = ExitCode.SEALED
    http_status = 503
    code = "sealed"


class DatabaseUnavailable(CitadelError):
    """The database cannot be reached right now, so nothing was read or saved. Try again in a
    minute; if this lasts, tell IT (the appliance's /healthz shows the database check)."""

    exit_code = ExitCode.DATABASE_UNAVAILABLE
    http_status = 503
    code = "database_unavailable"


class StorageFull(DatabaseUnavailable):
    """The appliance's storage is full, so nothing was saved. Tell IT: the database's disk needs
    space before changes can be saved again. Reading still works."""

    code = "storage_full"
