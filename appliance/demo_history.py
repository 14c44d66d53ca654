"""The demo's past and its day: weeks of ordinary work in the audit log, then two insiders.

A leak detector judges each person against their own history, so a demo whose
log starts today would judge everyone against nothing. This module writes four
weeks of believable working days into the audit log, before today, through
``audit.record`` with their times given (the hash chain stays whole; only
``ts`` lies in the past): people sign in around eight, open and search their
own accounts, log calls, run a report now and then, export a short filtered
list once in a while, and sign out in the late afternoon.

Then today, through the real API (real requests, real exports with their
watermarks, real audit events), two insiders act:

- ``bob``, a salesperson, exports his whole book in three filtered exports,
  each under his export cap;
- a key-account salesperson pages through the contacts API with a token,
  thousands of contacts in a few minutes.

The leak baselines are fitted on the past only, and today is scored at once,
so the officer finds real alerts with real evidence on first sign-in.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
from appliance.kernel.runtime import Appliance
from crm.identity import User
from crm.models import Account

#: Working days of history before today.
HISTORY_DAYS = 28
#: The offices' working hours, in UTC (the demo company works in Central Europe).
DAY_START, DAY_END = time(7, 0), time(16, 30)
BULK_EXPORTER = "bob"
SCRAPER_TEAM = "Key Accounts"
#: Contacts the scraper pages through: about twenty times what anyone reads in a day.
SCRAPED = 2000
OFFICE_IPS = [f"10.0.{net}.{host}" for net in (1, 2) for host in range(20, 60)]


@dataclass
class DemoDay:
    """What today's insiders did: shown by ``appliance demo`` and checked by tests."""

    history_events: int
    exporter: str
    exported_rows: int
    scraper: str
    scraped_rows: int
    alerts: int


def write_history(db: Session, *, now: datetime, seed: int, days: int = HISTORY_DAYS) -> int:
    """Write ``days`` working days of everyone's ordinary work, oldest first; returns the count."""
    rng = random.Random(seed)
    people = list(db.scalars(select(User).order_by(User.username)))
    books = _books(db)
    ip_of = {u.username: rng.choice(OFFICE_IPS) for u in people}
    written = 0
    for day in _working_days(now.date(), days):
        planned: list[tuple[datetime, str, dict[str, Any]]] = []
        for person in people:
            if rng.random() < 0.06:  # a day off, ill, at a fair
                continue
            planned += _workday(rng, person, books.get(person.id, []), day)
        planned.sort(key=lambda p: p[0])
        for when, user, event in planned:
            audit.record(db, event.pop("action"), user=user, ts=when, ip=ip_of[user], **event)
            written += 1
        db.commit()  # one transaction a day keeps memory flat
    return written


def _books(db: Session) -> dict[Any, list[str]]:
    """Each owner's account ids (as text), for views and searches of one's own book."""
    books: dict[Any, list[str]] = defaultdict(list)
    for account_id, owner_id in db.execute(select(Account.id, Account.owner_id)):
        books[owner_id].append(str(account_id))
    return books


def _working_days(today: date, days: int) -> list[date]:
    out: list[date] = []
    day = today - timedelta(days=1)
    while len(out) < days:
        if day.weekday() < 5:
            out.append(day)
        day -= timedelta(days=1)
    return sorted(out)


def _at(day: date, rng: random.Random, start: time, end: time) -> datetime:
    first = datetime.combine(day, start, UTC)
    span = (datetime.combine(day, end, UTC) - first).total_seconds()
    return first + timedelta(seconds=rng.uniform(0, span))


