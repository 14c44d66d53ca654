"""What leak tracing remembers about each marked export and print.

A mark row says who took which file when; the marked records say which real
records it held (ids only, never their values); canaries are the decoy rows
it carried, known only by keyed fingerprints of their values. Nothing here is
client data: record ids are opaque, fingerprints are HMACs under a key that
only the unsealed appliance holds, and canaries are invented.

There are no foreign keys to the CRM's tables: users and records are named by
id and may be deleted later; a leak surfacing years on must still trace.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from dlp.base import Base

#: Stored fingerprint: 4-byte key version, then 16 bytes of HMAC-SHA256.
FINGERPRINT_BYTES = 20


def _now() -> datetime:
    return datetime.now(UTC)


class ExportMark(Base):
    """One marked export or print: its user, entity, size and key version."""

    __tablename__ = "dlp_marks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    export_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    channel: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    username: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    key_version: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    canaries: Mapped[int] = mapped_column(Integer, default=0)
    reference: Mapped[str] = mapped_column(String(9), index=True)
    created_at: Mapped[datetime] = mapped_column(default=_now, index=True)


class MarkedRecord(Base):
    """A real record a marked export or print contained."""

    __tablename__ = "dlp_marked_records"

    record_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    mark_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dlp_marks.id", ondelete="CASCADE"), primary_key=True, index=True)


class CanaryRow(Base):
    """A decoy row one marked file carried; its id is the one the file shows."""

    __tablename__ = "dlp_canaries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    mark_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dlp_marks.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)


class CanaryKey(Base):
    """A keyed fingerprint of one identifying value of a canary (e-mail, phone, name...)."""

    __tablename__ = "dlp_canary_keys"
    __table_args__ = (Index("ix_dlp_canary_keys_fingerprint", "fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(FINGERPRINT_BYTES))
    kind: Mapped[str] = mapped_column(String(16))
    canary_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("dlp_canaries.id", ondelete="CASCADE"), index=True)
