"""Marks on every export and print, so that a leaked file names its source.

Three marks, each surviving what the others may not (docs/watermarks.md):

- **canaries**: decoy clients (``dlp.canaries``), a few per export, made for
  this user and this export only;
- **formatting marks**: in each cell that allows it, one keyed bit written as
  a choice between two renderings a reader takes for the same value: an
  e-mail's first letter in upper or lower case, an odd or even number of
  spaces in a phone number or tax id, a website with or without its trailing
  slash, a no-break space (U+00A0) for one of the spaces in a name, address,
  title or note. Each bit is ``HMAC(export key, channel, normalised value)``,
  so it depends on the value, never on the row's place: sorting, filtering
  or deleting rows and columns keeps every surviving bit readable;
- **the records exported** (ids only, stored, never in the file).

The API (``crm.exports`` calls it for every export and print)::

    mark = watermark.plan(db, export_id=export.id, user=policy.user, entity="account", rows=n)
    rows = watermark.apply(mark, header, rows)      # cells as strings, in export order
    watermark.record(db, mark, exported_ids)        # same transaction as the export

and for a print page ``apply_records`` (rows as dicts) and ``footer(mark)``.
Keys come from the appliance's ``blind_index`` key (HKDF, one label per use):
without the unsealed keys nobody can forge, predict or check a mark.
"""

from __future__ import annotations

import re
import struct
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from appliance.keys import state
from appliance.keys.blind import normalise_email, normalise_phone, normalise_tax_id
from appliance.keys.keyring import Keyring
from appliance.keys.primitives import frame, hkdf, hmac_sha256
from dlp import canaries as canary_rows
from dlp.canaries import Canary, canonical
from dlp.models import CanaryKey, CanaryRow, ExportMark, MarkedRecord

PURPOSE = "blind_index"
LABEL = "citadel watermark"
CHANNELS = ("export", "print")
_VERSION = struct.Struct(">I")
NBSP = "\u00a0"
#: Zero-width characters that carry a print's reference in its footer.
ZW_ZERO, ZW_ONE, ZW_EDGE = "\u200b", "\u200c", "\u2060"
REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
_INSERT_CHUNK = 1000


# -- keys ---------------------------------------------------------------------------


class MarkKeys:
    """The watermark keys under one version of the appliance's ``blind_index`` key."""

    def __init__(self, keyring: Keyring, version: int) -> None:
        self.keyring, self.version = keyring, version

    def _root(self, use: str) -> bytes:
        return self.keyring.subkey(PURPOSE, self.version, frame(LABEL, use))

    def mark_key(self, mark_id: uuid.UUID) -> bytes:
        """The key of one export's formatting marks and canary positions."""
        return hkdf(self._root("mark"), frame(str(mark_id)))

    def canary_seed(self, user_id: int, mark_id: uuid.UUID, index: int) -> bytes:
        """The seed of the ``index``-th canary a user's export carries."""
        return hkdf(self._root("canary"), frame(user_id, str(mark_id), index),
                    length=canary_rows.SEED_BYTES)

    def fingerprint(self, kind: str, normal: str) -> bytes:
        """A canary value as stored: key version, then 16 bytes of keyed MAC."""
        mac = hmac_sha256(self._root("fingerprint"), frame(kind, normal))
        return _VERSION.pack(self.version) + mac[:16]

    def reference(self, mark_id: uuid.UUID) -> str:
        """A print's short reference, ``7KQ2-M9XD``: 40 keyed bits in Crockford's base32."""
        number = int.from_bytes(hmac_sha256(self._root("reference"), frame(str(mark_id)))[:5], "big")
        text = "".join(REFERENCE_ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(8)))
        return f"{text[:4]}-{text[4:]}"


def keys_for(version: int | None = None, keyring: Keyring | None = None) -> MarkKeys:
    keyring = keyring or state.current()
    return MarkKeys(keyring, keyring.current_version(PURPOSE) if version is None else version)


def all_fingerprints(kind: str, normal: str, keyring: Keyring | None = None) -> list[bytes]:
    """``normal``'s fingerprint under every key version (what to look a value up by)."""
    keyring = keyring or state.current()
    return [MarkKeys(keyring, v).fingerprint(kind, normal) for v in keyring.versions(PURPOSE)]


# -- formatting channels -------------------------------------------------------------


