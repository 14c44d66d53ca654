"""The names of rights outside client records, as every package spells them.

A right is named ``resource:action``; roles grant these names, views declare the one
they need (``require(Cap.AUDIT_READ)``). They live in the kernel so that the audit
log, leak monitoring and backups can ask for a right without importing the CRM,
which decides who holds it.
"""

from __future__ import annotations

from enum import StrEnum


class Cap(StrEnum):
    """Rights outside client records, named ``resource:action``."""

    AUDIT_READ = "audit:read"
    ALERTS_READ = "alerts:read"
    ALERTS_TRIAGE = "alerts:triage"
    USERS_ADMIN = "users:admin"
    USERS_RESTRICT = "users:restrict"
    ROLES_ADMIN = "roles:admin"
    ROLES_APPROVE = "roles:approve"
    CARDS_ADMIN = "cards:admin"
    BACKUPS_ADMIN = "backups:admin"
    HEALTH_READ = "health:read"
    EXPORTS_APPROVE = "exports:approve"
