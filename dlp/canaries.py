"""Canary records: believable decoy clients that exist in no real book.

Each marked export of accounts or contacts carries a few invented rows. They
are built from a real row of the same file (a *template*: its status,
industry, country, owner, title and the shape of its phone, tax id, e-mail
and website are kept) with a new company or person, street, city, phone
digits, tax id digits and e-mail address, all drawn from a seed that only the
appliance's keys can produce (``dlp.watermark`` derives it per user, export
and canary). A canary is inserted where it sorts if the file is sorted by a
column, else at a keyed position. One canary found in a leaked file names
the export it was made for.

Only accounts and contacts get canaries: deal and activity rows hold generic
names ("Renewal", "Follow-up call") a decoy could not make unique.

Names come from Faker, seeded per canary with 32 bytes of HKDF output: the
choices are as unpredictable as the key, and Faker's locale data makes them
look like the client base around them.
"""

from __future__ import annotations

import re
import threading
import uuid
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from faker import Faker

from appliance.keys.blind import fold, normalise_email, normalise_phone, normalise_tax_id

#: Entities whose exports carry canaries.
ENTITIES = ("account", "contact")

#: Header spellings a spreadsheet user may give a column, by the field they mean.
ALIASES = {
    "e_mail": "email", "mail": "email", "email_address": "email", "tel": "phone",
    "telephone": "phone", "mobile": "phone", "phone_number": "phone", "vat": "tax_id",
    "vat_id": "tax_id", "tax": "tax_id", "tax_number": "tax_id", "web": "website",
    "url": "website", "homepage": "website", "company": "name", "account": "name",
    "street": "address", "uuid": "id", "record_id": "id",
}
#: Country code -> Faker locale; calling code -> country (for rows without a country column).
LOCALES = {"DE": "de_DE", "US": "en_US", "FR": "fr_FR", "GB": "en_GB", "PL": "pl_PL",
           "ES": "es_ES", "IT": "it_IT", "SE": "sv_SE", "NL": "nl_NL", "AT": "de_AT",
           "CH": "de_CH", "BE": "nl_BE", "DK": "da_DK", "NO": "no_NO", "FI": "fi_FI",
           "CZ": "cs_CZ", "PT": "pt_PT", "IE": "en_IE", "CA": "en_CA", "AU": "en_AU"}
CALLING = {"49": "DE", "1": "US", "33": "FR", "44": "GB", "48": "PL", "34": "ES", "39": "IT",
           "46": "SE", "31": "NL", "43": "AT", "41": "CH", "32": "BE", "45": "DK", "47": "NO",
           "358": "FI", "420": "CZ", "351": "PT", "353": "IE", "61": "AU"}
GENERIC_MAILBOXES = {"info", "office", "contact", "kontakt", "hello", "sales", "mail", "service",
                     "team", "admin", "hallo", "bonjour", "vertrieb", "enquiries"}
#: Bytes of seed one canary consumes (see ``Seed``).
SEED_BYTES = 128
_KEEP_DIGITS = 4  # of a phone: the country and area code stay as in the template

_faker_lock = threading.Lock()
_fakers: dict[str, Faker] = {}


def canonical(header: str) -> str:
    """The field a header names: ``"E-Mail"`` -> ``email``, ``"VAT"`` -> ``tax_id``."""
    name = re.sub(r"[\s\-]+", "_", header.replace("\u00a0", " ").strip().lower())
    return ALIASES.get(name, name)


@dataclass
class Canary:
    """One decoy row: its id, where it sits, its cells, and what identifies it."""

    id: uuid.UUID
    position: int
    cells: list[str]
    keys: list[tuple[str, str]] = field(default_factory=list)  # (kind, normalised value)


