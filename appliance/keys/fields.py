"""Field encryption: AES-256-GCM per value, bound to its table, column, row and key version.

Stored value (``LargeBinary``)::

    0   1  format, 0x01
    1   4  `fields` key version (uint32, big-endian)
    5  12  random nonce
    17  n  AES-256-GCM ciphertext of the PKCS#7-padded (16-byte blocks) UTF-8 value
    17+n 16 GCM tag

    associated data = frame("citadel field", table, column, row id) || bytes 0..4

Padding hides exact lengths (to the next 16 bytes); the associated data makes
a value copied to another row or column, or relabelled with another version,
fail to decrypt.

A model declares an encrypted column in one line::

    email = encrypted_field(index="email")

which maps the ciphertext to the database column ``email`` (attribute
``email_encrypted``) and, with ``index=``, a blind index column ``email_bidx``
(attribute ``email_index``). Reading ``obj.email`` decrypts on first access
only (cached per instance while the ciphertext is unchanged); assigning
encrypts at once when the row id is known, else just before the row is
inserted. ``Model.email.matches(term)`` is the SQL condition for exact search.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Generic, TypeVar, overload

from cryptography.hazmat.primitives import padding
from sqlalchemy import LargeBinary, SQLColumnExpression, event
from sqlalchemy.orm import InstrumentedAttribute, Mapper, mapped_column
from sqlalchemy.sql import ColumnElement, false

from appliance.keys import blind, state
from appliance.keys.errors import DecryptionFailed, UnknownKeyVersion
from appliance.keys.keyring import Keyring
from appliance.keys.primitives import NONCE_BYTES, TAG_BYTES, frame, open_sealed, seal

PURPOSE = "fields"
FORMAT = 0x01
_HEADER = struct.Struct(">BI")
HEADER_BYTES = _HEADER.size
OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
BLOCK_BITS = 128

T = TypeVar("T")


# -- codecs: how a Python value becomes bytes -----------------------------------


@dataclass(frozen=True)
class Codec:
    name: str
    python_type: type

    def encode(self, value: Any) -> bytes:
        if self.python_type is Decimal:
            try:
                number = value if isinstance(value, Decimal) else Decimal(str(value))
            except InvalidOperation:
                raise ValueError(f"{value!r} is not a number") from None
            return str(number).encode()
        if not isinstance(value, str):
            raise TypeError(f"an encrypted text field takes a string, not {type(value).__name__}")
        return value.encode()

    def decode(self, data: bytes) -> Any:
        text = data.decode()
        return Decimal(text) if self.python_type is Decimal else text


TEXT = Codec("text", str)
DECIMAL = Codec("decimal", Decimal)
CODECS = {str: TEXT, Decimal: DECIMAL}


def row_key(row_id: object) -> str:
    """The row id as bound into a ciphertext: UUIDs in canonical form, whatever the spelling."""
    if isinstance(row_id, uuid.UUID):
        return str(row_id)
    text = str(row_id)
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


@lru_cache(maxsize=1024)
def _column_ad(table: str, column: str) -> bytes:
    return frame("citadel field", table, column)


def _ad(table: str, column: str, row_id: object, header: bytes) -> bytes:
    return _column_ad(table, column) + frame(row_key(row_id)) + header


# -- the byte-level API (bulk paths: demo data, CSV import, rotation) ----------


def encrypt_bytes(table: str, column: str, row_id: object, plaintext: bytes, *,
                  keyring: Keyring | None = None, version: int | None = None) -> bytes:
    keyring = keyring or state.current()
    version = keyring.current_version(PURPOSE) if version is None else version
    padder = padding.PKCS7(BLOCK_BITS).padder()
    padded = padder.update(plaintext) + padder.finalize()
    header = _HEADER.pack(FORMAT, version)
    return header + seal(keyring.aead(PURPOSE, version), padded, _ad(table, column, row_id, header))


def stored_version(blob: bytes) -> int:
    """The key version a stored value was encrypted with (``DecryptionFailed`` if malformed)."""
    if len(blob) < OVERHEAD + BLOCK_BITS // 8 or blob[0] != FORMAT:
        raise DecryptionFailed(what="field")
    return int(_HEADER.unpack_from(blob)[1])


def decrypt_bytes(table: str, column: str, row_id: object, blob: bytes, *,
                  keyring: Keyring | None = None) -> bytes:
    keyring = keyring or state.current()
    version = stored_version(blob)
    if not keyring.has_version(PURPOSE, version):
        raise UnknownKeyVersion(what="field", version=version, purpose=PURPOSE)
    header = blob[:HEADER_BYTES]
    padded = open_sealed(keyring.aead(PURPOSE, version), blob[HEADER_BYTES:],
                         _ad(table, column, row_id, header), what=f"{table}.{column} value")
    unpadder = padding.PKCS7(BLOCK_BITS).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:  # authentic but badly padded: written by something else
        raise DecryptionFailed(what=f"{table}.{column} value") from None


def encrypt_value(table: str, column: str, row_id: object, plaintext: Any, *,
                  keyring: Keyring | None = None) -> bytes:
    """Encrypt one value for ``table.column`` of row ``row_id`` (a string, or a Decimal)."""
    codec = _codec_for(table, column, plaintext)
    return encrypt_bytes(table, column, row_id, codec.encode(plaintext), keyring=keyring)


def decrypt_value(table: str, column: str, row_id: object, blob: bytes, *,
                  keyring: Keyring | None = None) -> Any:
    """Decrypt a value stored by ``encrypt_value`` or an encrypted field."""
    field = REGISTRY.get((table, column))
    codec = field.codec if field is not None else TEXT
    return codec.decode(decrypt_bytes(table, column, row_id, blob, keyring=keyring))


def _codec_for(table: str, column: str, value: Any) -> Codec:
    field = REGISTRY.get((table, column))
    if field is not None:
        return field.codec
    return DECIMAL if isinstance(value, Decimal) else TEXT


# -- the ORM mechanism ------------------------------------------------------------

#: Every encrypted field declared by a model, by (table, column): what rotation walks.
REGISTRY: dict[tuple[str, str], EncryptedField[Any]] = {}
_PENDING = "_citadel_pending_plaintext"


class EncryptedField(Generic[T]):
    """A model attribute stored encrypted; see the module docstring."""

    def __init__(self, *, index: str | None = None, kind: type = str, default: Any = "",
                 deferred: bool = False, row_id: str = "id") -> None:
        if index is not None:
            blind.normaliser(index)  # fail at import time on a typo
        if kind not in CODECS:
            raise TypeError(f"encrypted fields hold str or Decimal, not {kind.__name__}")
        self.index_kind = index
        self.codec = CODECS[kind]
        self.default = default
        self.deferred = deferred
        self.row_id = row_id

    def __set_name__(self, owner: type, name: str) -> None:
        table = owner.__dict__.get("__tablename__")
        if not isinstance(table, str):
            raise TypeError(f"{owner.__name__}.{name}: encrypted fields need a __tablename__")
        self.owner, self.name, self.table = owner, name, table
        self.attr = f"{name}_encrypted"
        self.index_attr = f"{name}_index" if self.index_kind else None
        self._cache = f"_citadel_plain_{name}"
        # Added before the declarative scan of the class (it runs after __set_name__).
        setattr(owner, self.attr, mapped_column(name, LargeBinary, nullable=True,
                                                deferred=self.deferred))
        if self.index_attr:
            setattr(owner, self.index_attr, mapped_column(
                f"{name}_bidx", LargeBinary(blind.STORED_BYTES), nullable=True, index=True))
        previous = REGISTRY.get((table, name))
        if previous is not None and previous.owner.__qualname__ != owner.__qualname__:
            raise TypeError(f"{table}.{name} is already an encrypted field of "
                            f"{previous.owner.__qualname__}")
        REGISTRY[(table, name)] = self

    # -- class-level access: SQL helpers --

    @property
    def column(self) -> InstrumentedAttribute[bytes | None]:
        """The mapped ciphertext attribute (for load_only, deferred loading, raw reads)."""
        return getattr(self.owner, self.attr)

    @property
    def index(self) -> SQLColumnExpression[bytes]:
        if not self.index_attr:
            raise TypeError(f"{self.table}.{self.name} has no blind index: declare index=...")
        return getattr(self.owner, self.index_attr)

    def terms(self, value: str, *, keyring: Keyring | None = None) -> list[bytes]:
        """The blind index values ``value`` may be stored under (one per key version)."""
        if not self.index_attr:
            raise TypeError(f"{self.table}.{self.name} has no blind index: declare index=...")
        return blind.blind_terms(self.table, self.name, self.index_kind or "text", value,
                                 keyring=keyring)

    def matches(self, term: str, *, keyring: Keyring | None = None) -> ColumnElement[bool]:
        """SQL condition: this field equals ``term`` after normalisation (via the blind index)."""
        return self.matches_any([term], keyring=keyring)

    def matches_any(self, values: list[str], *,
                    keyring: Keyring | None = None) -> ColumnElement[bool]:
        """SQL condition: this field equals one of ``values`` (deduplicating imports, say)."""
        terms = [t for v in values for t in self.terms(v, keyring=keyring)]
        return self.index.in_(terms) if terms else false()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EncryptedField):
            return self is other
        raise TypeError(f"{self.table}.{self.name} is encrypted: SQL cannot compare it; "
                        f"use {self.owner.__name__}.{self.name}.matches(term)")

    __hash__ = object.__hash__

    # -- instance access --

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> EncryptedField[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        stored = getattr(obj, self.attr)
        cached = obj.__dict__.get(self._cache)
        if cached is not None and cached[0] is stored:
            return cached[1]
        if stored is None:
            return self.default
        value = self.codec.decode(decrypt_bytes(self.table, self.name, self._row_id(obj), stored))
        obj.__dict__[self._cache] = (stored, value)
        return value

    def __set__(self, obj: object, value: Any) -> None:
        obj.__dict__.get(_PENDING, {}).pop(self.name, None)
        if value is None:
            setattr(obj, self.attr, None)
            if self.index_attr:
                setattr(obj, self.index_attr, None)
            obj.__dict__.pop(self._cache, None)
            return
        plaintext = self.codec.encode(value)
        value = self.codec.decode(plaintext)  # the value as it will read back
        keyring = state.current()  # sealed: refuse before touching anything
        if self.index_attr:
            setattr(obj, self.index_attr, blind.blind_index(
                self.table, self.name, self.index_kind or "text", str(value), keyring=keyring))
        row_id = getattr(obj, self.row_id, None)
        if row_id is None:  # encrypted in before_insert, once the id is known
            obj.__dict__.setdefault(_PENDING, {})[self.name] = plaintext
            obj.__dict__[self._cache] = (getattr(obj, self.attr), value)
            return
        stored = encrypt_bytes(self.table, self.name, row_id, plaintext, keyring=keyring)
        setattr(obj, self.attr, stored)
        obj.__dict__[self._cache] = (stored, value)

    def encrypt_pending(self, obj: object) -> None:
        plaintext = obj.__dict__.get(_PENDING, {}).pop(self.name, None)
        if plaintext is None:
            return
        row_id = self._row_id(obj)
        stored = encrypt_bytes(self.table, self.name, row_id, plaintext)
        setattr(obj, self.attr, stored)
        obj.__dict__[self._cache] = (stored, self.codec.decode(plaintext))

    def _row_id(self, obj: object) -> object:
        row_id = getattr(obj, self.row_id, None)
        if row_id is None:
            raise ValueError(f"{type(obj).__name__} needs its `{self.row_id}` before an encrypted "
                             f"field can be stored: assign it at construction")
        return row_id


def encrypted_field(*, index: str | None = None, kind: type[T] = str,  # type: ignore[assignment]
                    default: Any = "", deferred: bool = False,
                    row_id: str = "id") -> EncryptedField[T]:
    """Declare an encrypted column on a model in one line.

    ``index``: add a blind index for exact search, normalised as ``"email"``,
    ``"phone"``, ``"tax_id"`` or ``"text"``. ``kind``: ``str`` or ``Decimal``.
    ``default``: what reading gives when the column is NULL. ``deferred``: load
    the ciphertext only when the attribute is read (long notes). ``row_id``: the
    attribute that identifies the row (it must never change).
    """
    return EncryptedField(index=index, kind=kind, default=default, deferred=deferred,
                          row_id=row_id)


def fields_of(model: type) -> list[EncryptedField[Any]]:
    return [f for f in REGISTRY.values() if issubclass(model, f.owner)]


def encrypted_row(model: type, row_id: object, *, keyring: Keyring | None = None,
                  **values: Any) -> dict[str, bytes | None]:
    """Column values for a Core insert of ``model``: ciphertexts and blind indexes by column name.

    ``insert(Account.__table__).values(id=rid, name=..., **encrypted_row(Account, rid, email=e))``
    """
    keyring = keyring or state.current()
    out: dict[str, bytes | None] = {}
    by_name = {f.name: f for f in fields_of(model)}
    for name, value in values.items():
        field = by_name.get(name)
        if field is None:
            raise KeyError(f"{model.__name__}.{name} is not an encrypted field")
        if value is None:
            out[name] = None
            if field.index_attr:
                out[f"{name}_bidx"] = None
            continue
        plaintext = field.codec.encode(value)
        out[name] = encrypt_bytes(field.table, name, row_id, plaintext, keyring=keyring)
        if field.index_attr:
            out[f"{name}_bidx"] = blind.blind_index(field.table, name, field.index_kind or "text",
                                                    str(field.codec.decode(plaintext)),
                                                    keyring=keyring)
    return out


@event.listens_for(Mapper, "before_insert")
def _encrypt_pending_on_insert(_mapper: Mapper[Any], _connection: Any, target: Any) -> None:
    pending = target.__dict__.get(_PENDING)
    if not pending:
        return
    for field in fields_of(type(target)):
        field.encrypt_pending(target)
