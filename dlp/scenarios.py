"""Labelled cases the simulator injects into an organisation's ordinary activity.

Insiders taking the client base (each must raise an alert):

- ``bulk-export``: one evening, large exports of accounts, usually days after
  the person handed in their notice;
- ``slow-drip``: small exports every working day for weeks;
- ``print-lists``: client lists printed over a day or two;
- ``copy-cards``: contact cards opened and copied one by one;
- ``api-scrape``: a salesperson's credentials pulling the API for hours;
- ``offhours-sweep``: hundreds of records read in the middle of the night;
- ``shared-password``: someone else uses the same login from another place
  while the person is working.

Benign look-alikes (each must NOT raise an alert):

- ``quarterly-report``: a manager's quarter-end report over the team's book,
  exported;
- ``new-hire-reading``: a new hire reading across the client base for weeks;
- ``reassignment``: a book of accounts reassigned to a salesperson, who reads
  and exports the new book;
- ``notice-normal``: a person who handed in their notice and simply works on.

Cases start in the second half of the period, so a model trained on the first
half has a clean baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlp.events import iso
from dlp.simulate import Activity, Event, Organisation, Person

INSIDER = ("bulk-export", "slow-drip", "print-lists", "copy-cards", "api-scrape",
           "offhours-sweep", "shared-password")
BENIGN = ("quarterly-report", "new-hire-reading", "reassignment", "notice-normal")


@dataclass
class Case:
    """One injected case: who, what, from which day, and what the detector should do."""

    kind: str
    person: Person
    day: int
    rng: np.random.Generator
    other: Person | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def must_alert(self) -> bool:
        return self.kind in INSIDER

    def play(self, org: Organisation, activity: Activity, case_id: int) -> dict[str, Any]:
        """Add this case's events to ``activity``; return its label."""
        play = PLAYS[self.kind]
        emitter = _Emitter(org, activity, self.person, case_id, self.rng)
        play(self, emitter)
        return {"user": self.person.name, "scenario": self.kind,
                "expect": "alert" if self.must_alert else "no-alert",
                "start": None, "end": None, "events": [], **self.notes}


class _Emitter:
    """Writes one case's events, tagged with the case."""

    def __init__(self, org: Organisation, activity: Activity, person: Person, case_id: int,
                 rng: np.random.Generator) -> None:
        self.org, self.activity, self.p, self.case, self.rng = org, activity, person, case_id, rng

    def at(self, day: int, hour: float) -> int:
        return self.p.at(self.org.base, day, hour)

    def emit(self, ts: int, action: str, entity: str | None, count: int, ip: str | None,
             meta: dict[str, Any] | None = None, user: str | None = None,
             tagged: bool = True) -> None:
        self.activity.events.append(Event(int(ts), user or self.p.name, action, entity, count,
                                          ip, meta or {}, self.case if tagged else -1))

    def records(self, n: int, outside_share: float) -> tuple[list[str], int]:
        return self.activity.pick(self.p, n, self.rng, outside_share)

    def bulk(self, ts: int, action: str, n: int, ip: str, outside_share: float,
             **meta: Any) -> None:
        ids, out = self.records(n, outside_share)
        self.emit(ts, action, "account", n, ip, {
            "ids": ids, "outside_book": out, "total_accounts": self.org.total_accounts, **meta})

    def workdays(self, first: int, n: int) -> list[int]:
        """The next ``n`` days from ``first`` that are weekdays within the period."""
        out, day = [], first
        while len(out) < n and day < self.org.config.days:
            if self.org.weekday(day) < 5:
                out.append(day)
            day += 1
        return out


def _notice(case: Case, e: _Emitter, day: int) -> None:
    """HR records the notice (no address: it comes from the HR system)."""
    ts = e.at(day, 10.5)
    e.emit(ts, "user.notice", None, 0, None, {"by": "hr"}, tagged=False)
    case.notes["notice_at"] = iso(ts)