class Seed:
    """Keyed bytes for one canary, read in fixed slices (no generator state to leak).

    Layout: 0-15 the canary's id, 16-31 four 32-bit numbers, 32-63 Faker's
    seed, 64-127 digits (one per byte).
    """

    def __init__(self, data: bytes) -> None:
        if len(data) < SEED_BYTES:
            raise ValueError(f"a canary seed is {SEED_BYTES} bytes")
        self.data = data

    def number(self, slot: int, below: int) -> int:
        """A number in ``[0, below)`` from the 4 bytes of ``slot`` (0-3)."""
        start = 16 + 4 * slot
        return int.from_bytes(self.data[start:start + 4], "big") % max(below, 1)

    def digits(self, count: int, part: int) -> str:
        """``count`` keyed digits from half ``part`` (0 or 1) of the digit bytes."""
        pool = self.data[64 + 32 * part:96 + 32 * part]
        return "".join(str(pool[i % len(pool)] % 10) for i in range(count))

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=self.data[:16], version=4)

    @property
    def faker_seed(self) -> bytes:
        return self.data[32:64]


def count_for(rows: int, *, rate: float = 0.01, min_rows: int = 20, most: int = 100) -> int:
    """How many canaries a file of ``rows`` real rows carries: none below ``min_rows``."""
    if rows < min_rows:
        return 0
    return max(1, min(most, round(rows * rate)))


def build(entity: str, header: Sequence[str], rows: Sequence[Sequence[str]],
          seeds: Sequence[bytes], *, domains: Sequence[str] = ()) -> list[Canary]:
    """The canaries for a file: one per seed, each from a keyed template row of ``rows``."""
    if entity not in ENTITIES or not rows or not seeds:
        return []
    fields = [canonical(h) for h in header]
    taken = {key for row in rows for key in _identities(fields, row)}
    made: list[Canary] = []
    for raw in seeds:
        seed = Seed(raw)
        template = rows[seed.number(0, len(rows))]
        for attempt in range(8):  # a drawn name that is already in the file is drawn again
            cells, keys = _synthesise(entity, fields, template, seed, attempt, domains)
            mine = _identities(fields, cells)
            if taken.isdisjoint(mine):
                break
        taken.update(mine)
        made.append(Canary(seed.uuid, -1, cells, keys))
    return made


def _identities(fields: list[str], row: Sequence[str]) -> set[tuple[str, str]]:
    """What must not repeat between a canary and the file's rows: name, e-mail, person."""
    cells = dict(zip(fields, row, strict=False))
    found = {(f, name_key(cells[f])) for f in ("name", "email") if cells.get(f)}
    if cells.get("first_name") or cells.get("last_name"):
        found.add(("person", name_key(f"{cells.get('first_name', '')} {cells.get('last_name', '')}")))
    return found


def insert(rows: Sequence[Sequence[str]], header: Sequence[str], canaries: list[Canary],
           positions: Callable[[int, int], int]) -> list[list[str]]:
    """``rows`` with the canaries inserted: where they sort if the file is sorted by a
    column, else at ``positions(i, n)`` (keyed). Sets each canary's final position."""
    out = [list(r) for r in rows]
    column = sorted_column(header, rows)
    if column is not None:
        index, key, descending = column
        order = _Reversed if descending else _Same
        keys = [order(key(r[index])) for r in out]
    for i, canary in enumerate(canaries):
        if column is not None:
            probe = order(key(canary.cells[index]))
            at = bisect_right(keys, probe)
            keys.insert(at, probe)
        else:
            at = positions(i, len(out) + 1)
        out.insert(at, canary.cells)
    index_of = {id(row): n for n, row in enumerate(out)}
    for canary in canaries:
        canary.position = index_of[id(canary.cells)]
    return out


# -- sorted columns ------------------------------------------------------------


class _Same:
    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _Same) -> bool:
        return bool(self.key < other.key)


class _Reversed(_Same):
    def __lt__(self, other: _Same) -> bool:
        return bool(other.key < self.key)


def _raw_key(value: str) -> tuple[int, str]:
    return (0, value.replace("\u00a0", " "))


def _folded_key(value: str) -> tuple[int, str]:
    return (0, fold(value.replace("\u00a0", " ")).strip())


def _letters_key(value: str) -> tuple[int, str]:
    """Letters and digits only, as a locale's collation compares them first."""
    return (0, "".join(c for c in fold(value) if c.isalnum()))


def _number_key(value: str) -> tuple[int, Decimal]:
    try:
        return (0, Decimal(value.replace(",", "")))
    except InvalidOperation:
        return (1, Decimal(0))


