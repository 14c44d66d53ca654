"""Models used only by the key tests: shaped like the CRM's (UUID ids given at
construction, the id assigned after the other attributes, an ``updated_at``
that changes on update)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, ForeignKey, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from appliance.keys import encrypted_field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Record:
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("id", uuid.uuid4())  # lands last in kwargs, as in crm.models
        super().__init__(**kwargs)


class Client(Record, Base):
    __tablename__ = "keytest_clients"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), default="")
    email = encrypted_field(index="email")
    phone = encrypted_field(index="phone")
    tax_id = encrypted_field(index="tax_id")
    notes = encrypted_field(deferred=True)
    amount = encrypted_field(kind=Decimal, default=Decimal("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class Contact(Record, Base):
    __tablename__ = "keytest_contacts"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("keytest_clients.id"))
    email = encrypted_field(index="email")
    body = encrypted_field()
