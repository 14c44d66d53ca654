"""Client records: accounts (clients), their contacts, deals and activities.

Personal and commercial details (tax ids, phones, e-mails, addresses, notes,
activity bodies) are encrypted field by field, bound to their row and column
(``appliance.keys``); e-mail, phone and tax id carry blind indexes for exact
search. Company names, cities and subjects stay in clear so lists can be
searched and sorted in the database.

Record ids are random UUIDs given at construction, so a record's id is known
before it is written (encrypted fields bind it) and ids cannot be guessed.
Every record has an owner and a team: the access policy scopes on them.
Contacts belong to an account and are reached through it.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Uuid,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from appliance.kernel.orm import new_id, utcnow
from appliance.keys import encrypted_field
from crm.base import Base
from crm.identity import Team, User

DEAL_STAGES = ("lead", "qualified", "proposal", "negotiation", "won", "lost")
OPEN_STAGES = DEAL_STAGES[:4]
ACTIVITY_KINDS = ("call", "meeting", "task", "note")
ACCOUNT_STATUSES = ("prospect", "customer", "partner", "former")
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "RUB", "PLN", "SEK")


def fold(text: str) -> str:
    """Lower-case, accent-free form of a name, for search that forgives both."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class Record:
    """Behaviour shared by every client record."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("id", new_id())
        super().__init__(**kwargs)


class Account(Record, Base):
    """A client company."""

    __tablename__ = "accounts"
    __table_args__ = (
        Index("ix_accounts_owner_name", "owner_id", "name_folded"),
        Index("ix_accounts_team_name", "team_id", "name_folded"),
        CheckConstraint("status IN ('prospect','customer','partner','former')", name="status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    name_folded: Mapped[str] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(16), default="prospect")
    industry: Mapped[str] = mapped_column(String(80), default="")
    tax_id = encrypted_field(index="tax_id")
    phone = encrypted_field(index="phone")
    email = encrypted_field(index="email")
    website: Mapped[str] = mapped_column(String(200), default="")
    address = encrypted_field()
    city: Mapped[str] = mapped_column(String(100), default="")
    country: Mapped[str] = mapped_column(String(2), default="")
    notes = encrypted_field()
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)

    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)
    team: Mapped[Team | None] = relationship(lazy="joined")


@event.listens_for(Account.name, "set", propagate=True)
def _fold_account_name(target: Account, value: str, _old: object, _init: object) -> None:
    target.name_folded = fold(value or "")


class Contact(Record, Base):
    """A person at a client. Visible to whoever may see the account."""

    __tablename__ = "contacts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(120), default="")
    email = encrypted_field(index="email")
    phone = encrypted_field(index="phone")
    notes = encrypted_field()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account: Mapped[Account] = relationship(lazy="joined", innerjoin=True)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def owner_id(self) -> int:
        """A contact belongs to whoever owns its account."""
        return self.account.owner_id

    @property
    def team_id(self) -> int | None:
        return self.account.team_id


class Deal(Record, Base):
    """A sales opportunity moving through the pipeline."""

    __tablename__ = "deals"
    __table_args__ = (
        CheckConstraint("probability BETWEEN 0 AND 100", name="probability"),
        CheckConstraint("amount >= 0", name="amount"),
        Index("ix_deals_stage_owner", "stage", "owner_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    stage: Mapped[str] = mapped_column(String(16), default="lead")
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal("0"))
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    expected_close: Mapped[date | None] = mapped_column(Date)
    probability: Mapped[int] = mapped_column(Integer, default=10)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    closed_at: Mapped[datetime | None]

    account: Mapped[Account] = relationship(lazy="joined", innerjoin=True)
    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class Activity(Record, Base):
    """A call, meeting, task or note on an account."""

    __tablename__ = "activities"
    __table_args__ = (Index("ix_activities_owner_due", "owner_id", "done_at", "due_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="SET NULL"))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contacts.id", ondelete="SET NULL")
    )
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(200))
    body = encrypted_field()
    due_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    account: Mapped[Account] = relationship(lazy="joined", innerjoin=True)
    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class AccountShare(Base):
    """One account shared with a user or a team, to read or edit, until it expires."""

    __tablename__ = "account_shares"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (team_id IS NULL)", name="one_grantee"),
        CheckConstraint("level IN ('read','edit')", name="level"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(8), default="read")
    expires_at: Mapped[datetime | None]
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
