"""The audit log's tables. Rows are appended and never updated; events leave
``audit_events`` only when sealed into an archive segment (``audit.archive``)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
    })


class AuditEvent(Base):
    """One thing a person or sensor did. ``seq`` is its 0-based position in the chain."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_user_ts", "user", "ts"),
        Index("ix_audit_action_ts", "action", "ts"),
        Index("ix_audit_entity", "entity", "entity_id"),
        Index("ix_audit_ip_ts", "ip", "ts"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    user: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str | None] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, default=0)
    ip: Mapped[str | None] = mapped_column(String(45))
    meta: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    @property
    def ts_utc(self) -> datetime:
        return self.ts if self.ts.tzinfo else self.ts.replace(tzinfo=UTC)


class Checkpoint(Base):
    """A signed statement of the tree after ``tree_size`` events (see ``audit.checkpoint``)."""

    __tablename__ = "audit_checkpoints"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class TreeNode(Base):
    """The hash of a complete aligned subtree at a stored level (every ``merkle.STRIDE``-th).

    Derived from the events and written with each checkpoint; it lets proofs
    and tree heads be computed in logarithmic time, including over archived
    events.
    """

    __tablename__ = "audit_tree_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class Segment(Base):
    """The stub of archived events [first_seq, end_seq), sealed in a signed segment file."""

    __tablename__ = "audit_segments"

    first_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    end_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    events_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    file_name: Mapped[str] = mapped_column(String(128))
    file_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


#: Every table of the audit log; none of their rows is ever updated.
AUDIT_TABLES = frozenset({"audit_events", "audit_checkpoints", "audit_tree_nodes",
                          "audit_segments"})
