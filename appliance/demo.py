"""A believable demo company, generated deterministically from a seed.

Five teams, forty people across every role, twenty thousand client accounts
from several countries with their contacts, deals and a year of activities.
Rows are generated as plain dicts and written with bulk inserts: one ORM
object at a time would take minutes.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from argon2 import PasswordHasher
from faker import Faker
from sqlalchemy import insert
from sqlalchemy.orm import Session

from appliance.keys import encrypted_row
from appliance.keys.fields import fields_of
from crm.identity import Team, User
from crm.models import Account, Activity, Contact, Deal, fold
from crm.people import add_user, find_or_create_team
from crm.roles import seed_roles

DEMO_PASSWORD = "citadel-demo-2026"  # noqa: S105 (printed for the demo on purpose)
LOCALES = {  # locale: (country, calling code, share of accounts)
    "de_DE": ("DE", "49", 0.24), "en_US": ("US", "1", 0.18), "fr_FR": ("FR", "33", 0.14),
    "en_GB": ("GB", "44", 0.12), "pl_PL": ("PL", "48", 0.10), "es_ES": ("ES", "34", 0.08),
    "it_IT": ("IT", "39", 0.07), "sv_SE": ("SE", "46", 0.04), "nl_NL": ("NL", "31", 0.03),
}
INDUSTRIES = ("Manufacturing", "Retail", "Logistics", "Healthcare", "Finance", "Software",
              "Construction", "Energy", "Hospitality", "Agriculture", "Education", "Media")
TEAMS = (("Sales", None), ("Sales North", "Sales"), ("Sales South", "Sales"),
         ("Key Accounts", "Sales"), ("Customer Success", None))

#: The logins printed for the demo: one person per role.
NAMED_USERS = (
    ("alice", "Alice Martin", ["staff"], "Sales North"),
    ("bob", "Bob Keller", ["staff"], "Sales South"),
    ("mark", "Mark Olsen", ["manager"], "Sales North"),
    ("diana", "Diana Weber", ["director"], "Sales"),
    ("sofia", "Sofia Rossi", ["security_officer"], None),
    ("ian", "Ian Novak", ["it_admin"], None),
    ("audrey", "Audrey Blanc", ["auditor"], None),
)
OTHER_ROLES = (["staff"] * 24 + ["manager"] * 4 + ["director"] + ["security_officer"] * 2
               + ["it_admin"] + ["auditor"])
SALES_TEAMS = ("Sales North", "Sales South", "Key Accounts", "Customer Success")


@dataclass
class DemoSummary:
    users: int
    accounts: int
    contacts: int
    deals: int
    activities: int
    logins: list[tuple[str, str]]


def seed(db: Session, hasher: PasswordHasher, *, seed: int = 42, accounts: int = 20_000,
         now: datetime | None = None) -> DemoSummary:
    """Fill an empty appliance with the demo company (deterministic for a seed)."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC).replace(microsecond=0)
    seed_roles(db)
    teams = _teams(db)
    people = _people(db, hasher, rng, teams)
    sellers = [u for u in people if {"staff", "manager"} & set(u.role_names)
               and u.team_id is not None]
    fakers = {loc: _faker(loc, seed) for loc in LOCALES}
    gen = _Generator(rng, fakers, sellers, now)
    counts = {"accounts": 0, "contacts": 0, "deals": 0, "activities": 0}
    for batch in _chunks((gen.account() for _ in range(accounts)), 2000):
        rows = {"accounts": [a for a, *_ in batch]}
        rows["contacts"] = [c for _, cs, _, _ in batch for c in cs]
        rows["deals"] = [d for _, _, ds, _ in batch for d in ds]
        rows["activities"] = [x for _, _, _, xs in batch for x in xs]
        for name, model in (("accounts", Account), ("contacts", Contact), ("deals", Deal),
                            ("activities", Activity)):
            if rows[name]:
                db.execute(insert(model.__table__), [stored(model, row) for row in rows[name]])
                counts[name] += len(rows[name])
    db.flush()
    logins = [(u, r[0]) for u, _, r, _ in NAMED_USERS]
    return DemoSummary(len(people), logins=logins, **counts)


