"""What a valid client record looks like, checked the same way for web forms,
the JSON API and CSV import. ``clean`` returns typed values or a
``ValidationFailed`` that names every field to fix and how.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from appliance.kernel.errors import ValidationFailed
from crm.models import ACCOUNT_STATUSES, ACTIVITY_KINDS, CURRENCIES, DEAL_STAGES

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
PHONE = re.compile(r"^\+?[0-9 ()./-]{5,30}$")
TAX_ID = re.compile(r"^[A-Za-z0-9 ./-]{4,40}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
WEBSITE = re.compile(r"^(https?://)?[A-Za-z0-9.-]+\.[A-Za-z]{2,}(/\S*)?$")


@dataclass(frozen=True)
class FieldSpec:
    kind: str
    required: bool = False
    max_len: int = 200
    choices: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None
    hint: str = ""


def _text(spec: FieldSpec, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("must be text")
    value = raw.strip()
    if len(value) > spec.max_len:
        raise ValueError(f"must be at most {spec.max_len} characters")
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"must be one of: {', '.join(spec.choices)}")
    return value


def _pattern(regex: re.Pattern[str]) -> Callable[[FieldSpec, Any], str]:
    def parse(spec: FieldSpec, raw: Any) -> str:
        value = _text(spec, raw)
        if value and not regex.match(value):
            raise ValueError(spec.hint or "has an unexpected format")
        return value

    return parse


def _country(spec: FieldSpec, raw: Any) -> str:
    value = _text(spec, raw).upper()
    if value and not COUNTRY.match(value):
        raise ValueError(spec.hint)
    return value


def _integer(spec: FieldSpec, raw: Any) -> int | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ValueError("must be a whole number")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("must be a whole number") from None
    _bounds(spec, value)
    return value


def _decimal(spec: FieldSpec, raw: Any) -> Decimal | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("must be a number")
    try:
        value = Decimal(str(raw).replace(" ", "").replace("\u202f", ""))
    except InvalidOperation:
        raise ValueError("must be a number, like 12500 or 12500.50") from None
    if not value.is_finite():
        raise ValueError("must be a finite number")
    _bounds(spec, value)
    return value.quantize(Decimal("0.01"))


def _bounds(spec: FieldSpec, value: float | Decimal) -> None:
    if spec.lo is not None and value < spec.lo:
        raise ValueError(f"must be at least {_plain(spec.lo)}")
    if spec.hi is not None and value > spec.hi:
        raise ValueError(f"must be at most {_plain(spec.hi)}")


def _plain(bound: float) -> str:
    return f"{bound:,.0f}" if float(bound).is_integer() else f"{bound:g}"


def _date(spec: FieldSpec, raw: Any) -> date | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise ValueError("must be a date like 2026-03-31")
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise ValueError("must be a date like 2026-03-31") from None


def _datetime(spec: FieldSpec, raw: Any) -> datetime | None:
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise ValueError("must be a date and time like 2026-03-31T14:30")
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be a date and time like 2026-03-31T14:30") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _uuid(spec: FieldSpec, raw: Any) -> uuid.UUID | None:
    if raw in (None, ""):
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise ValueError("must be a record id") from None


def _boolean(spec: FieldSpec, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if raw in (None, "", "0", "false", "off", "no"):
        return False
    if raw in ("1", "true", "on", "yes"):
        return True
    raise ValueError("must be true or false")


PARSERS: dict[str, Callable[[FieldSpec, Any], Any]] = {
    "text": _text,
    "email": _pattern(EMAIL),
    "phone": _pattern(PHONE),
    "tax_id": _pattern(TAX_ID),
    "country": _country,
    "website": _pattern(WEBSITE),
    "int": _integer,
    "decimal": _decimal,
    "date": _date,
    "datetime": _datetime,
    "uuid": _uuid,
    "bool": _boolean,
}

T = FieldSpec
#: User ids are 32-bit integers.
MAX_USER_ID = 2**31 - 1
SCHEMAS: dict[str, dict[str, FieldSpec]] = {
    "account": {
        "name": T("text", required=True),
        "status": T("text", choices=ACCOUNT_STATUSES),
        "industry": T("text", max_len=80),
        "tax_id": T("tax_id", max_len=40, hint="must be 4 to 40 letters, digits, spaces, dots or dashes"),
        "phone": T("phone", max_len=40, hint="must be digits with an optional leading +, like +49 30 1234567"),
        "email": T("email", max_len=254, hint="must be an address like name@example.com"),
        "website": T("website", hint="must be a web address like example.com"),
        "address": T("text", max_len=300),
        "city": T("text", max_len=100),
        "country": T("country", max_len=60, hint="must be a two-letter country code like DE"),
        "notes": T("text", max_len=10000),
        "owner_id": T("int", lo=1, hi=MAX_USER_ID),
    },
    "contact": {
        "account_id": T("uuid", required=True),
        "first_name": T("text", required=True, max_len=100),
        "last_name": T("text", required=True, max_len=100),
        "title": T("text", max_len=120),
        "email": T("email", max_len=254, hint="must be an address like name@example.com"),
        "phone": T("phone", max_len=40, hint="must be digits with an optional leading +, like +49 30 1234567"),
        "notes": T("text", max_len=10000),
    },
    "deal": {
        "account_id": T("uuid", required=True),
        "name": T("text", required=True),
        "stage": T("text", choices=DEAL_STAGES),
        "amount": T("decimal", lo=0, hi=1e12),
        "currency": T("text", choices=CURRENCIES),
        "expected_close": T("date"),
        "probability": T("int", lo=0, hi=100),
        "owner_id": T("int", lo=1, hi=MAX_USER_ID),
    },
    "activity": {
        "account_id": T("uuid", required=True),
        "kind": T("text", required=True, choices=ACTIVITY_KINDS),
        "subject": T("text", required=True),
        "body": T("text", max_len=20000),
        "due_at": T("datetime"),
        "done": T("bool"),
        "owner_id": T("int", lo=1, hi=MAX_USER_ID),
        "deal_id": T("uuid"),
        "contact_id": T("uuid"),
    },
}

#: Form fields that are not record fields.
FORM_NOISE = frozenset({"csrf_token", "submit", "next"})


def _json_type(spec: FieldSpec, raw: Any) -> None:
    """A JSON value must have the type the API's schema gives the field: forms send text for
    everything, JSON does not need to (``"done": "yes"`` is a mistake, not a yes)."""
    if spec.kind == "bool" and not isinstance(raw, bool):
        raise ValueError("must be true or false (a JSON boolean, without quotes)")
    if spec.kind == "int" and raw is not None and (isinstance(raw, bool) or not isinstance(raw, int)):
        raise ValueError("must be a whole number (a JSON integer, without quotes)")


def clean(entity: str, data: Mapping[str, Any], *, partial: bool = False,
          ignore: frozenset[str] = FORM_NOISE, strict: bool = False) -> dict[str, Any]:
    """Typed values for ``entity`` from ``data``, or ``ValidationFailed`` listing every problem.

    ``partial`` (an update) checks only the fields given; otherwise required
    fields must be present and not blank. ``strict`` (JSON) also holds each value to its
    JSON type. Unknown fields are refused, not
    silently dropped, so a typo never loses what someone meant to save.
    """
    schema = SCHEMAS[entity]
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name in data:
        if name not in schema and name not in ignore:
            errors[name] = "is not a field of this record"
    for name, spec in schema.items():
        if name not in data:
            if spec.required and not partial:
                errors[name] = "is required"
            continue
        try:
            if strict:
                _json_type(spec, data[name])
            value = PARSERS[spec.kind](spec, data[name])
        except ValueError as exc:
            errors[name] = str(exc)
            continue
        if spec.required and value in (None, ""):
            errors[name] = "is required"
            continue
        values[name] = value
    if errors:
        raise ValidationFailed(errors)
    return values
