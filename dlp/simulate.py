"""A believable organisation's CRM activity, as DLP events, with insiders in it.

The organisation has teams in several time zones, each with a manager and
sales staff over a book of client accounts, plus support staff (who read
across the whole client base), directors, integration (API) accounts and new
hires who join during the period. People keep their own working hours, skip
weekends, public holidays and vacations, sometimes work from home, read and
update their book, run reports, export, print and copy a little, and work
harder at quarter ends. ``dlp.scenarios`` then injects labelled cases: insiders
taking the client base and benign look-alikes that must not raise an alert.

Everything is drawn from one seed, so a seed always gives the same file.
Events carry what the appliance itself adds to ``meta``: ``outside_book`` (how
many of the records were outside the person's own book), ``ids`` (the records
touched, except on API list reads) and ``total_accounts``, and ``role`` /
``team`` on logins.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from dlp.events import dumps, iso

DAY = 86400
HOUR = 3600

#: (UTC offset in hours, public holidays as (month, day)) of the regions teams sit in.
REGIONS: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = (
    (1, ((1, 1), (4, 6), (5, 1), (5, 14), (5, 25), (12, 25), (12, 26))),
    (0, ((1, 1), (4, 3), (4, 6), (5, 4), (5, 25), (12, 25), (12, 26))),
    (-5, ((1, 1), (1, 19), (2, 16), (5, 25), (7, 3), (11, 26), (12, 25))),
    (8, ((1, 1), (2, 17), (2, 18), (4, 4), (5, 1), (10, 1), (12, 25))),
)


@dataclass
class SimConfig:
    """What to simulate; the defaults are a mid-sized sales organisation."""

    users: int = 200
    days: int = 120
    seed: int = 0
    start: date = date(2026, 1, 5)
    accounts_per_user: int = 60
    activity: float = 1.0  # scales every person's daily volume
    day_start: float = 8.6  # the usual local hour people start work
    team_size: int = 8
    scenarios: bool = True
    cases_per_100_users: float = 8.0


@dataclass
class Person:
    """One member of staff and the habits the simulator gives them."""

    index: int
    name: str
    role: str
    team: str
    tz: int
    start_hour: float
    length: float
    office_ip: str
    home_ip: str
    remote_share: float
    book: np.ndarray
    pace: float
    hired: int = 0
    left: int | None = None
    vacation: set[int] = field(default_factory=set)
    holidays: set[int] = field(default_factory=set)
    saturday: bool = False
    phone_net: str | None = None

    def works(self, day: int, weekday: int) -> bool:
        if day < self.hired or (self.left is not None and day >= self.left):
            return False
        if day in self.vacation or day in self.holidays:
            return False
        return weekday < 5 or (weekday == 5 and self.saturday)

    def at(self, base: int, day: int, local_hour: float) -> int:
        """Epoch seconds of ``local_hour`` on ``day`` in this person's time zone."""
        return int(base + day * DAY + local_hour * HOUR - self.tz * HOUR)


@dataclass
class Event:
    """One generated event before it is written; ``case`` ties it to a label."""

    ts: int
    user: str
    action: str
    entity: str | None
    count: int
    ip: str | None
    meta: dict[str, Any]
    case: int = -1


# Mean events per working day by role: view, search, update, create, report,
# export, print, copy, api calls.
RATES: dict[str, dict[str, float]] = {
    "sales": {"view": 24, "search": 8, "update": 9, "create": 1.5, "report": 0.5,
              "export": 0.08, "print": 0.3, "copy": 1.5, "api": 0.0},
    "support": {"view": 45, "search": 22, "update": 14, "create": 3, "report": 0.1,
                "export": 0.01, "print": 0.1, "copy": 3.0, "api": 0.0},
    "manager": {"view": 14, "search": 5, "update": 3, "create": 0.3, "report": 2.5,
                "export": 0.25, "print": 0.2, "copy": 0.5, "api": 0.0},
    "director": {"view": 7, "search": 3, "update": 1, "create": 0.1, "report": 3.5,
                 "export": 0.15, "print": 0.15, "copy": 0.3, "api": 0.0},
    "integration": {"view": 0, "search": 0, "update": 2, "create": 0, "report": 0,
                    "export": 0.0, "print": 0, "copy": 0, "api": 25},
}