def bulk_export(case: Case, e: _Emitter) -> None:
    rng, p = e.rng, e.p
    if rng.random() < 0.7:
        _notice(case, e, case.day - int(rng.integers(1, 10)))
    hour = float(rng.choice([p.start_hour + p.length - 1, 19.5, 21.0]))
    ts = e.at(case.day, hour)
    ip = p.home_ip if hour > 19 else p.office_ip
    e.emit(ts - 120, "login", None, 0, ip, {"role": p.role, "team": p.team})
    for k in range(int(rng.integers(1, 4))):
        n = int(rng.integers(300, 2500))
        e.bulk(ts + k * 300, "export", n, ip, float(rng.uniform(0.3, 0.9)), format="csv")
    if rng.random() < 0.4:
        e.emit(ts + 1500, "file.external", "account", n, ip, {"target": "usb"})


def slow_drip(case: Case, e: _Emitter) -> None:
    rng, p = e.rng, e.p
    for day in e.workdays(case.day, int(rng.integers(10, 25))):
        for _ in range(int(rng.integers(1, 3))):
            hour = p.start_hour + float(rng.uniform(0.5, p.length - 0.5))
            e.bulk(e.at(day, hour), "export", int(rng.integers(15, 45)), p.office_ip,
                   float(rng.uniform(0.3, 0.8)), format="csv")


def print_lists(case: Case, e: _Emitter) -> None:
    rng, p = e.rng, e.p
    for day in e.workdays(case.day, int(rng.integers(1, 3))):
        for _ in range(int(rng.integers(2, 6))):
            hour = p.start_hour + float(rng.uniform(1, p.length - 1))
            e.bulk(e.at(day, hour), "print", int(rng.integers(40, 200)), p.office_ip,
                   float(rng.uniform(0.2, 0.8)), format="pdf")


def copy_cards(case: Case, e: _Emitter) -> None:
    rng, p = e.rng, e.p
    for day in e.workdays(case.day, int(rng.integers(1, 3))):
        ts = e.at(day, p.start_hour + float(rng.uniform(1, 4)))
        for _ in range(int(rng.integers(40, 150))):
            ids, out = e.records(1, 0.6)
            e.emit(ts, "record.view", "contact", 1, p.office_ip,
                   {"ids": ids, "outside_book": out})
            e.emit(ts + int(rng.integers(3, 15)), "copy", "contact", 1, p.office_ip,
                   {"ids": ids, "outside_book": out})
            ts += int(rng.integers(20, 120))


def api_scrape(case: Case, e: _Emitter) -> None:
    rng, p = e.rng, e.p
    night = rng.random() < 0.5
    hour = float(rng.uniform(22, 26)) if night else p.start_hour + float(rng.uniform(1, 5))
    ts = e.at(case.day, hour)
    ip = p.home_ip if night else p.office_ip
    for _ in range(int(rng.integers(30, 200))):
        e.bulk(ts, "api.read", int(rng.integers(50, 300)), ip, 0.7)
        ts += int(rng.integers(5, 60))


def offhours_sweep(case: Case, e: _Emitter) -> None:
    rng, p = e.rng, e.p
    ts = e.at(case.day, float(rng.uniform(22.5, 27.5)))
    e.emit(ts - 60, "login", None, 0, p.home_ip, {"role": p.role, "team": p.team})
    for _ in range(int(rng.integers(150, 800))):
        ids, out = e.records(1, 0.7)
        e.emit(ts, "record.view", "account", 1, p.home_ip, {"ids": ids, "outside_book": out})
        ts += int(rng.integers(2, 20))
    e.emit(ts + 30, "logout", None, 0, p.home_ip)


def shared_password(case: Case, e: _Emitter) -> None:
    rng, p = e.rng, e.p
    ip = f"{rng.integers(150, 200)}.{rng.integers(0, 255)}.{rng.integers(0, 255)}.9"
    for day in e.workdays(case.day, int(rng.integers(2, 5))):
        ts = e.at(day, p.start_hour + float(rng.uniform(1, 3)))
        e.emit(ts, "login", None, 0, ip, {"role": p.role, "team": p.team})
        for _ in range(int(rng.integers(15, 50))):
            ts += int(rng.integers(60, 400))
            ids, out = e.records(1, 0.5)
            action = "record.view" if rng.random() < 0.8 else "record.search"
            e.emit(ts, action, "account", 1, ip, {"ids": ids, "outside_book": out})
        e.emit(ts + 60, "logout", None, 0, ip)