def stored(model: type, row: dict[str, Any]) -> dict[str, Any]:
    """A generated row as its table stores it: encrypted fields encrypted, with their indexes."""
    secret = {f.name for f in fields_of(model)}
    plain = {k: v for k, v in row.items() if k not in secret}
    return plain | encrypted_row(model, row["id"], **{k: row[k] for k in secret if k in row})


def _faker(locale: str, seed: int) -> Faker:
    fake = Faker(locale)
    fake.seed_instance(seed)
    return fake


def _teams(db: Session) -> dict[str, Team]:
    teams: dict[str, Team] = {}
    for name, parent in TEAMS:
        teams[name] = find_or_create_team(db, name, teams.get(parent) if parent else None)
    return teams


class _OneHash:
    """Every demo person has the one published password: hash it once, not forty times."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self._hash = hasher.hash(DEMO_PASSWORD)

    def hash(self, password: str) -> str:
        assert password == DEMO_PASSWORD, "demo people share the demo password"
        return self._hash


def _people(db: Session, hasher: PasswordHasher, rng: random.Random,
            teams: dict[str, Team]) -> list[User]:
    hasher = _OneHash(hasher)  # type: ignore[assignment]
    people = [add_user(db, hasher, username=u, full_name=n, password=DEMO_PASSWORD, roles=r,
                       team=t, email=f"{u}@citadel.example") for u, n, r, t in NAMED_USERS]
    fake = _faker("en_US", rng.randrange(1 << 30))
    taken = {u for u, *_ in NAMED_USERS}
    for i, role in enumerate(OTHER_ROLES):
        first, last = fake.first_name(), fake.last_name()
        username = _ascii(f"{first}.{last}").lower()[:60]
        while username in taken:
            username = f"{username}{rng.randrange(10)}"
        taken.add(username)
        team = SALES_TEAMS[i % len(SALES_TEAMS)] if role in ("staff", "manager") else None
        people.append(add_user(db, hasher, username=username, full_name=f"{first} {last}",
                               password=DEMO_PASSWORD, roles=[role], team=team,
                               email=f"{username}@citadel.example"))
    return people


class _Generator:
    """Rows for one account and everything hanging on it."""

    STAGE_WEIGHTS = {"lead": 20, "qualified": 16, "proposal": 12, "negotiation": 8, "won": 28,
                     "lost": 16}
    PROBABILITY = {"lead": 10, "qualified": 25, "proposal": 50, "negotiation": 75, "won": 100,
                   "lost": 0}

    def __init__(self, rng: random.Random, fakers: dict[str, Faker], sellers: list[User],
                 now: datetime) -> None:
        self.rng, self.fakers, self.sellers, self.now = rng, fakers, sellers, now
        self.locales = list(LOCALES)
        self.weights = [LOCALES[loc][2] for loc in self.locales]
        self.names: set[str] = set()

    def _id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _when(self, days_back: int) -> datetime:
        return self.now - timedelta(seconds=self.rng.randrange(days_back * 86400))

    def _phone(self, code: str) -> str:
        digits = "".join(str(self.rng.randrange(10)) for _ in range(9))
        return f"+{code} {digits[:3]} {digits[3:6]}-{digits[6:]}"

    def account(self) -> tuple[dict, list[dict], list[dict], list[dict]]:
        rng = self.rng
        locale = rng.choices(self.locales, self.weights)[0]
        fake, (country, code, _) = self.fakers[locale], LOCALES[locale]
        name = fake.company()
        while name in self.names:
            name = f"{fake.company()} {fake.city_suffix() if hasattr(fake, 'city_suffix') else ''}"\
                .strip()
            if name in self.names:
                name = f"{name} {rng.randrange(2, 99)}"
        self.names.add(name)
        domain = (_ascii(name).lower().replace(" ", "").replace(",", "").replace(".", "")
                  .replace("&", "")[:24] or "client") + ".example"
        owner = rng.choice(self.sellers)
        created = self._when(365 * 3)
        account = {
            "id": self._id(), "name": name, "name_folded": fold(name),
            "status": rng.choices(("customer", "prospect", "partner", "former"), (50, 35, 8, 7))[0],
            "industry": rng.choice(INDUSTRIES), "tax_id": f"{country}{rng.randrange(10**8, 10**9)}",
            "phone": self._phone(code), "email": f"info@{domain}", "website": f"www.{domain}",
            "address": fake.street_address().replace("\n", ", ")[:300], "city": fake.city()[:100],
            "country": country, "notes": rng.choice(("", "", "Prefers e-mail.",
                                                     "Annual review in Q4.", "Key decision maker "
                                                     "is the CFO.")),
            "owner_id": owner.id, "team_id": owner.team_id, "created_at": created,
            "updated_at": self._when(120),
        }
        contacts = [self._contact(account, fake, code, domain) for _ in range(rng.choice((1, 2, 2, 3)))]
        deals = [self._deal(account, owner) for _ in range(rng.choice((0, 1, 1, 1, 2)))]
        activities = [self._activity(account, owner, deals, contacts)
                      for _ in range(rng.choice((1, 2, 3, 3, 4, 5)))]
        return account, contacts, deals, activities

    def _contact(self, account: dict, fake: Faker, code: str, domain: str) -> dict:
        first, last = fake.first_name(), fake.last_name()
        return {"id": self._id(), "account_id": account["id"], "first_name": first,
                "last_name": last, "title": self.rng.choice(
                    ("CEO", "CFO", "Head of Purchasing", "Office Manager", "CTO", "Buyer",
                     "Operations Lead", "")),
                "email": f"{_ascii(first).lower()}.{_ascii(last).lower()}@{domain}"[:254],
                "phone": self._phone(code), "notes": "", "created_at": account["created_at"],
                "updated_at": account["updated_at"]}

    def _deal(self, account: dict, owner: User) -> dict:
        rng = self.rng
        stage = rng.choices(list(self.STAGE_WEIGHTS), list(self.STAGE_WEIGHTS.values()))[0]
        closed = self._when(365) if stage in ("won", "lost") else None
        amount = Decimal(int(rng.lognormvariate(9.3, 0.9) // 100 * 100 + 500))
        return {"id": self._id(), "account_id": account["id"],
                "name": rng.choice(("Annual licence", "Pilot", "Expansion", "Renewal",
                                    "Service contract", "Hardware refresh", "Consulting")),
                "stage": stage, "amount": amount, "currency": "EUR",
                "expected_close": (self.now + timedelta(days=rng.randrange(-30, 150))).date(),
                "probability": self.PROBABILITY[stage], "owner_id": owner.id,
                "team_id": owner.team_id, "created_at": self._when(365),
                "updated_at": self._when(60), "closed_at": closed}

    def _activity(self, account: dict, owner: User, deals: list[dict], contacts: list[dict]) -> dict:
        rng = self.rng
        kind = rng.choices(("call", "meeting", "task", "note"), (40, 20, 25, 15))[0]
        created = self._when(365)
        due = created + timedelta(days=rng.randrange(1, 30)) if kind in ("task", "meeting") else None
        done = None
        if due is not None and (due < self.now and rng.random() < 0.85):
            done = due
        elif kind in ("call", "note"):
            done = created
        subjects = {"call": ("Follow-up call", "Intro call", "Pricing questions", "Check-in"),
                    "meeting": ("Quarterly review", "Demo", "Contract negotiation", "Kick-off"),
                    "task": ("Send proposal", "Prepare quote", "Update contract", "Send invoice"),
                    "note": ("Met at trade fair", "Budget approved", "New contact", "Complaint")}
        return {"id": self._id(), "account_id": account["id"],
                "deal_id": rng.choice(deals)["id"] if deals and rng.random() < 0.4 else None,
                "contact_id": rng.choice(contacts)["id"] if contacts and rng.random() < 0.5 else None,
                "kind": kind, "subject": rng.choice(subjects[kind]),
                "body": rng.choice(("", "Discussed next steps.", "Asked for a discount.",
                                    "Will decide next month.")),
                "due_at": due, "done_at": done, "owner_id": owner.id, "team_id": owner.team_id,
                "created_at": created}


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c in ". -"))\
        .replace(" ", "")


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
