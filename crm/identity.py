"""The people who use the CRM: teams, users, roles and their rights, sessions
and API tokens.

Rights are data (``Permission`` and ``FieldRule`` rows per role); what they
mean is decided in one place, ``crm.access``.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from appliance.kernel.orm import utcnow
from crm.base import Base


class Team(Base):
    """A department or a sub-team; ``parent_id`` builds the hierarchy."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))

    parent: Mapped[Team | None] = relationship(remote_side=[id])


class Role(Base):
    """A named bundle of rights: staff, manager, director, security_officer, ..."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    export_rows_per_export: Mapped[int] = mapped_column(Integer, default=0)
    export_rows_per_day: Mapped[int] = mapped_column(Integer, default=0)
    card_required: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Renewed by every change to the role's rights, so cached grants are never stale; random,
    #: so a role deleted and created again never matches an old cache entry.
    stamp: Mapped[str] = mapped_column(String(32), default=lambda: secrets.token_hex(16))

    permissions: Mapped[list[Permission]] = relationship(
        back_populates="role", cascade="all, delete-orphan"
    )
    field_rules: Mapped[list[FieldRule]] = relationship(
        back_populates="role", cascade="all, delete-orphan"
    )
    capabilities: Mapped[list[Capability]] = relationship(
        back_populates="role", cascade="all, delete-orphan"
    )


class Permission(Base):
    """Role may perform ``action`` on ``entity`` records within ``scope``."""

    __tablename__ = "permissions"
    __table_args__ = (UniqueConstraint("role_id", "entity", "action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(16))

    role: Mapped[Role] = relationship(back_populates="permissions")


class FieldRule(Base):
    """How a role sees one field: hidden, masked, read or edit."""

    __tablename__ = "field_rules"
    __table_args__ = (UniqueConstraint("role_id", "entity", "field"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(32))
    field: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16))
    #: A masked field may still be searched and filtered by its exact value, when the role's
    #: rule says so (someone who has the tax id in hand may find its account).
    exact_match: Mapped[bool] = mapped_column(Boolean, default=False)

    role: Mapped[Role] = relationship(back_populates="field_rules")


class Capability(Base):
    """A right outside CRM records, named ``resource:action`` (``audit:read``)."""

    __tablename__ = "capabilities"
    __table_args__ = (UniqueConstraint("role_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))

    role: Mapped[Role] = relationship(back_populates="capabilities")


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)


class User(Base):
    """A person who signs in. Frozen, under notice or offboarded changes what they may do."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), default="")
    password_hash: Mapped[str] = mapped_column(String(200), default="")
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    frozen_at: Mapped[datetime | None]
    notice_at: Mapped[datetime | None]
    offboarded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]

    team: Mapped[Team | None] = relationship()
    roles: Mapped[list[Role]] = relationship(secondary="user_roles", lazy="selectin")

    @property
    def role_names(self) -> list[str]:
        return sorted(role.name for role in self.roles)

    @property
    def can_sign_in(self) -> bool:
        return self.active and self.offboarded_at is None


class UserSession(Base):
    """A signed-in browser. The cookie holds a random token; only its hash is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str] = mapped_column(String(64), default="")
    #: "password" until a required card has signed; "complete" once signed in.
    stage: Mapped[str] = mapped_column(String(16), default="complete")
    #: The card that signed this session in; removing it locks the session.
    card_fingerprint: Mapped[str | None] = mapped_column(String(64))
    locked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A bearer token for the JSON API. Only its hash is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint("length(name) > 0", name="name_not_empty"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()



class Card(Base):
    """A smart card enrolled for a user: its 9A key signs sign-ins, its 9D key (officers)
    receives a key share. Only public keys are stored."""

    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    card_id: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    public_key_pem: Mapped[str] = mapped_column(Text)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    key_management_pem: Mapped[str | None] = mapped_column(Text)
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    enrolled_by: Mapped[str] = mapped_column(String(64))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class UsedNonce(Base):
    """Card sign-in challenges already answered: a signature is good exactly once."""

    __tablename__ = "used_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class EmergencyCode(Base):
    """A one-time, time-limited code an officer gives someone who lost their card."""

    __tablename__ = "emergency_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    issued_by: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

@event.listens_for(Session, "before_flush")
def _restamp_roles(session: Session, _context: object, _instances: object) -> None:
    """Any change to a role or to its rights gives the role a new stamp (see Grants.load)."""
    changed: set[Role] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Role) and obj in session.dirty and session.is_modified(obj):
            changed.add(obj)
        elif isinstance(obj, Permission | FieldRule | Capability):
            role = obj.role or (session.get(Role, obj.role_id) if obj.role_id else None)
            if role is not None and role not in session.new:
                changed.add(role)
    for role in changed:
        role.stamp = secrets.token_hex(16)