#: Orders a database may have sorted text in: bytewise (C collation, SQLite), folded
#: (the CRM's folded name columns), letters first (a locale's collation).
TEXT_KEYS: tuple[Callable[[str], Any], ...] = (_raw_key, _folded_key, _letters_key)


def sorted_column(header: Sequence[str], rows: Sequence[Sequence[str]],
                  ) -> tuple[int, Callable[[str], Any], bool] | None:
    """The column the rows are visibly sorted by (most distinct values wins), the order it
    is sorted in, and whether descending; None when no column is sorted."""
    if len(rows) < 3:
        return None
    best: tuple[int, int, Callable[[str], Any], bool] | None = None
    for index in range(len(header)):
        values = [r[index] if index < len(r) else "" for r in rows]
        distinct = len(set(values))
        if distinct < 3 or (best is not None and distinct <= best[0]):
            continue
        numeric = all(_number_key(v)[0] == 0 for v in values if v)
        for key in ((_number_key,) if numeric else TEXT_KEYS):
            direction = _monotone(values, key)
            if direction is not None:
                best = (distinct, index, key, direction)
                break
    return None if best is None else (best[1], best[2], best[3])


def _monotone(values: list[str], key: Callable[[str], Any]) -> bool | None:
    """False if ``values`` rise under ``key``, True if they fall, None if neither; keys are
    computed pair by pair, so an unsorted column costs only its first few."""
    rising = falling = True
    previous = key(values[0])
    for value in values[1:]:
        current = key(value)
        rising = rising and previous <= current
        falling = falling and previous >= current
        if not (rising or falling):
            return None
        previous = current
    return not rising  # True: descending


# -- synthesis -------------------------------------------------------------------


def _faker(locale: str) -> Faker:
    fake = _fakers.get(locale)
    if fake is None:
        try:
            fake = Faker(locale)
        except AttributeError:  # a locale Faker does not ship
            fake = Faker("en_US")
        _fakers[locale] = fake
    return fake


def _country(fields: list[str], template: Sequence[str]) -> str:
    cells = dict(zip(fields, template, strict=False))
    country = (cells.get("country") or "").strip().upper()
    if country in LOCALES:
        return country
    phone = (cells.get("phone") or "").strip()
    if phone.startswith(("+", "00")):
        digits = normalise_phone(phone)
        for length in (3, 2, 1):
            if digits[:length] in CALLING:
                return CALLING[digits[:length]]
    return "US"


def _ascii(text: str) -> str:
    """Letters and digits an address may hold: ``"Jürgen Weiß"`` -> ``"jurgenweiss"``."""
    return "".join(c for c in fold(text) if c.isascii() and c.isalnum())