class Channel(ABC):
    """One way to hide a bit in a cell without changing what it means.

    ``normal(force(c, b)) == normal(c)``, ``applies`` is unchanged by ``force``,
    and ``read(force(c, b)) == b`` whenever the cell allows it.
    """

    name = ""

    @abstractmethod
    def applies(self, cell: str) -> bool:
        """Can this cell carry a bit on this channel?"""

    @abstractmethod
    def normal(self, cell: str) -> str:
        """The cell with this channel's mark taken out."""

    @abstractmethod
    def read(self, cell: str) -> int:
        """The bit the cell carries."""

    @abstractmethod
    def force(self, cell: str, bit: int, pick: int) -> str:
        """The cell carrying ``bit`` (``pick`` chooses among equivalent spellings)."""


def _edges(cell: str) -> tuple[str, str, str]:
    core = cell.strip()
    if not core:
        return cell, "", ""
    start = cell.index(core)
    return cell[:start], core, cell[start + len(core):]


class EmailCase(Channel):
    """The first letter of an e-mail address in upper or lower case (addresses ignore case)."""

    name = "email"
    _shape = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

    def applies(self, cell: str) -> bool:
        core = cell.strip()
        if not self._shape.match(core):
            return False
        local = core.partition("@")[0]
        return core[0].lower() != core[0].upper() and local[1:] == local[1:].lower()

    def normal(self, cell: str) -> str:
        return normalise_email(cell)

    def read(self, cell: str) -> int:
        return int(cell.strip()[0].isupper())

    def force(self, cell: str, bit: int, pick: int) -> str:
        head, core, tail = _edges(cell)
        first = core[0].upper() if bit else core[0].lower()
        return head + first + core[1:] + tail


class SpaceParity(Channel):
    """An odd or even number of spaces in a phone number or tax id (both mean the digits)."""

    def __init__(self, name: str, allowed: str, normaliser: Any, prefix_space: bool) -> None:
        self.name = name
        self._allowed = re.compile(allowed)
        self._normal = normaliser
        self._prefix_space = prefix_space

    def applies(self, cell: str) -> bool:
        core = cell.strip()
        return bool(self._allowed.match(core)) and "*" not in core and \
            sum(c.isdigit() for c in core) >= 6

    def normal(self, cell: str) -> str:
        return self._normal(cell)

    def read(self, cell: str) -> int:
        return cell.strip().count(" ") % 2

    def force(self, cell: str, bit: int, pick: int) -> str:
        if self.read(cell) == bit:
            return cell
        head, core, tail = _edges(cell)
        for changed in (self._add_space(core), self._drop_space(core)):
            if changed and self._normal(changed) == self._normal(core):
                return head + changed + tail
        return cell  # no spacing of these digits means the same number

    def _add_space(self, core: str) -> str | None:
        if self._prefix_space:  # "DE123456789" -> "DE 123456789", as tax ids are often written
            prefix = re.match(r"^[A-Za-z]{2,3}(?=\d)", core)
            if prefix:
                return f"{core[:prefix.end()]} {core[prefix.end():]}"
        runs = [m for m in re.finditer(r"\d{4,}", core) if not core[:m.start()].endswith("+")]
        if not runs:
            return None
        run = runs[-1]
        cut = run.start() + max(2, len(run.group()) - 4)
        return f"{core[:cut]} {core[cut:]}"

    @staticmethod
    def _drop_space(core: str) -> str | None:
        at = core.rfind(" ")
        return None if at < 0 else core[:at] + core[at + 1:]