def _workday(rng: random.Random, person: User, book: list[str], day: date,
             ) -> list[tuple[datetime, str, dict[str, Any]]]:
    """One person's ordinary day: sign in, work their own book, sign out."""
    roles = set(person.role_names)
    name = person.username
    arrive = _at(day, rng, DAY_START, time(8, 30))
    leave = _at(day, rng, time(15, 30), DAY_END)
    events = [(arrive, name, {"action": "login", "meta": {"method": "password"}})]
    if book and roles & {"staff", "manager", "director"}:
        for _ in range(rng.randint(8, 30)):
            events.append((_between(rng, arrive, leave), name, {
                "action": "record.view", "entity": "account", "entity_id": rng.choice(book),
                "count": 1 + rng.randint(0, 4), "meta": {"outside_book": 0}}))
        for _ in range(rng.randint(2, 8)):
            shown = rng.sample(book, min(len(book), 25))
            events.append((_between(rng, arrive, leave), name, {
                "action": "record.search", "entity": "account", "count": len(shown),
                "meta": {"ids": shown, "total": len(book), "outside_book": 0}}))
        for _ in range(rng.randint(1, 5)):
            events.append((_between(rng, arrive, leave), name, {
                "action": "record.update", "entity": "account", "entity_id": rng.choice(book),
                "count": 1, "meta": {"changes": {"notes": "changed"}}}))
        if rng.random() < (0.5 if roles & {"manager", "director"} else 0.1):
            events.append((_between(rng, arrive, leave), name, {
                "action": "report.run", "entity": "deal", "count": rng.randint(20, 200),
                "meta": {"report": "funnel"}}))
        if rng.random() < 0.08:  # a short filtered list for a mailing or a visit plan
            events.append((_between(rng, arrive, leave), name, {
                "action": "export", "entity": "account",
                "count": max(3, round(len(book) * rng.uniform(0.01, 0.07))),
                "meta": {"format": "csv", "filtered": True, "outside_book": 0}}))
        if rng.random() < 0.05:
            events.append((_between(rng, arrive, leave), name, {
                "action": "print", "entity": "account", "count": rng.randint(1, 12),
                "meta": {"context": "list", "outside_book": 0}}))
    events.append((leave, name, {"action": "logout"}))
    return events


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + (end - start) * rng.uniform(0.02, 0.98)


def play_today(appliance: Appliance, *, seed: int) -> tuple[str, int, str, int]:
    """Today's two insiders, through the real API; returns who they are and what they took."""
    from appliance import auth
    from appliance.app import create_app

    rng = random.Random(seed + 1)
    with appliance.session() as db:
        exporter = db.scalars(select(User).where(User.username == BULK_EXPORTER)).one()
        scraper = _scraper(db, rng)
        tokens = {u.username: auth.issue_token(db, u, "demo") for u in (exporter, scraper)}
        names = (exporter.username, scraper.username)
    client = create_app(appliance).test_client()

    def call(user: str, method: str, path: str, **kwargs: Any) -> Any:
        answer = client.open(path, method=method, headers={"Authorization": f"Bearer {tokens[user]}"},
                             environ_base={"REMOTE_ADDR": "10.0.2.77"}, **kwargs)
        if answer.status_code >= 400:
            raise RuntimeError(f"demo {method} {path} as {user}: {answer.status_code} {answer.text[:200]}")
        return answer

    exported = 0
    for status in ("customer", "prospect", "partner", "former"):  # the whole book, under the cap
        answer = call(names[0], "POST", "/api/v1/exports",
                      json={"resource": "accounts", "format": "csv", "filters": {"status": status}})
        exported += int(answer.headers["X-Export-Rows"])
    scraped, page = 0, 1
    while scraped < SCRAPED:
        items = call(names[1], "GET", f"/api/v1/contacts?page={page}&per_page=200").json["items"]
        if not items:
            break
        scraped += len(items)
        page += 1
    return names[0], exported, names[1], scraped


def _scraper(db: Session, rng: random.Random) -> User:
    """A salesperson of the key-accounts team who is not one of the printed logins."""
    from crm.identity import Team

    team = db.scalars(select(Team).where(Team.name == SCRAPER_TEAM)).one()
    staff = [u for u in db.scalars(select(User).where(User.team_id == team.id).order_by(User.username))
             if u.role_names == ["staff"]]
    return rng.choice(staff)


def stage(appliance: Appliance, *, seed: int, now: datetime | None = None) -> DemoDay:
    """The whole demo story: history, baselines fitted on it, today's insiders, scored."""
    from dlp import live

    now = now or datetime.now(UTC)
    with appliance.session() as db:
        written = write_history(db, now=now, seed=seed)
    live.retrain(appliance, until=datetime.combine(now.date(), time(0), UTC))
    exporter, exported, scraper, scraped = play_today(appliance, seed=seed)
    alerts = live.score_new_events(appliance)
    with appliance.session() as db:  # today's events signed before anyone looks
        from audit.checkpoint import checkpoint_now

        checkpoint_now(db, appliance.settings)
    return DemoDay(written, exporter, exported, scraper, scraped, len(alerts))
