"""Writes and exports through the JSON API while things break, noted in a ledger.

Each writer is one member of staff with a bearer token: it creates accounts,
changes an account's city and logs activities on its own accounts; an exporter
(a director) exports filtered account lists. What the server acknowledged goes
into the ``Ledger``; what failed is counted by how it failed (the status, or
``conn`` when the connection broke), never retried behind the ledger's back.
"""

from __future__ import annotations

import hashlib
import random
import threading
import uuid
from collections import Counter

import requests

from tests.verify.ledger import Ledger

TIMEOUT = 15


class Traffic:
    """Writer and exporter threads against ``base`` until ``stop``."""

    def __init__(self, base: str, writers: dict[str, str], exporter: str | None,
                 ledger: Ledger, *, seed: int = 0, pause: float = 0.05) -> None:
        self.base = base
        self.writers = writers  # username -> token
        self.exporter = exporter  # a token
        self.ledger = ledger
        self.seed = seed
        self.pause = pause
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.statuses: Counter[str] = Counter()

    def start(self) -> Traffic:
        for k, token in enumerate(self.writers.values()):
            self.threads.append(threading.Thread(target=self._write_loop, args=(token, k),
                                                 daemon=True, name=f"writer {k}"))
        if self.exporter:
            self.threads.append(threading.Thread(target=self._export_loop, daemon=True,
                                                 name="exporter"))
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=TIMEOUT + 5)

    # -- one request -------------------------------------------------------------
    def _call(self, http: requests.Session, kind: str, method: str, path: str,
              **kwargs: object) -> requests.Response | None:
        try:
            response = http.request(method, self.base + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException:
            self.ledger.outcome(kind, "conn")
            self.statuses["conn"] += 1
            return None
        self.statuses[str(response.status_code)] += 1
        if response.status_code >= 300:
            self.ledger.outcome(kind, str(response.status_code))
            return None
        self.ledger.outcome(kind, "ok")
        return response

    def _session(self, token: str) -> requests.Session:
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {token}"
        return http

    # -- writers -----------------------------------------------------------------
    def _write_loop(self, token: str, k: int) -> None:
        rng = random.Random(self.seed * 1000 + k)
        http = self._session(token)
        mine: list[str] = []
        serial = 0
        while not self.stopping.is_set():
            serial += 1
            roll = rng.random()
            if roll < 0.3 or not mine:
                created = self._call(http, "create account", "POST", "/api/v1/accounts", json={
                    "name": f"Crash test {k}-{serial} {uuid.uuid4().hex[:8]}",
                    "status": "prospect", "city": "Start", "country": "DE"})
                if created is not None:
                    record_id = created.json()["id"]
                    self.ledger.created("accounts", record_id)
                    mine.append(record_id)
            elif roll < 0.75:
                record_id = rng.choice(mine)
                value = f"City {k}-{serial}"
                attempt = self.ledger.attempt_update(record_id, value)
                if self._call(http, "update account", "PATCH", f"/api/v1/accounts/{record_id}",
                              json={"city": value}) is not None:
                    attempt.acked = True
            else:
                created = self._call(http, "create activity", "POST", "/api/v1/activities", json={
                    "account_id": rng.choice(mine), "kind": "call",
                    "subject": f"Call {k}-{serial}"})
                if created is not None:
                    self.ledger.created("activities", created.json()["id"])
            self.stopping.wait(self.pause)

    # -- exporter ----------------------------------------------------------------
    def _export_loop(self) -> None:
        rng = random.Random(self.seed)
        http = self._session(self.exporter or "")
        terms = ("Nord", "Sud", "Alpha", "Fjord", "Kraft", "Nova", "Polar", "Terra", "Vega")
        while not self.stopping.is_set():
            response = self._call(http, "export", "POST", "/api/v1/exports", json={
                "resource": "accounts", "q": rng.choice(terms)})
            if response is not None:
                content = response.content
                self.ledger.exported(response.headers["X-Export-Id"],
                                     hashlib.sha256(content).hexdigest(),
                                     int(response.headers["X-Export-Rows"]))
            self.stopping.wait(self.pause * 4)


def sign_in(base: str, username: str, password: str) -> requests.Session:
    """A browser-like session signed in through the login form (CSRF token included)."""
    import re

    browser = requests.Session()
    page = browser.get(f"{base}/login", timeout=TIMEOUT)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    if token is None:
        raise RuntimeError(f"no sign-in form at {base}/login ({page.status_code})")
    answer = browser.post(f"{base}/login", timeout=TIMEOUT, data={
        "username": username, "password": password, "csrf_token": token.group(1)})
    if answer.status_code != 200 or "/login" in answer.url:
        raise RuntimeError(f"{username} could not sign in ({answer.status_code})")
    return browser
