"""A small client book, its users, and exports made the way ``crm.exports`` makes them,
with marks: the plan / apply / record calls of ``dlp.watermark`` around the same rows."""

from __future__ import annotations

import csv
import io
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from faker import Faker

from crm.access import Action, Entity, Policy
from crm.exports import _cell
from crm.identity import User
from crm.models import Account, Contact
from crm.queries import ListQuery, build
from crm.xlsx import write_xlsx
from dlp import watermark

LOCALES = (("de_DE", "DE", "49"), ("fr_FR", "FR", "33"), ("en_GB", "GB", "44"))


@dataclass
class Exported:
    """One marked export: what the user downloaded, and what it was made from."""

    mark: watermark.Mark
    header: list[str]
    rows: list[list[str]]
    marked: list[list[str]]
    ids: list[uuid.UUID]
    user: User

    def csv(self, delimiter: str = ",") -> bytes:
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter).writerows([self.header, *self.marked])
        return out.getvalue().encode("utf-8-sig")

    def xlsx(self) -> bytes:
        return write_xlsx(self.header, self.marked)

    def canary_rows(self) -> list[list[str]]:
        return [self.marked[c.position] for c in self.mark.canaries]

    def real_rows(self) -> list[list[str]]:
        at = {c.position for c in self.mark.canaries}
        return [r for i, r in enumerate(self.marked) if i not in at]


def export(db, user: User, entity: Entity = Entity.ACCOUNT, *, sort: str = "name",
           settings=None, channel: str = "export") -> Exported:
    """What ``crm.exports.export_records`` does, with the watermark calls it is to make."""
    policy = Policy(db, user)
    records = db.scalars(build(policy, entity, ListQuery(sort=sort), Action.EXPORT)).unique().all()
    fields = policy.visible_fields(entity)
    header = ["id", *fields]
    shown = [policy.present(entity, r) for r in records]
    rows = [[str(r.id), *(_cell(s.get(f)) for f in fields)] for r, s in zip(records, shown, strict=True)]
    mark = watermark.plan(db, export_id=uuid.uuid4() if channel == "export" else None, user=user,
                          entity=entity.value, rows=len(rows), channel=channel, settings=settings)
    marked = watermark.apply(mark, header, rows)
    watermark.record(db, mark, [r.id for r in records])
    db.commit()
    return Exported(mark, header, rows, marked, [r.id for r in records], user)


@dataclass
class Book:
    users: dict[str, User]
    accounts: list[Account]
    contacts: list[Contact]


_FAKERS = {locale: Faker(locale) for locale, _c, _p in LOCALES}


def _accounts(owner: User, count: int, rng: random.Random, seed: int) -> list[Account]:
    made = []
    for n in range(count):
        locale, country, code = LOCALES[n % len(LOCALES)]
        fake = _FAKERS[locale]
        fake.seed_instance(seed * 100_000 + n)
        name = f"{fake.company()} {n}"
        domain = "".join(c for c in name.lower() if c.isalnum())[:20] + ".example"
        made.append(Account(
            name=name, status=rng.choice(("customer", "prospect", "partner")),
            industry=rng.choice(("Retail", "Logistics", "Software", "Energy")),
            tax_id=f"{country}{rng.randrange(10**8, 10**9)}",
            phone=f"+{code} {rng.randrange(100, 999)} {rng.randrange(100, 999)}-{rng.randrange(100, 999)}",
            email=f"info@{domain}", website=f"www.{domain}",
            address=fake.street_address().replace("\n", ", "), city=fake.city(), country=country,
            owner_id=owner.id, team_id=owner.team_id))
    return made


@pytest.fixture
def book(data_dir: Path, db, make) -> Book:
    """Four people in one team and 400 accounts (alice 200, bob 150, mark 50) with contacts."""
    users = {"alice": make.user("alice"), "bob": make.user("bob"),
             "mark": make.user("mark", roles=("manager",)),
             "nina": make.user("nina", roles=("manager",))}
    rng = random.Random(7)
    accounts = (_accounts(users["alice"], 200, rng, 1) + _accounts(users["bob"], 150, rng, 2)
                + _accounts(users["mark"], 50, rng, 3))
    rng.shuffle(accounts)  # created in no particular order, as in a real book
    db.add_all(accounts)
    db.flush()
    fake = Faker("de_DE")
    fake.seed_instance(11)
    contacts = []
    for account in accounts[:120]:
        first, last = fake.first_name(), fake.last_name()
        contacts.append(Contact(account_id=account.id, first_name=first, last_name=last,
                                title=rng.choice(("Head of Purchasing", "CEO", "Office Manager")),
                                email=f"{first.lower()}.{last.lower()}@{account.email.split('@')[1]}",
                                phone=f"+49 171 {rng.randrange(1000000, 9999999)}"))
    db.add_all(contacts)
    db.commit()
    return Book(users, accounts, contacts)