class TrailingSlash(Channel):
    """A website with or without the slash after its host (the same page)."""

    name = "website"
    _shape = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?[^\s/?#@]+\.[^\s/?#@]+/?$", re.IGNORECASE)

    def applies(self, cell: str) -> bool:
        return bool(self._shape.match(cell.strip()))

    def normal(self, cell: str) -> str:
        return cell.strip().lower().rstrip("/")

    def read(self, cell: str) -> int:
        return int(cell.strip().endswith("/"))

    def force(self, cell: str, bit: int, pick: int) -> str:
        head, core, tail = _edges(cell)
        return head + core.rstrip("/") + ("/" if bit else "") + tail


class NoBreakSpace(Channel):
    """An odd or even number of no-break spaces among the spaces inside a text."""

    name = "text"
    _inner = re.compile(r"\S[ \u00a0]+\S")
    _space = re.compile(r"(?<=\S) (?=\S)")
    _nbsp = re.compile(r"(?<=\S)\u00a0(?=\S)")

    def applies(self, cell: str) -> bool:
        return bool(self._inner.search(cell))

    def normal(self, cell: str) -> str:
        return " ".join(cell.replace(NBSP, " ").split())

    def read(self, cell: str) -> int:
        return cell.count(NBSP) % 2

    def force(self, cell: str, bit: int, pick: int) -> str:
        if self.read(cell) == bit:
            return cell
        spaces = [m.start() for m in self._space.finditer(cell)]
        if spaces:
            at, char = spaces[pick % len(spaces)], NBSP
        else:
            nbsps = [m.start() for m in self._nbsp.finditer(cell)]
            if not nbsps:
                return cell
            at, char = nbsps[pick % len(nbsps)], " "
        return cell[:at] + char + cell[at + 1:]


EMAIL = EmailCase()
PHONE = SpaceParity("phone", r"^[+0-9 ()./\-]+$", normalise_phone, prefix_space=False)
TAX_ID = SpaceParity("tax_id", r"^[A-Za-z0-9 ./\-]+$", normalise_tax_id, prefix_space=True)
WEBSITE = TrailingSlash()
TEXT = NoBreakSpace()
CHANNEL_OF: dict[str, Channel] = {"email": EMAIL, "phone": PHONE, "tax_id": TAX_ID,
                                  "website": WEBSITE}
#: Fields whose spaces may carry a no-break space.
TEXT_FIELDS = frozenset({"name", "first_name", "last_name", "title", "address", "city",
                         "subject", "notes", "body", "industry"})


def channel_for(field_name: str) -> Channel | None:
    """The channel a column carries, by its (canonical) field name."""
    if field_name in TEXT_FIELDS:
        return TEXT
    return CHANNEL_OF.get(field_name)


def bit_message(channel: Channel, normal: str) -> bytes:
    """What an export's key is applied to for one value's bit."""
    return frame(channel.name, normal)


def bit_of(key: bytes, channel: Channel, normal: str) -> tuple[int, int]:
    """(the bit, a number to pick a position with) for one value under one export's key."""
    digest = hmac_sha256(key, bit_message(channel, normal))
    return digest[0] & 1, int.from_bytes(digest[1:5], "big")


def mark_cell(key: bytes, channel: Channel | None, cell: str) -> str:
    if channel is None or not cell or not channel.applies(cell):
        return cell
    bit, pick = bit_of(key, channel, channel.normal(cell))
    return channel.force(cell, bit, pick)


def plain(text: str) -> str:
    """A cell with the invisible marks undone (for importing an export back): no-break and
    zero-width characters become ordinary spaces or nothing."""
    return text.replace(NBSP, " ").replace(ZW_ZERO, "").replace(ZW_ONE, "").replace(ZW_EDGE, "")


# -- the API -------------------------------------------------------------------------


@dataclass
class MarkSettings:
    """``[dlp]`` settings that shape marks (defaults suit most books)."""

    canary_rate: float = 0.01
    canary_min_rows: int = 20
    canary_max: int = 100
    canary_domains: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any | None) -> MarkSettings:
        section = settings.section("dlp") if settings is not None else {}
        return cls(canary_rate=float(section.get("canary_rate", cls.canary_rate)),
                   canary_min_rows=int(section.get("canary_min_rows", cls.canary_min_rows)),
                   canary_max=int(section.get("canary_max", cls.canary_max)),
                   canary_domains=tuple(str(d).lower() for d in section.get("canary_domains", ())))


@dataclass
class Mark:
    """One export's or print's marks, planned before its file is written."""

    id: uuid.UUID
    export_id: uuid.UUID | None
    channel: str
    user_id: int
    username: str
    entity: str
    rows: int
    key_version: int
    reference: str
    settings: MarkSettings
    key: bytes = field(repr=False)
    keys: MarkKeys = field(repr=False)
    canaries: list[Canary] = field(default_factory=list)
    applied: bool = False


def plan(db: Session, *, export_id: uuid.UUID | str | None, user: Any, entity: str, rows: int,
         channel: str = "export", settings: Any | None = None) -> Mark:
    """Start marking one export (or print) of ``rows`` records of ``entity`` by ``user``.

    ``user`` is the exporting ``crm.identity.User``; ``export_id`` the export's id
    (None for a print: the mark's own id names it); ``settings`` the appliance's
    ``appliance.kernel.config.Settings`` (for ``[dlp]`` canary settings). Raises ``Sealed`` without keys.
    """
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
    keys = keys_for()
    mark_id = uuid.uuid4()
    export = None if export_id is None else (
        export_id if isinstance(export_id, uuid.UUID) else uuid.UUID(str(export_id)))
    mark = Mark(id=mark_id, export_id=export, channel=channel, user_id=int(user.id),
                username=str(user.username), entity=str(entity), rows=int(rows),
                key_version=keys.version, reference=keys.reference(mark_id),
                settings=MarkSettings.from_settings(settings), key=keys.mark_key(mark_id), keys=keys)
    db.add(ExportMark(id=mark.id, export_id=export, channel=channel, user_id=mark.user_id,
                      username=mark.username[:64], entity=mark.entity[:32],
                      key_version=mark.key_version, rows=mark.rows, canaries=0,
                      reference=mark.reference))
    return mark


