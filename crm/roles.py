"""The built-in roles and what each may do out of the box.

Separation of duties is built in: security officers and auditors read the
audit trail and alerts but cannot create or edit client data; IT admins run
the appliance and see no client data at all. Administrators can tune every
grant later; ``seed_roles`` only fills in roles that do not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.kernel.permissions import Cap
from crm.access import Action, Entity, Level, Scope
from crm.identity import Capability, FieldRule, Permission, Role

RECORDS = (Entity.ACCOUNT, Entity.CONTACT, Entity.DEAL, Entity.ACTIVITY)
A = Action


@dataclass(frozen=True)
class RoleSpec:
    name: str
    label: str
    description: str
    grants: dict[tuple[Entity, Action], Scope] = field(default_factory=dict)
    fields: dict[tuple[Entity, str], Level] = field(default_factory=dict)
    caps: tuple[Cap, ...] = ()
    per_export: int = 0
    per_day: int = 0


def _records(scopes: dict[Action, Scope], entities: tuple[Entity, ...] = RECORDS) -> dict:
    return {(e, a): s for e in entities for a, s in scopes.items()}


STAFF = {A.READ: Scope.TEAM, A.CREATE: Scope.OWN, A.EDIT: Scope.OWN, A.DELETE: Scope.OWN,
         A.EXPORT: Scope.OWN, A.PRINT: Scope.TEAM}
MANAGER = {A.READ: Scope.SUBTREE, A.CREATE: Scope.SUBTREE, A.EDIT: Scope.SUBTREE,
           A.DELETE: Scope.SUBTREE, A.EXPORT: Scope.SUBTREE, A.PRINT: Scope.SUBTREE,
           A.MASS_UPDATE: Scope.SUBTREE, A.REASSIGN: Scope.SUBTREE}
DIRECTOR = {a: Scope.ALL for a in Action}

DEFAULT_ROLES: tuple[RoleSpec, ...] = (
    RoleSpec(
        "staff", "Staff", "Sales and support: works their own clients, reads their team's.",
        grants={**_records(STAFF), (Entity.REPORT, A.READ): Scope.OWN,
                (Entity.ATTACHMENT, A.READ): Scope.TEAM, (Entity.ATTACHMENT, A.CREATE): Scope.OWN,
                (Entity.ATTACHMENT, A.DELETE): Scope.OWN},
        fields={(Entity.ACCOUNT, "tax_id"): Level.MASKED},
        per_export=500, per_day=2000,
    ),
    RoleSpec(
        "manager", "Manager", "Leads a team: everything in the team and its sub-teams.",
        grants={**_records(MANAGER), (Entity.REPORT, A.READ): Scope.SUBTREE,
                **_records({A.READ: Scope.SUBTREE, A.CREATE: Scope.SUBTREE, A.DELETE: Scope.SUBTREE},
                           (Entity.ATTACHMENT,))},
        caps=(Cap.EXPORTS_APPROVE,), per_export=2000, per_day=10000,
    ),
    RoleSpec(
        "director", "Director", "Runs the company: all clients, all reports.",
        grants={**_records(DIRECTOR), (Entity.REPORT, A.READ): Scope.ALL,
                **_records({A.READ: Scope.ALL, A.CREATE: Scope.ALL, A.DELETE: Scope.ALL},
                           (Entity.ATTACHMENT,))},
        caps=(Cap.EXPORTS_APPROVE,), per_export=20000, per_day=50000,
    ),
    RoleSpec(
        "security_officer", "Security officer",
        "Triages alerts, reviews the audit trail, restricts users. No client data except "
        "through an alert's evidence.",
        caps=(Cap.AUDIT_READ, Cap.ALERTS_READ, Cap.ALERTS_TRIAGE, Cap.USERS_RESTRICT),
    ),
    RoleSpec(
        "it_admin", "IT admin", "Runs the appliance: users, cards, backups, health. "
        "No client data.",
        caps=(Cap.USERS_ADMIN, Cap.ROLES_ADMIN, Cap.CARDS_ADMIN, Cap.BACKUPS_ADMIN,
              Cap.HEALTH_READ),
    ),
    RoleSpec(
        "auditor", "Auditor", "Read-only review of the audit trail and alerts.",
        caps=(Cap.AUDIT_READ, Cap.ALERTS_READ),
    ),
)


def seed_roles(db: Session) -> list[Role]:
    """Create the built-in roles that are missing; leave existing ones as administrators set them."""
    existing = {r.name for r in db.scalars(select(Role))}
    created = []
    for spec in DEFAULT_ROLES:
        if spec.name in existing:
            continue
        role = Role(name=spec.name, label=spec.label, description=spec.description,
                    export_rows_per_export=spec.per_export, export_rows_per_day=spec.per_day)
        role.permissions = [Permission(entity=e.value, action=a.value, scope=s.value)
                            for (e, a), s in spec.grants.items()]
        role.field_rules = [FieldRule(entity=e.value, field=f, level=lv.value)
                            for (e, f), lv in spec.fields.items()]
        role.capabilities = [Capability(name=c.value) for c in spec.caps]
        db.add(role)
        created.append(role)
    db.flush()
    return created
