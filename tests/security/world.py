"""A small organisation to attack: teams, one person per role (and a few colleagues), client
records owned by different people, shares, an alert, an export request, an import upload and
a pending rights change; and an oracle that says, from ``crm.access.Policy``, what each
person may see.

Staff see less than the built-in role gives by default: account notes and contact phones are
hidden and deal amounts masked, so that a leak of a hidden or masked field has something to
show.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from appliance.auth import issue_token
from appliance.kernel.permissions import Cap
from crm import attachments, importer, sharing
from crm.access import FIELDS, MODELS, Action, Entity, Level, Policy
from crm.export_requests import request_export
from crm.identity import FieldRule, Role, User
from crm.models import Account, AccountShare
from crm.queries import ListQuery
from crm.rights import RightsChange, RightsService
from dlp.alerts import Alert, upsert
from tests.factories import Factory

#: username -> (role, team); teams: Sales > North, Sales > South; Support; Board.
PEOPLE: dict[str, tuple[str, str | None]] = {
    "sam": ("staff", "North"),
    "tina": ("staff", "North"),
    "sven": ("staff", "South"),
    "sue": ("staff", "Support"),
    "mona": ("manager", "Sales"),
    "dora": ("director", "Board"),
    "otto": ("security_officer", None),
    "aude": ("auditor", None),
    "ivan": ("it_admin", None),
    "iris": ("it_admin", None),
}
#: One person per built-in role: who the attack suite signs in as.
BY_ROLE = {"staff": "sam", "manager": "mona", "director": "dora", "security_officer": "otto",
           "auditor": "aude", "it_admin": "ivan"}
OWNERS = ("sam", "tina", "sven", "sue", "mona")
RESOURCES = {"accounts": Entity.ACCOUNT, "contacts": Entity.CONTACT, "deals": Entity.DEAL,
             "activities": Entity.ACTIVITY}
#: How staff see some fields in this organisation (on top of the built-in masked tax id).
STAFF_FIELDS = {(Entity.ACCOUNT, "notes"): Level.HIDDEN, (Entity.CONTACT, "phone"): Level.HIDDEN,
                (Entity.DEAL, "amount"): Level.MASKED}


@dataclass
class Org:
    """The seeded organisation: people by name, their tokens, and ids of everything made."""

    people: dict[str, User]
    tokens: dict[str, str]
    records: dict[Entity, list[uuid.UUID]] = field(default_factory=dict)
    shares: list[int] = field(default_factory=list)
    alert_id: int = 0
    export_request_id: uuid.UUID | None = None
    import_batch_id: uuid.UUID | None = None
    rights_change_id: int = 0
    attachments: dict[str, uuid.UUID] = field(default_factory=dict)  # owner -> attachment
    #: sue's own export request and import upload, for attacks by others
    sue_export_request_id: uuid.UUID | None = None
    sue_import_batch_id: uuid.UUID | None = None

    def api(self, app: Flask, username: str) -> FlaskClient:
        """A test client that sends ``username``'s bearer token."""
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {self.tokens[username]}"
        return client

    def all_ids(self) -> set[str]:
        return {str(i) for ids in self.records.values() for i in ids}


def seed(make: Factory, db: Session, data_dir: Path) -> Org:
    """Build the organisation in ``db`` (committed) and return what was made."""
    sales = make.team("Sales")
    make.team("North", sales)
    make.team("South", sales)
    make.team("Support")
    make.team("Board")
    people = {name: make.user(name, roles=(role,), team=team)
              for name, (role, team) in PEOPLE.items()}
    _restrict_staff_fields(db)
    org = Org(people=people, tokens={})
    for entity in MODELS:
        org.records[entity] = []
    for n, name in enumerate(OWNERS):
        owner = people[name]
        for k in range(2):
            account = make.account(owner, name=f"Acct {name} {k}", notes=f"secret note {name} {k}",
                                   industry="Shipping" if k else "Retail")
            contact = make.contact(account, last_name=f"Cont {name} {k}", notes="private")
            deal = make.deal(account, owner, name=f"Deal {name} {k}", amount=1000 * (n + 1) + k)
            activity = make.activity(account, owner, subject=f"Act {name} {k}", body="call notes",
                                     deal_id=deal.id, contact_id=contact.id)
            for entity, record in ((Entity.ACCOUNT, account), (Entity.CONTACT, contact),
                                   (Entity.DEAL, deal), (Entity.ACTIVITY, activity)):
                org.records[entity].append(record.id)
    _share(db, org, people)
    for owner in ("sam", "sue"):
        account = db.scalars(select(Account).where(Account.name == f"Acct {owner} 1")).one()
        org.attachments[owner] = attachments.add(
            db, Policy(db, people[owner]), data_dir, account.id, f"offer {owner}.pdf",
            io.BytesIO(b"%PDF-1.4 offer for " + owner.encode())).id
    org.alert_id = _alert(db)
    org.export_request_id = request_export(
        db, Policy(db, people["sam"]), Entity.ACCOUNT, ListQuery(q="Acct"),
        "Quarterly mailing to all my clients").id
    batch = importer.save_batch(db, Policy(db, people["sam"]), "clients.csv",
                                b"name,city\nImported GmbH,Berlin\n", 1)
    sue = Policy(db, people["sue"])
    org.sue_export_request_id = request_export(db, sue, Entity.DEAL, ListQuery(),
                                               "Support renewal campaign list").id
    sue_batch = importer.save_batch(db, sue, "support.csv", b"name\nSupport Client AB\n", 1)
    db.flush()
    org.import_batch_id, org.sue_import_batch_id = batch.id, sue_batch.id
    change = RightsService(db, Policy(db, people["ivan"])).propose_user_roles(
        people["sue"].id, ["manager"])
    org.rights_change_id = change.id
    for name, person in people.items():
        org.tokens[name] = issue_token(db, person, "attack suite")
    db.commit()
    assert change.status == "pending"
    return org


