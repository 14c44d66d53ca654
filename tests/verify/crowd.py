"""A crowd of sales staff doing a day's work, with Locust as a library.

    .venv/bin/python -m tests.verify.crowd --base URL --books BOOKS.json --users 50
        --seconds 600 --out STATS.json

Run in a process of its own: Locust patches the standard library for gevent
when it is imported. Each simulated person signs in through the login form,
then works their own book: searches and opens accounts, edits a field, logs
calls, opens the pipeline board and the reports, now and then exports a
search (within the caps). ``BOOKS.json`` maps each user name to their accounts
(id and name); the password is the demo's. Writes per page type: requests,
failures (HTTP 5xx or a broken connection), p50/p99 in ms, and requests/s.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import gevent
from locust import HttpUser, between, events, task
from locust.env import Environment

CSRF = re.compile(r'name="csrf[-_]token" (?:value|content)="([^"]+)"')
CONFIG: dict[str, Any] = {}
errors: Counter[str] = Counter()


@events.request.add_listener
def _count_errors(name: str, response: Any, exception: Exception | None, **_kw: Any) -> None:
    """A broken connection or a 5xx is an error; a 4xx the crowd expects is not."""
    if exception is not None and (response is None or not response.status_code):
        errors[f"{name}: connection"] += 1
    elif response is not None and response.status_code >= 500:
        errors[f"{name}: HTTP {response.status_code}"] += 1


class Staff(HttpUser):
    """One member of sales staff working their own book."""

    wait_time = between(2, 6)

    def on_start(self) -> None:
        self.username = CONFIG["queue"].pop()
        self.book: list[dict[str, str]] = CONFIG["books"][self.username]
        self.rng = random.Random(self.username)
        self.csrf = ""
        self.sign_in()

    def sign_in(self) -> None:
        page = self.client.get("/login", name="sign in")
        found = CSRF.search(page.text)
        answer = self.client.post("/login", name="sign in", data={
            "username": self.username, "password": CONFIG["password"],
            "csrf_token": found.group(1) if found else ""})
        self._remember_csrf(answer.text)

    def _remember_csrf(self, html: str) -> None:
        found = CSRF.search(html)
        if found:
            self.csrf = found.group(1)

    def _page(self, path: str, name: str) -> Any:
        response = self.client.get(path, name=name)
        if "/login" in response.url:  # the session ended: sign in again, as a person would
            self.sign_in()
            response = self.client.get(path, name=name)
        self._remember_csrf(response.text)
        return response

    def _account(self) -> dict[str, str]:
        return self.rng.choice(self.book)

    def _term(self) -> str:
        words = [w for w in re.split(r"[\s,.&-]+", self._account()["name"]) if len(w) >= 4]
        return (self.rng.choice(words) if words else self._account()["name"])[:6]

    @task(6)
    def search_accounts(self) -> None:
        self._page(f"/accounts?q={self._term()}", "account search")

    @task(10)
    def open_account(self) -> None:
        self._page(f"/accounts/{self._account()['id']}", "account page")

    @task(3)
    def edit_account(self) -> None:
        account = self._account()
        self._page(f"/accounts/{account['id']}/edit", "account edit form")
        self.client.post(f"/accounts/{account['id']}/edit", name="account save", data={
            "csrf_token": self.csrf, "city": self.rng.choice(
                ("Berlin", "Hamburg", "Munich", "Lyon", "Turin", "Oslo", "Leeds"))})

    @task(3)
    def log_activity(self) -> None:
        account = self._account()
        self._page(f"/activities/new?account_id={account['id']}&kind=call", "activity form")
        self.client.post(f"/activities/new?account_id={account['id']}", name="activity save",
                         data={"csrf_token": self.csrf, "kind": "call",
                               "subject": self.rng.choice(("Follow-up call", "Check-in",
                                                           "Pricing questions"))})

    @task(2)
    def pipeline(self) -> None:
        self._page("/deals/board", "pipeline board")

    @task(1)
    def reports(self) -> None:
        self._page("/reports", "reports")
        self._page(f"/reports/{self.rng.choice(('funnel', 'revenue', 'overdue'))}", "report")

    @task(2)
    def home(self) -> None:
        self._page("/", "home")

    @task(1)
    def export(self) -> None:
        if self.rng.random() < CONFIG["export_share"]:
            self.client.post("/accounts/export", name="export", data={
                "csrf_token": self.csrf, "q": self._term()})


def run(base: str, books: dict[str, list[dict[str, str]]], password: str, users: int,
        seconds: float, export_share: float) -> dict[str, Any]:
    """Run the crowd; per page type and in total: requests, errors, p50, p99, rps."""
    CONFIG.update(queue=list(books)[:users], books=books, password=password,
                  export_share=export_share)
    env = Environment(user_classes=[Staff], events=events, host=base)
    runner = env.create_local_runner()
    runner.start(user_count=users, spawn_rate=max(1, users // 10))
    gevent.spawn_later(seconds, runner.quit)
    runner.greenlet.join()
    pages = {}
    for (name, _method), entry in sorted(env.stats.entries.items()):
        pages[name] = {"requests": entry.num_requests, "failures": entry.num_failures,
                       "p50_ms": entry.get_response_time_percentile(0.5),
                       "p99_ms": entry.get_response_time_percentile(0.99),
                       "rps": round(entry.num_requests / max(seconds, 1e-9), 2)}
    total = env.stats.total
    return {"pages": pages, "errors": dict(errors), "users": users, "seconds": seconds,
            "total": {"requests": total.num_requests, "failures": total.num_failures,
                      "p50_ms": total.get_response_time_percentile(0.5),
                      "p99_ms": total.get_response_time_percentile(0.99),
                      "rps": round(total.num_requests / max(seconds, 1e-9), 2)},
            "failures": [{"name": f.name, "error": str(f.error), "count": f.occurrences}
                         for f in env.stats.errors.values()][:20]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--books", type=Path, required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--export-share", type=float, default=0.3,
                        help="share of export turns that really export")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    books = json.loads(args.books.read_text())
    result = run(args.base, books, args.password, args.users, args.seconds, args.export_share)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
