"""Files attached to accounts (contracts, offers, scans), encrypted on disk.

A file is stored under the data directory as ``attachments/<id>.bin``, in the
streaming AEAD format of ``appliance.keys.attachments``: every segment is
authenticated, the plaintext's SHA-256 is checked on every read, and the name
on disk is the attachment's random id, never anything a person typed. Who may
see, add or delete attachments follows the account they hang on (the
``attachment`` rights in the policy). Reading one is audited like reading a
record.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import BigInteger, ForeignKey, String, Uuid, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

import audit
from appliance import keys
from appliance.kernel.errors import BadRequest
from appliance.kernel.orm import new_id, utcnow
from crm.access import Action, Entity, Policy
from crm.base import Base
from crm.models import Account, Record

MAX_BYTES = 20 * 1024 * 1024
_UNSAFE = re.compile(r"[^\w .()+-]")


class Attachment(Record, Base):
    __tablename__ = "attachments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    filename = keys.encrypted_field()  # a file name can name a client
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    account: Mapped[Account] = relationship(lazy="joined", innerjoin=True)

    @property
    def owner_id(self) -> int:
        return self.account.owner_id

    @property
    def team_id(self) -> int | None:
        return self.account.team_id


def storage_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "attachments"


def path_of(data_dir: Path, attachment_id: uuid.UUID) -> Path:
    return storage_dir(data_dir) / f"{attachment_id}.bin"


def register_source(data_dir: Path) -> None:
    """Let key rotation find every attachment file of this appliance."""
    def files(engine: Any) -> Iterator[tuple[Path, str]]:
        with Session(engine) as db:
            for attachment_id in db.scalars(select(Attachment.id)):
                yield path_of(data_dir, attachment_id), str(attachment_id)

    keys.register_attachment_source(files)


def safe_name(name: str) -> str:
    """A display name with no path in it and nothing a file system or a header could misread."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    cleaned = _UNSAFE.sub("_", base).strip(". ")[:150]
    return cleaned or "attachment"


def add(db: Session, policy: Policy, data_dir: Path, account_id: uuid.UUID, filename: str,
        stream: BinaryIO, ip: str | None = None) -> Attachment:
    """Store an uploaded file, encrypted, on an account the user may attach files to."""
    account = policy.get(Entity.ACCOUNT, account_id)
    if not policy.scope_reaches(Entity.ATTACHMENT, Action.CREATE, owner_id=account.owner_id,
                                team_id=account.team_id):
        from appliance.kernel.errors import Forbidden

        raise Forbidden(action="attach files to this account")
    name = safe_name(filename)
    attachment = Attachment(account_id=account.id, filename=name, uploaded_by=policy.user.id,
                            content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
                            size=0, sha256="")
    target = path_of(data_dir, attachment.id)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = keys.write_encrypted(target, str(attachment.id), _Limited(stream, MAX_BYTES))
    if info.size == 0:
        target.unlink()
        raise BadRequest(detail="The file is empty.")
    attachment.size, attachment.sha256 = info.size, info.sha256
    db.add(attachment)
    db.flush()
    audit.record(db, "record.create", user=policy.user.username, ip=ip, entity="attachment",
                 entity_id=attachment.id, count=1,
                 meta={"account": str(account.id), "bytes": info.size, "type": attachment.content_type})
    return attachment


def visible(db: Session, policy: Policy, account: Account) -> list[Attachment]:
    if not policy.may_do(Entity.ATTACHMENT, Action.READ):
        return []
    rows = db.scalars(select(Attachment).where(Attachment.account_id == account.id)
                      .order_by(Attachment.created_at.desc())).all()
    return [a for a in rows if policy.scope_reaches(Entity.ATTACHMENT, Action.READ, owner_id=a.owner_id,
                                                    team_id=a.team_id)]


def get(db: Session, policy: Policy, attachment_id: uuid.UUID, action: Action = Action.READ) -> Attachment:
    """The attachment, if the user may ``action`` it and read its account; else it does not exist."""
    from appliance.kernel.errors import NotFound

    attachment = db.get(Attachment, attachment_id)
    if attachment is None or not policy.may_act_on_id(Entity.ACCOUNT, attachment.account_id, Action.READ) \
            or not policy.scope_reaches(Entity.ATTACHMENT, action, owner_id=attachment.owner_id,
                                        team_id=attachment.team_id):
        raise NotFound(entity="attachment")
    return attachment


def read(data_dir: Path, attachment: Attachment) -> Iterator[bytes]:
    """The file's bytes; tampering with the stored file raises before the last byte."""
    return keys.open_decrypted(path_of(data_dir, attachment.id), str(attachment.id),
                               expected_sha256=attachment.sha256)


def remove(db: Session, policy: Policy, data_dir: Path, attachment_id: uuid.UUID,
           ip: str | None = None) -> Path:
    """Delete the attachment's row; returns its file, to unlink once the change is committed."""
    attachment = get(db, policy, attachment_id, Action.DELETE)
    audit.record(db, "record.delete", user=policy.user.username, ip=ip, entity="attachment",
                 entity_id=attachment.id, count=1, meta={"account": str(attachment.account_id)})
    db.delete(attachment)
    db.flush()
    return path_of(data_dir, attachment.id)


class _Limited:
    """A reader that refuses to give more than ``limit`` bytes."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.left = stream, limit

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size if size >= 0 else self.left + 1)
        self.left -= len(chunk)
        if self.left < 0:
            raise BadRequest(detail=f"Files are limited to {MAX_BYTES // (1024 * 1024)} MB.")
        return chunk