class Organisation:
    """The people, their books and the calendar of one simulation."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.base = int(datetime(config.start.year, config.start.month, config.start.day,
                                 tzinfo=UTC).timestamp())
        self.total_accounts = max(300, config.users * config.accounts_per_user)
        self.people: list[Person] = []
        self._build()

    def weekday(self, day: int) -> int:
        return (self.config.start + timedelta(days=day)).weekday()

    def date_of(self, day: int) -> date:
        return self.config.start + timedelta(days=day)

    def quarter_end(self, day: int) -> bool:
        """The last seven days of a calendar quarter: reporting season."""
        d = self.date_of(day)
        return d.month in (3, 6, 9, 12) and d.day >= 24

    def month_end(self, day: int) -> bool:
        """The last four days of a month: monthly figures."""
        d = self.date_of(day)
        return (d + timedelta(days=4)).month != d.month

    def _build(self) -> None:
        cfg = self.config
        n_teams = max(1, round(cfg.users / cfg.team_size))
        bounds = np.linspace(0, self.total_accounts, n_teams + 1).astype(int)
        roles = self._roles(cfg.users, n_teams)
        team_of = [i % n_teams for i in range(cfg.users)]
        for i, role in enumerate(roles):
            t = team_of[i]
            tz, holidays = REGIONS[t % len(REGIONS)]
            team_book = np.arange(bounds[t], bounds[t + 1])
            self.people.append(self._person(i, role, t, tz, holidays, team_book))
        self._split_books(n_teams, team_of)

    def _roles(self, users: int, n_teams: int) -> list[str]:
        rng = self.rng
        roles = ["manager"] * min(n_teams, users)
        extra = users - len(roles)
        n_dir = max(1, round(users * 0.03)) if extra > 3 else 0
        n_int = max(1, round(users * 0.03)) if extra > 6 else 0
        n_sup = round(users * 0.2)
        rest = max(0, extra - n_dir - n_int - n_sup)
        roles += ["director"] * n_dir + ["integration"] * n_int + ["support"] * n_sup
        roles += ["sales"] * rest
        head, tail = roles[:n_teams], roles[n_teams:]
        rng.shuffle(tail)
        return (head + tail)[:users]

    def _person(self, i: int, role: str, team: int, tz: int,
                holidays: tuple[tuple[int, int], ...], team_book: np.ndarray) -> Person:
        rng, cfg = self.rng, self.config
        net = 10 + team
        person = Person(
            index=i, name=f"user{i:04d}", role=role, team=f"team{team:02d}", tz=tz,
            start_hour=float(np.clip(rng.normal(cfg.day_start, 0.7), cfg.day_start - 2,
                                     cfg.day_start + 2.5)),
            length=float(np.clip(rng.normal(8.6, 0.8), 6, 11)),
            office_ip=f"10.{net}.{rng.integers(1, 250)}.{rng.integers(2, 250)}",
            home_ip=f"{rng.integers(60, 220)}.{rng.integers(0, 255)}.{rng.integers(0, 255)}."
                    f"{rng.integers(2, 250)}",
            remote_share=float(rng.choice([0.0, 0.1, 0.2, 0.4], p=[0.3, 0.3, 0.25, 0.15])),
            book=team_book, pace=float(np.exp(rng.normal(0, 0.35)) * cfg.activity),
            saturday=role == "support" and rng.random() < 0.3,
        )
        if role == "director":
            person.book = np.arange(self.total_accounts)
        if role in ("sales", "manager") and rng.random() < 0.15:
            person.phone_net = f"100.{rng.integers(64, 127)}"
        person.holidays = self._holidays(holidays)
        person.vacation = self._vacation()
        if role in ("sales", "support") and rng.random() < 0.05:
            person.hired = int(rng.integers(cfg.days // 4, max(cfg.days // 4 + 1, cfg.days - 20)))
        return person

    def _holidays(self, dates: tuple[tuple[int, int], ...]) -> set[int]:
        out = set()
        for day in range(self.config.days):
            d = self.date_of(day)
            if (d.month, d.day) in dates:
                out.add(day)
        return out

    def _vacation(self) -> set[int]:
        rng, days = self.rng, self.config.days
        out: set[int] = set()
        for _ in range(int(rng.poisson(days / 90))):
            start = int(rng.integers(0, days))
            out.update(range(start, start + int(rng.integers(3, 12))))
        return out

    def _split_books(self, n_teams: int, team_of: list[int]) -> None:
        """Sales staff share their team's book; managers keep the whole team book."""
        for t in range(n_teams):
            sellers = [p for p in self.people if team_of[p.index] == t and p.role == "sales"]
            if not sellers:
                continue
            team_book = sellers[0].book
            for k, part in enumerate(np.array_split(team_book, len(sellers))):
                sellers[k].book = part
        for p in self.people:
            if p.role in ("support", "integration"):
                p.book = np.zeros(0, dtype=np.int64)