def apply(mark: Mark, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[list[str]]:
    """The rows as the file must hold them: canaries inserted, every cell marked.

    ``header`` names the columns (field names such as ``email`` or ``phone``);
    ``rows`` are the real rows in export order, each a list of cell strings.
    """
    if mark.applied:
        raise ValueError("this mark has already been applied: plan one mark per file")
    mark.applied = True
    fields = [canonical(h) for h in header]
    channels = [channel_for(f) for f in fields]
    count = canary_rows.count_for(len(rows), rate=mark.settings.canary_rate,
                                  min_rows=mark.settings.canary_min_rows,
                                  most=mark.settings.canary_max)
    seeds = [mark.keys.canary_seed(mark.user_id, mark.id, i) for i in range(count)]
    mark.canaries = canary_rows.build(mark.entity, header, rows, seeds,
                                      domains=mark.settings.canary_domains)

    def position(i: int, slots: int) -> int:
        digest = hmac_sha256(mark.key, frame("position", i))
        return int.from_bytes(digest[:4], "big") % slots

    placed = canary_rows.insert(rows, header, mark.canaries, position)
    return [[mark_cell(mark.key, channels[i] if i < len(channels) else None, cell)
             for i, cell in enumerate(row)] for row in placed]


def apply_records(mark: Mark, fields: Sequence[str],
                  records: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """``apply`` for a print page: rows as dicts (``id`` and ``fields``), values as text."""
    header = ["id", *fields]
    rows = [[text_of(r.get(name)) for name in header] for r in records]
    return [dict(zip(header, row, strict=True)) for row in apply(mark, header, rows)]


def footer(mark: Mark) -> str:
    """What a print's footer shows to name it: ``ref. 7KQ2-M9XD`` and the same reference
    again in zero-width characters (kept when the page's text is copied)."""
    bits = "".join(f"{REFERENCE_ALPHABET.index(c):05b}" for c in mark.reference.replace("-", ""))
    hidden = ZW_EDGE + "".join(ZW_ONE if b == "1" else ZW_ZERO for b in bits) + ZW_EDGE
    return f"ref. {mark.reference}{hidden}"


def record(db: Session, mark: Mark, exported_ids: Iterable[uuid.UUID | str]) -> None:
    """Remember what ``trace`` needs: the real records the file held and its canaries.

    Call in the export's transaction; canary values that happen to equal a real
    client's are not kept as evidence (they would point at the wrong file).
    """
    from crm.readapi import ClientIndex

    ids = {i if isinstance(i, uuid.UUID) else uuid.UUID(str(i)) for i in exported_ids}
    db.flush()  # the mark row first: the rows below refer to it
    rows = [{"record_id": i, "mark_id": mark.id} for i in ids]
    for start in range(0, len(rows), _INSERT_CHUNK):
        db.execute(insert(MarkedRecord.__table__), rows[start:start + _INSERT_CHUNK])
    real = ClientIndex(db).known_values([k for c in mark.canaries for k in c.keys])
    for canary in mark.canaries:
        db.add(CanaryRow(id=canary.id, mark_id=mark.id, position=canary.position))
    db.flush()
    keys = [{"fingerprint": mark.keys.fingerprint(kind, normal), "kind": kind,
             "canary_id": canary.id}
            for canary in mark.canaries for kind, normal in canary.keys if (kind, normal) not in real]
    for start in range(0, len(keys), _INSERT_CHUNK):
        db.execute(insert(CanaryKey.__table__), keys[start:start + _INSERT_CHUNK])
    stored = db.get(ExportMark, mark.id)
    if stored is not None:
        stored.rows, stored.canaries = len(ids), len(mark.canaries)


def text_of(value: Any) -> str:
    """A value as a print or export shows it."""
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def hidden_references(text: str) -> list[str]:
    """Every print reference hidden in zero-width characters in ``text``."""
    found = []
    for match in re.finditer(f"{ZW_EDGE}([{ZW_ZERO}{ZW_ONE}]{{40}}){ZW_EDGE}", text):
        bits = "".join("1" if c == ZW_ONE else "0" for c in match.group(1))
        code = "".join(REFERENCE_ALPHABET[int(bits[i:i + 5], 2)] for i in range(0, 40, 5))
        found.append(f"{code[:4]}-{code[4:]}")
    return found
