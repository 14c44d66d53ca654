"""What other packages may read of the client book: the CRM's read API.

Leak monitoring recognises client records by the values a file or an alert's evidence
holds, and names them to officers; it reads them here, never from ``crm.models``, so the
CRM's tables stay its own.

Recognising a record by a value keeps no plaintext.

The CRM already keeps a keyed fingerprint of every e-mail address, phone
number and tax id: its blind indexes (HMAC-SHA256 of the normalised value
under a per-column key, ``appliance.keys.blind``). A value read from a file is
fingerprinted the same way and looked up in those indexes, so recognising a
client needs neither decrypting the book nor a second copy of it; ids,
websites and company names, which the CRM keeps in clear, are compared
directly.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm.identity import User
from crm.models import Account, Activity, Contact, Deal

#: Kinds of value that name one client record with certainty.
STRONG = ("id", "email", "phone", "tax_id", "website")
KINDS = (*STRONG, "name")
_WEB_FORMS = ("{}", "www.{}", "http://{}", "https://{}", "http://www.{}", "https://www.{}")
_BLIND: dict[str, tuple[Any, ...]] = {
    "email": (Account.email, Contact.email),
    "phone": (Account.phone, Contact.phone),
    "tax_id": (Account.tax_id,),
}
_MODELS = (Account, Contact, Deal, Activity)
_CHUNK = 500


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ClientIndex:
    """Look CRM records up by normalised values (see ``dlp.watermark`` for the normalisers)."""

    def __init__(self, db: Session) -> None:
        self.db = db

    def lookup(self, kind: str, values: Iterable[str]) -> dict[str, set[uuid.UUID]]:
        """For each value of ``kind`` that names client records, their ids."""
        wanted = sorted({v for v in values if v})
        if not wanted:
            return {}
        if kind == "id":
            return self._by_id(wanted)
        if kind == "name":
            return self._by_name(wanted)
        if kind == "website":
            return self._by_website(wanted)
        if kind not in _BLIND:
            raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        found: dict[str, set[uuid.UUID]] = defaultdict(set)
        for attribute in _BLIND[kind]:
            value_of = {term: value for value in wanted for term in attribute.terms(value)}
            model, index = attribute.owner, attribute.index
            for chunk in _chunks(list(value_of)):
                for record_id, term in self.db.execute(
                        select(model.id, index).where(index.in_(chunk))):
                    found[value_of[term]].add(record_id)
        return dict(found)

    def known_values(self, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (kind, value) pairs belong to a real client record."""
        by_kind: dict[str, set[str]] = defaultdict(set)
        for kind, value in pairs:
            if kind in KINDS:
                by_kind[kind].add(value)
        return {(kind, value) for kind, values in by_kind.items()
                for value in self.lookup(kind, values)}

    def _by_id(self, values: list[str]) -> dict[str, set[uuid.UUID]]:
        ids: dict[uuid.UUID, str] = {}
        for value in values:
            try:
                ids[uuid.UUID(value)] = value
            except ValueError:
                continue
        found: dict[str, set[uuid.UUID]] = {}
        for model in _MODELS:
            for chunk in _chunks(list(ids)):
                for record_id in self.db.scalars(select(model.id).where(model.id.in_(chunk))):
                    found[ids[record_id]] = {record_id}
        return found

    def _by_website(self, hosts: list[str]) -> dict[str, set[uuid.UUID]]:
        """Websites are kept in clear as typed: look each host up in the usual spellings."""
        host_of = {form.format(host) + slash: host for host in hosts for form in _WEB_FORMS
                   for slash in ("", "/")}
        found: dict[str, set[uuid.UUID]] = defaultdict(set)
        for chunk in _chunks(list(host_of)):
            for record_id, site in self.db.execute(
                    select(Account.id, Account.website).where(Account.website.in_(chunk))):
                found[host_of[site]].add(record_id)
        return dict(found)

    def _by_name(self, values: list[str]) -> dict[str, set[uuid.UUID]]:
        found: dict[str, set[uuid.UUID]] = defaultdict(set)
        for chunk in _chunks(values):
            for record_id, name in self.db.execute(
                    select(Account.id, Account.name_folded).where(Account.name_folded.in_(chunk))):
                found[name].add(record_id)
        return dict(found)


def account_names(db: Session, ids: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str, str]]:
    """The id, name and owner's user name of these accounts, by name: never their details."""
    rows = db.execute(select(Account.id, Account.name, User.username).join(User, User.id == Account.owner_id)
                      .where(Account.id.in_(ids)).order_by(Account.name)).all()
    return [(r[0], r[1], r[2]) for r in rows]


def entity_of(db: Session, ids: set[Any]) -> str | None:
    """Which kind of record (account, contact, deal, activity) most of these ids are."""
    counts: Counter[str] = Counter()
    wanted = list(ids)
    for name, model in (("account", Account), ("contact", Contact), ("deal", Deal), ("activity", Activity)):
        for start in range(0, len(wanted), 500):
            counts[name] += len(db.scalars(select(model.id).where(
                model.id.in_(wanted[start:start + 500]))).all())
    return counts.most_common(1)[0][0] if counts and counts.most_common(1)[0][1] else None