class Activity:
    """Generates the everyday events of every person, day by day."""

    def __init__(self, org: Organisation) -> None:
        self.org = org
        self.events: list[Event] = []

    def run(self) -> list[Event]:
        for person in self.org.people:
            rng = np.random.default_rng([self.org.config.seed, person.index, 1])
            for day in range(self.org.config.days):
                if person.works(day, self.org.weekday(day)):
                    self.workday(person, day, rng)
        return self.events

    def ip_for(self, person: Person, day: int, rng: np.random.Generator) -> str:
        return person.home_ip if rng.random() < person.remote_share else person.office_ip

    def workday(self, p: Person, day: int, rng: np.random.Generator) -> None:
        """One ordinary working day: log in, work the book, log out."""
        org, ev = self.org, self.events
        begin = p.start_hour + rng.normal(0, 0.4)
        length = p.length + rng.normal(0, 0.6)
        ip = self.ip_for(p, day, rng)
        t0, t1 = p.at(org.base, day, begin), p.at(org.base, day, begin + length)
        season = 1.0 + (1.5 if org.quarter_end(day) and p.role in ("manager", "director") else 0)
        if rng.random() < 0.02:
            ev.append(Event(t0 - 30, p.name, "login.failed", None, 0, ip, {}))
        ev.append(Event(t0, p.name, "login", None, 0, ip, {"role": p.role, "team": p.team}))
        switch = t0 + (t1 - t0) * rng.uniform(0.3, 0.7) if rng.random() < 0.1 else None
        rates = RATES[p.role]
        for kind, mean in rates.items():
            lam = mean * p.pace * (season if kind in ("report", "export") else 1.0)
            for _ in range(int(rng.poisson(lam))):
                ts = int(rng.uniform(t0 + 60, t1 - 60))
                where = p.home_ip if switch is not None and ts > switch else ip
                if p.phone_net and kind == "view" and rng.random() < 0.2:
                    where = f"{p.phone_net}.{rng.integers(0, 255)}.{rng.integers(2, 250)}"
                self.action(p, kind, ts, where, rng, day)
        if p.role == "integration":
            self.nightly_sync(p, day, rng)
        reporting = 0.5 if org.quarter_end(day) else 0.2 if org.month_end(day) else 0.0
        if p.role in ("manager", "director") and rng.random() < reporting:
            self.season_report(p, int(rng.uniform(t0, t1)), ip, rng)
        ev.append(Event(t1, p.name, "logout", None, 0, ip, {}))
        if rng.random() < 0.6:
            ev.append(Event(t1 + 5, p.name, "card.removed", None, 0, ip, {}))

    def pick(self, p: Person, n: int, rng: np.random.Generator,
             outside_share: float) -> tuple[list[str], int]:
        """``n`` record ids, mostly from the person's own book; how many fall outside it."""
        total = self.org.total_accounts
        if len(p.book) == 0:
            ids = rng.integers(0, total, n)
            return [f"a{i}" for i in ids], n
        outside = int(rng.binomial(n, outside_share))
        own = rng.choice(p.book, n - outside)
        other = rng.integers(0, total, outside)
        return [f"a{i}" for i in np.concatenate([own, other])], outside

    def action(self, p: Person, kind: str, ts: int, ip: str, rng: np.random.Generator,
               day: int) -> None:
        """One ordinary action of ``kind`` at ``ts``."""
        total = self.org.total_accounts
        share = 0.05 if p.role != "support" else 1.0
        entity = "contact" if rng.random() < 0.35 else "account"
        if kind in ("view", "update", "create", "copy"):
            ids, out = self.pick(p, 1, rng, share)
            action = {"view": "record.view", "update": "record.update",
                      "create": "record.create", "copy": "copy"}[kind]
            self.events.append(Event(ts, p.name, action, entity, 1, ip,
                                     {"ids": ids, "outside_book": out}))
        elif kind == "search":
            self.events.append(Event(ts, p.name, "record.search", entity,
                                     int(rng.integers(0, 25)), ip, {}))
        elif kind == "report":
            size = len(p.book) if len(p.book) else total // 4
            n = max(1, int(size * rng.uniform(0.2, 1.0)))
            self.events.append(Event(ts, p.name, "report.run", "deal", n, ip,
                                     {"report": "pipeline", "outside_book": 0}))
        elif kind in ("export", "print"):
            mean = {"sales": 25, "support": 5, "manager": 80, "director": 300}[p.role]
            if kind == "print":
                mean = max(2, mean // 10)
            n = max(1, int(rng.lognormal(np.log(mean), 0.6)))
            n = min(n, len(p.book) or total)
            ids, out = self.pick(p, n, rng, share)
            self.events.append(Event(ts, p.name, kind, entity, n, ip, {
                "ids": ids, "outside_book": out, "total_accounts": total,
                "format": "csv" if kind == "export" else "pdf"}))
            if kind == "export" and rng.random() < 0.05:  # taken to a customer visit
                self.events.append(Event(ts + 600, p.name, "file.external", entity, n, ip,
                                         {"target": "usb", "outside_book": out}))
        elif kind == "api":
            n = int(rng.integers(20, 120))
            self.events.append(Event(ts, p.name, "api.read", "account", n, ip,
                                     {"outside_book": n}))

    def nightly_sync(self, p: Person, day: int, rng: np.random.Generator) -> None:
        """Integration accounts sync the ERP every night, from their own server."""
        total = self.org.total_accounts
        t = p.at(self.org.base, day, 2 + rng.uniform(0, 0.3))
        for k in range(int(rng.integers(3, 7))):
            n = int(rng.integers(100, 300))
            self.events.append(Event(t + k * 40, p.name, "api.read", "account", n,
                                     p.office_ip, {"outside_book": n, "total_accounts": total}))

    def season_report(self, p: Person, ts: int, ip: str, rng: np.random.Generator) -> None:
        """Quarter-end figures: a report over the whole book, sometimes exported."""
        n = len(p.book)
        self.events.append(Event(ts, p.name, "report.run", "deal", n, ip,
                                 {"report": "quarter", "outside_book": 0}))
        if rng.random() < 0.3:
            # The exported figures cover the team's book, or the open deals company-wide.
            book = p.book if p.role == "manager" else rng.choice(
                p.book, int(len(p.book) * rng.uniform(0.05, 0.2)), replace=False)
            n = len(book)
            ids = [f"a{i}" for i in book]
            self.events.append(Event(ts + 120, p.name, "export", "deal", n, ip, {
                "ids": ids, "outside_book": 0, "total_accounts": self.org.total_accounts,
                "format": "xlsx", "report": "quarter"}))


def simulate(config: SimConfig) -> tuple[list[Event], list[dict[str, Any]]]:
    """Generate the events (time-ordered) and the labels of the injected cases."""
    from dlp.scenarios import plan_cases

    org = Organisation(config)
    activity = Activity(org)
    cases = plan_cases(org) if config.scenarios else []
    events = activity.run()
    labels = [case.play(org, activity, k) for k, case in enumerate(cases)]
    order = sorted(range(len(events)), key=lambda k: (events[k].ts, k))
    events = [events[k] for k in order]
    by_case: dict[int, list[int]] = {}
    for line, event in enumerate(events):
        if event.case >= 0:
            by_case.setdefault(event.case, []).append(line)
    for k, label in enumerate(labels):
        label["events"] = by_case.get(k, [])
        if label["events"] and label["start"] is None:
            label["start"] = iso(events[label["events"][0]].ts)
            label["end"] = iso(events[label["events"][-1]].ts)
    return events, labels


def event_lines(events: list[Event]) -> Iterator[bytes]:
    for e in events:
        yield dumps({"ts": iso(e.ts), "user": e.user, "action": e.action, "entity": e.entity,
                     "count": e.count, "ip": e.ip, "meta": e.meta})


def write(config: SimConfig, events_path: str | Path,
          labels_path: str | Path | None) -> tuple[int, int]:
    """Simulate and write both files; returns (events, labels) written."""
    events, labels = simulate(config)
    with open(events_path, "wb") as out:
        for line in event_lines(events):
            out.write(line)
            out.write(b"\n")
    if labels_path is not None:
        with open(labels_path, "wb") as out:
            for label in labels:
                out.write(dumps(label))
                out.write(b"\n")
    return len(events), len(labels)