def quarterly_report(case: Case, e: _Emitter) -> None:
    p, rng = e.p, e.rng
    ts = e.at(case.day, p.start_hour + float(rng.uniform(1, 5)))
    ids = [f"a{i}" for i in p.book]
    e.emit(ts, "report.run", "deal", len(ids), p.office_ip,
           {"report": "quarter", "outside_book": 0})
    e.emit(ts + 300, "export", "deal", len(ids), p.office_ip, {
        "ids": ids, "outside_book": 0, "total_accounts": e.org.total_accounts,
        "format": "xlsx", "report": "quarter"})


def new_hire_reading(case: Case, e: _Emitter) -> None:
    p, rng = e.p, e.rng
    for day in e.workdays(case.day, int(rng.integers(8, 15))):
        if not p.works(day, e.org.weekday(day)):
            continue
        for _ in range(int(rng.integers(60, 200))):
            hour = p.start_hour + float(rng.uniform(0.3, p.length - 0.3))
            ids, out = e.records(1, 0.8)
            e.emit(e.at(day, hour), "record.view", "account", 1, p.office_ip,
                   {"ids": ids, "outside_book": out})
        for _ in range(int(rng.integers(10, 40))):
            hour = p.start_hour + float(rng.uniform(0.3, p.length - 0.3))
            e.emit(e.at(day, hour), "record.search", "account", int(rng.integers(1, 30)),
                   p.office_ip, {})


def reassignment(case: Case, e: _Emitter) -> None:
    p, rng, other = e.p, e.rng, case.other
    assert other is not None  # noqa: S101 - planned with a manager
    gained = np.array(rng.integers(0, e.org.total_accounts, int(rng.integers(80, 400))))
    p.book = np.union1d(p.book, gained)
    ts = e.at(case.day, p.start_hour + 0.5)
    e.emit(ts, "record.reassign", "account", len(gained), other.office_ip,
           {"to": p.name, "from": "a leaver", "ids": [f"a{i}" for i in gained]},
           user=other.name)
    days = e.workdays(case.day, 4)
    for day in days:
        for i in rng.choice(gained, min(len(gained), int(rng.integers(30, 90))), replace=False):
            hour = p.start_hour + float(rng.uniform(0.3, p.length - 0.3))
            e.emit(e.at(day, hour), "record.view", "account", 1, p.office_ip,
                   {"ids": [f"a{i}"], "outside_book": 0})
    hour = p.start_hour + float(rng.uniform(1, p.length - 1))
    e.emit(e.at(days[1] if len(days) > 1 else case.day, hour), "export", "account",
           len(gained), p.office_ip, {"ids": [f"a{i}" for i in gained], "outside_book": 0,
                                      "total_accounts": e.org.total_accounts,
                                      "format": "xlsx"})


def notice_normal(case: Case, e: _Emitter) -> None:
    """The notice, and the person's ordinary days until they leave."""
    _notice(case, e, case.day)
    left = e.p.left if e.p.left is not None else e.org.config.days
    case.notes["start"] = case.notes["notice_at"]
    case.notes["end"] = iso(e.at(left, 0))


PLAYS: dict[str, Callable[[Case, _Emitter], None]] = {
    "bulk-export": bulk_export, "slow-drip": slow_drip, "print-lists": print_lists,
    "copy-cards": copy_cards, "api-scrape": api_scrape, "offhours-sweep": offhours_sweep,
    "shared-password": shared_password, "quarterly-report": quarterly_report,
    "new-hire-reading": new_hire_reading, "reassignment": reassignment,
    "notice-normal": notice_normal,
}


