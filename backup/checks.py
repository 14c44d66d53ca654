"""Extra checks every verification drill runs, registered by the composition root.

``register_check("schema-current", lambda ctx: is_current(ctx.engine))`` adds a
check; ``registered_checks()`` is what ``appliance backup run|verify`` pass to
the drill. A check receives a ``backup.verify.DrillContext`` (the restored
scratch database and files) and returns ``True``/``None``, ``False`` or
``(ok, detail)``.
"""

from __future__ import annotations

from backup.verify import Check, NamedCheck

_CHECKS: dict[str, Check] = {}


def register_check(name: str, check: Check) -> None:
    """Run ``check`` in every drill from now on (replacing one of the same name)."""
    _CHECKS[name] = check


def unregister_check(name: str) -> None:
    _CHECKS.pop(name, None)


def registered_checks() -> list[NamedCheck]:
    return list(_CHECKS.items())