def _restrict_staff_fields(db: Session) -> None:
    staff = db.scalars(select(Role).where(Role.name == "staff")).one()
    for (entity, name), level in STAFF_FIELDS.items():
        staff.field_rules.append(FieldRule(entity=entity.value, field=name, level=level.value))
    db.commit()


def _share(db: Session, org: Org, people: dict[str, User]) -> None:
    """sven shares an account with sam to read; sue shares one with team North to edit (a team
    outside her own, which this organisation's sharing rules allow; iris approves it)."""
    sven_account = db.scalars(select(Account).where(Account.name == "Acct sven 0")).one()
    sue_account = db.scalars(select(Account).where(Account.name == "Acct sue 0")).one()
    grant = sharing.share(db, Policy(db, people["sven"]), sven_account.id, level="read",
                          user_id=people["sam"].id)
    change = sharing.share(db, Policy(db, people["sue"]), sue_account.id, level="edit",
                           team_id=people["sam"].team_id,
                           rules=sharing.ShareRules(team_targets="any"))
    RightsService(db, Policy(db, people["iris"])).approve(change.id)
    team_grant = db.scalars(select(AccountShare).where(AccountShare.account_id == sue_account.id)
                            ).one()
    org.shares.extend([grant.id, team_grant.id])
    db.commit()


def _alert(db: Session) -> int:
    audit.record(db, "export", user="sam", ip="10.0.0.9", entity="account", count=4000,
                 meta={"format": "csv"})
    db.flush()
    alert, _new = upsert(db, {"user": "sam", "ts": "2026-03-14T22:40:00Z", "score": 0.97,
                              "severity": "high", "scenario": "bulk-export",
                              "reasons": ["export of 4000 accounts"], "events": [1]},
                         key="attack-suite-1")
    db.commit()
    return alert.id


# -- the oracle ----------------------------------------------------------------
class Oracle:
    """What a person may reach, asked of the access policy against the current database."""

    def __init__(self, db: Session, username: str) -> None:
        db.rollback()  # see what the app committed since
        self.db = db
        self.user = db.scalars(select(User).where(User.username == username)).one()
        self.policy = Policy(db, self.user)

    def readable(self, entity: Entity, action: Action = Action.READ) -> set[str]:
        if not self.policy.may_do(entity, action):
            return set()
        return {str(i) for i in self.db.scalars(
            self.policy.select(entity, action).with_only_columns(MODELS[entity].id))}

    def existing(self, entity: Entity) -> set[str]:
        """Every stored record of ``entity``, whoever may see it."""
        return {str(i) for i in self.db.scalars(select(MODELS[entity].id))}

    def hidden(self, entity: Entity) -> set[str]:
        return {f for f in FIELDS[entity] if self.policy.level(entity, f) is Level.HIDDEN}

    def masked(self, entity: Entity) -> set[str]:
        return {f for f in FIELDS[entity] if self.policy.level(entity, f) is Level.MASKED}

    def holds(self, cap: Cap) -> bool:
        return self.policy.holds(cap)


def share_ids(db: Session) -> list[int]:
    return list(db.scalars(select(AccountShare.id)))


def alert_ids(db: Session) -> list[int]:
    return list(db.scalars(select(Alert.id)))


def rights_change_ids(db: Session) -> list[int]:
    return list(db.scalars(select(RightsChange.id)))


def record_of(db: Session, entity: Entity, record_id: str) -> Any:
    return db.get(MODELS[entity], uuid.UUID(record_id))
