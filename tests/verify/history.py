"""A past like the present: the crowd's own warm-up events, repeated on earlier days.

The leak detector judges a person against their own history. Staff who never
worked before would be judged against nothing, so before the measured run the
crowd works for a short warm-up (real requests, real audit events), and this
module writes a history like it into the audit log: on each of the ``days``
days before today, at the same time of day, each person's warm-up events again,
``copies`` times over so that a past day holds about as much work as today
will (warm-up plus the measured run), each day keeping 70 to 100 % of it, and
with the accounts touched drawn afresh from the person's own book, as real days
are. Events go in through ``audit.record`` with
their time given: the chain stays whole, and only their ``ts`` lies in the past.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

import audit
from appliance.kernel.runtime import Appliance
from audit.models import AuditEvent

ACCOUNT = "account"
#: Rare actions: copying one person's few warm-up exports a dozen times a day would make
#: bulk exporting their normal. Their days get the crowd's average rate instead.
RARE = ("export", "print", "copy")


def warmup_events(appliance: Appliance, users: list[str], since: datetime) -> list[AuditEvent]:
    with appliance.session() as db:
        return list(db.scalars(select(AuditEvent).where(
            AuditEvent.user.in_(users), AuditEvent.ts >= since).order_by(AuditEvent.seq)))


def seed(appliance: Appliance, events: list[AuditEvent], books: dict[str, list[str]], *,
         days: int, copies: int, span: timedelta, seed: int = 5) -> int:
    """Write the history; returns how many events it wrote."""
    rng = random.Random(seed)
    if not events:
        return 0
    start = min(e.ts_utc for e in events)
    common = [e for e in events if e.action not in RARE]
    rare = [e for e in events if e.action in RARE]
    people = sorted({e.user for e in events if e.user})
    per_person_day = len(rare) * copies / max(len(people), 1)
    written = 0
    for day in range(days, 0, -1):
        keep = rng.uniform(0.7, 1.0)  # some days quieter than others
        planned: list[tuple[datetime, AuditEvent, dict[str, str]]] = []
        for copy in range(copies):
            offset = timedelta(days=day) - span * copy / max(copies, 1)
            mapping: dict[str, dict[str, str]] = {}
            for event in common:
                if rng.random() > keep:
                    continue
                remap = mapping.setdefault(event.user or "", _remapper(rng, books.get(
                    event.user or "", [])))
                when = event.ts_utc - offset
                if when >= start:  # only the past: nothing may land beside today's work
                    continue
                planned.append((when, event, remap))
        for person in people:
            for _ in range(_poisson(rng, per_person_day * keep)):
                template = rng.choice(rare)
                remap = _remapper(rng, books.get(person, []))
                when = template.ts_utc - timedelta(days=day) + span * rng.random()
                planned.append((min(when, start - timedelta(seconds=1)),
                                _as_person(template, person), remap))
        planned.sort(key=lambda p: p[0])
        with appliance.session() as db:
            for when, event, remap in planned:
                _record(db, event, when, remap)
                written += 1
    return written


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; the means here are small)."""
    limit, k, product = pow(2.718281828459045, -mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _as_person(event: AuditEvent, person: str) -> AuditEvent:
    """A copy of ``event`` (not attached to any session) made by ``person``."""
    return AuditEvent(action=event.action, user=person, entity=event.entity,
                      entity_id=event.entity_id, count=event.count, ip=event.ip,
                      meta=event.meta, ts=event.ts)


def _remapper(rng: random.Random, book: list[str]) -> dict[str, str]:
    """A fresh choice of the person's accounts for one copy of their day."""
    shuffled = list(book)
    rng.shuffle(shuffled)
    return _Lazy(shuffled)


class _Lazy(dict):
    """Maps each account id met to the next account of the shuffled book."""

    def __init__(self, book: list[str]) -> None:
        super().__init__()
        self.book = book

    def __missing__(self, key: str) -> str:
        value = self.book[len(self) % len(self.book)] if self.book else key
        self[key] = value
        return value


def _record(db: Any, event: AuditEvent, when: datetime, remap: dict[str, str]) -> None:
    meta = json.loads(event.meta) if event.meta else {}
    entity_id = event.entity_id
    if event.entity == ACCOUNT:
        if entity_id and _is_uuid(entity_id):
            entity_id = remap[entity_id]
        if isinstance(meta.get("ids"), list):
            meta["ids"] = [remap[i] for i in meta["ids"]]
    audit.record(db, event.action, user=event.user, entity=event.entity, entity_id=entity_id,
                 count=event.count, ip=event.ip, meta=meta, ts=when)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