def _synthesise(entity: str, fields: list[str], template: Sequence[str], seed: Seed,
                attempt: int, domains: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    cells = dict(zip(fields, template, strict=False))
    country = _country(fields, template)
    with _faker_lock:  # Faker instances are shared; seeding and drawing must not interleave
        fake = _faker(LOCALES.get(country, "en_US"))
        fake.seed_instance(seed.faker_seed + bytes([attempt]))
        company, first, last = fake.company(), fake.first_name(), fake.last_name()
        street, city = fake.street_address().replace("\n", ", "), fake.city()
    domain, site, stem = _domains(company, cells, seed, domains)
    trap = bool(domains)
    made: dict[str, str] = {"id": str(seed.uuid), "notes": "", "body": ""}
    if entity == "account":
        made |= {"name": company, "address": street, "city": city,
                 "email": _email(cells.get("email", ""), "", "", domain, stem, trap),
                 "website": _website(cells.get("website", ""), cells.get("email", ""),
                                     site)}
    else:
        made |= {"first_name": first, "last_name": last,
                 "email": _email(cells.get("email", ""), first, last, domain, stem, trap)}
    made["phone"] = _redigit(cells.get("phone", ""), seed, 0, keep=_KEEP_DIGITS)
    made["tax_id"] = _redigit(cells.get("tax_id", ""), seed, 1, keep=0)
    out = []
    for name, value in zip(fields, template, strict=False):
        out.append(made[name] if name in made and value != "" else value)
    out.extend("" for _ in range(len(fields) - len(out)))
    return out, _keys(dict(zip(fields, out, strict=False)))


def _domains(company: str, cells: dict[str, str], seed: Seed,
             trap_domains: Sequence[str]) -> tuple[str, str, str]:
    """(mail domain, web domain, stem): the company's name spelt as the template's domain
    is (words joined, or hyphenated), under its top-level domain; for mail a configured
    trap domain instead when there is one."""
    template = (cells.get("email", "").rpartition("@")[2] or
                re.sub(r"^[a-z]+://|^www\.", "", cells.get("website", "").lower()).split("/")[0])
    stem_part, _, tld = template.lower().rpartition(".")
    joiner = "-" if "-" in stem_part else ""
    words = [w for w in (_ascii(w) for w in re.split(r"[\s,&.\-]+", company)) if w]
    stem = joiner.join(words)[:24].strip("-") or "office"
    site = f"{stem}.{tld or 'com'}"
    mail = trap_domains[seed.number(3, len(trap_domains))].lower() if trap_domains else site
    return mail, site, stem


def _email(template: str, first: str, last: str, domain: str, stem: str, trap: bool) -> str:
    if not template:
        return ""
    local = template.partition("@")[0]
    if "*" in local:  # the user sees e-mails masked: a canary must look the same
        return f"{(_ascii(first) or stem)[:1]}***@{domain}"
    if first:
        return f"{_ascii(first)}.{_ascii(last)}@{domain}"
    if trap:  # one trap domain for many companies: the mailbox names the company
        return f"{stem}@{domain}"
    return f"{local.lower() if local.lower() in GENERIC_MAILBOXES else 'info'}@{domain}"


def _website(template: str, template_email: str, domain: str) -> str:
    if not template:
        return ""
    old = template_email.rpartition("@")[2].lower()
    if old and old in template.lower():
        at = template.lower().index(old)
        return template[:at] + domain + template[at + len(old):]
    prefix = re.match(r"^(https?://)?(www\.)?", template, re.IGNORECASE)
    return f"{prefix.group(0) if prefix else ''}{domain}"


def _redigit(template: str, seed: Seed, part: int, *, keep: int) -> str:
    """The template's shape with new digits after the first ``keep`` (country and area)."""
    if not template:
        return ""
    fresh = iter(seed.digits(sum(c.isdigit() for c in template), part))
    out, seen = [], 0
    for char in template:
        if char.isdigit():
            seen += 1
            out.append(char if seen <= keep else next(fresh))
        else:
            out.append(char)
    return "".join(out)


def _keys(cells: dict[str, str]) -> list[tuple[str, str]]:
    """What identifies a canary in a leaked file, normalised as trace normalises cells."""
    keys: list[tuple[str, str]] = []
    if cells.get("email"):
        keys.append(("email", normalise_email(cells["email"])))
    if cells.get("phone") and "*" not in cells["phone"] and len(normalise_phone(cells["phone"])) >= 6:
        keys.append(("phone", normalise_phone(cells["phone"])))
    if cells.get("tax_id") and "*" not in cells["tax_id"]:
        keys.append(("tax_id", normalise_tax_id(cells["tax_id"])))
    if cells.get("website"):
        keys.append(("website", website_host(cells["website"])))
    if cells.get("name"):
        keys.append(("name", name_key(cells["name"])))
    if cells.get("first_name") and cells.get("last_name"):
        keys.append(("person", name_key(f"{cells['first_name']} {cells['last_name']}")))
    return [(k, v) for k, v in keys if v]


def website_host(value: str) -> str:
    """``HTTPS://www.Kessler.de/`` -> ``kessler.de``."""
    host = re.sub(r"^[a-z]+://", "", value.strip().lower()).split("/")[0]
    return host.removeprefix("www.")


def name_key(value: str) -> str:
    """A name folded for comparison: case, accents, spacing (NBSP included) forgiven."""
    return " ".join(fold(value.replace("\u00a0", " ")).split())