def plan_cases(org: Organisation) -> list[Case]:
    """Choose who does what and when; adjusts those people's calendars to fit."""
    cfg = org.config
    rng = np.random.default_rng([cfg.seed, 7])
    n = max(len(INSIDER) + len(BENIGN), round(cfg.users * cfg.cases_per_100_users / 100))
    kinds = list(INSIDER) + list(BENIGN)
    kinds += list(rng.choice(kinds, n - len(kinds)))
    free = [p for p in org.people if p.hired == 0]
    rng.shuffle(free)  # type: ignore[arg-type]
    first, last = cfg.days // 2, max(cfg.days // 2 + 1, cfg.days - 12)
    cases: list[Case] = []
    for kind in kinds:
        case = _plan_one(org, kind, free, rng, first, last)
        if case is not None:
            cases.append(case)
    return cases


def _plan_one(org: Organisation, kind: str, free: list[Person], rng: np.random.Generator,
              first: int, last: int) -> Case | None:
    wanted = {"quarterly-report": ("manager",), "reassignment": ("sales",),
              "new-hire-reading": ("sales", "support")}.get(kind, ("sales", "support",
                                                                   "manager"))
    if kind not in ("quarterly-report",):
        wanted = tuple(r for r in wanted if r != "manager") or wanted
    person = next((p for p in free if p.role in wanted), None)
    if person is None:
        return None
    free.remove(person)
    day = _weekday(org, int(rng.integers(first, last)))
    case = Case(kind, person, day, np.random.default_rng([org.config.seed, 11, person.index]))
    person.vacation = {d for d in person.vacation if not day - 3 <= d <= day + 40}
    if kind == "quarterly-report":
        season = _season_day(org, first, rng)
        if season is None:
            free.append(person)
            return None
        case.day = _weekday(org, season)
    elif kind == "new-hire-reading":
        person.hired = case.day
    elif kind == "reassignment":
        case.other = next((p for p in org.people if p.role == "manager"
                           and p.team == person.team), org.people[0])
    elif kind in ("bulk-export", "notice-normal"):
        person.left = min(org.config.days, case.day + int(rng.integers(3, 12)))
    return case


def _weekday(org: Organisation, day: int) -> int:
    while org.weekday(day) >= 5 and day > 0:
        day -= 1
    return day


def _season_day(org: Organisation, first: int, rng: np.random.Generator) -> int | None:
    """A quarter-end day after ``first`` if there is one, else a month's last days."""
    days = range(first, org.config.days - 1)
    season = [d for d in days if org.quarter_end(d) and org.weekday(d) < 5]
    if not season:
        season = [d for d in days if org.month_end(d) and org.weekday(d) < 5]
    return int(rng.choice(season)) if season else None


@dataclass
class CaseResult:
    """How one labelled case fared against a set of alerts."""

    scenario: str
    user: str
    must_alert: bool
    alerted: bool
    delay: float | None  # seconds from the case's first event to its first alert


def evaluate(alerts: list[dict[str, Any]], labels: list[dict[str, Any]], since: int,
             grace_hours: float = 48.0) -> tuple[list[CaseResult], int]:
    """Match alerts to labelled cases; returns the cases' results and the false alerts.

    An alert belongs to a case when it names the case's person and either
    falls between the case's start and ``grace_hours`` after its end or lists
    one of the case's events as evidence. Alerts that
    belong to no insider case are false (those on benign look-alikes included).
    Cases that started before ``since`` (the training cut-off) are skipped.
    """
    from dlp.events import parse_time

    by_user: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for alert in alerts:
        by_user.setdefault(alert["user"], []).append((parse_time(alert["ts"]), alert))
    results, matched = [], set()
    for label in labels:
        if not label.get("start"):
            continue
        start, end = parse_time(label["start"]), parse_time(label["end"])
        if start < since:
            continue
        mine = set(label.get("events", ()))
        hits = [(max(ts, start), id(a)) for ts, a in by_user.get(label["user"], [])
                if start <= ts <= end + grace_hours * 3600 or mine.intersection(a["events"])]
        must = label["expect"] == "alert"
        if must:
            matched.update(key for _ts, key in hits)
        first = min((ts for ts, _key in hits), default=None)
        results.append(CaseResult(label["scenario"], label["user"], must, bool(hits),
                                  None if first is None else float(first - start)))
    false = sum(1 for a in alerts if id(a) not in matched)
    return results, false
