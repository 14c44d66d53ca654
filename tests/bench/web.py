"""What the web benchmarks share: a large appliance, servers under gunicorn, wrk.

Nothing here asserts a speed; the benchmarks print figures and ratios against a
baseline measured in the same run.
"""

from __future__ import annotations

import http.cookiejar
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from appliance import keys
from appliance.demo import stored
from appliance.kernel.config import write_initial
from appliance.kernel.runtime import Appliance
from appliance.schema import upgrade
from appliance.worker import refresh_statistics
from crm.models import Account, fold
from crm.people import add_user, find_or_create_team
from crm.roles import seed_roles
from tests.factories import PASSWORD, _hasher

BIN = Path(sys.executable).parent
WORDS = ("Nord", "Sud", "Alpha", "Beta", "Delta", "Fjord", "Kraft", "Linde", "Meridian", "Nova",
         "Orion", "Polar", "Quartz", "River", "Stern", "Terra", "Union", "Vega", "Wald", "Zenit")
SUFFIXES = ("GmbH", "AG", "Ltd", "SA", "S.r.l.", "AB", "Oy", "Sp. z o.o.", "BV", "Inc")


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_appliance(root: Path, database_url: str, accounts: int, seed: int = 7) -> Appliance:
    """An appliance with ``accounts`` accounts spread over 20 owners in 4 teams."""
    write_initial(root, {"database_url": database_url, "secure_cookies": False,
                         "keys": {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1},
                         "argon2": {"time_cost": 1, "memory_cost": 1024, "parallelism": 1},
                         "login_max_failures": 1000})
    keys.init_keys(root, threshold=0, holders=[], demo=True)
    keys.auto_unseal_demo(root)
    appliance = Appliance.open(root)
    upgrade(appliance.engine)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with appliance.session() as db:
        seed_roles(db)
        parent = find_or_create_team(db, "Sales")
        teams = [find_or_create_team(db, f"Sales {i}", parent) for i in range(4)]
        owners = [add_user(db, _hasher, username=f"seller{i}", full_name=f"Seller {i}",
                           password=PASSWORD, roles=["staff"], team=teams[i % 4].name)
                  for i in range(20)]
        add_user(db, _hasher, username="director", full_name="Director", password=PASSWORD,
                 roles=["director"], team="Sales")
        add_user(db, _hasher, username="manager", full_name="Manager", password=PASSWORD,
                 roles=["manager"], team="Sales")
        batch = []
        for n in range(accounts):
            owner = owners[n % len(owners)]
            name = f"{rng.choice(WORDS)} {rng.choice(WORDS)}{n} {rng.choice(SUFFIXES)}"
            batch.append(stored(Account, {
                "id": uuid.UUID(int=rng.getrandbits(128), version=4), "name": name,
                "name_folded": fold(name), "status": "customer", "industry": "Retail",
                "tax_id": f"DE{n:09d}", "phone": f"+49 30 {n:07d}",
                "email": f"info{n}@client.example", "website": "", "address": "",
                "city": rng.choice(("Berlin", "Oslo", "Lyon", "Turin")), "country": "DE",
                "notes": "", "owner_id": owner.id, "team_id": owner.team_id,
                "created_at": now, "updated_at": now}))
            if len(batch) == 5000:
                db.execute(insert(Account.__table__), batch)
                batch = []
        if batch:
            db.execute(insert(Account.__table__), batch)
    refresh_statistics(appliance)
    return appliance


@contextmanager
def serve(command: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a server command with ``{port}`` filled in; yield its base URL once it answers."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([part.format(port=port) for part in command],
                                stdout=subprocess.DEVNULL, stderr=log,
                                env=dict(os.environ, **(env or {})))
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=2)  # noqa: S310
                    break
                except OSError:
                    if proc.poll() is not None:
                        break
                    time.sleep(0.1)
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(log.read().decode()[-3000:])
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def session_cookie(base: str, username: str) -> str:
    """Sign in like a browser and return the Cookie header value."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login").read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"username": username, "password": PASSWORD,
                                   "csrf_token": token}).encode()
    opener.open(f"{base}/login", body)
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def wrk(name: str, url: str, *, cookie: str = "", seconds: int = 10, connections: int = 8,
        threads: int = 2) -> Result:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    cmd = ["wrk", "--latency", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", url]
    if cookie:
        cmd[1:1] = ["-H", f"Cookie: {cookie}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    return Result(name, rps, _latency(out, "50%"), _latency(out, "99%"), errors)


def _latency(out: str, pct: str) -> float:
    value, unit = re.search(rf"{re.escape(pct)}\s+([\d.]+)(us|ms|s)", out).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def print_table(rows: list[Result], baseline: dict[str, str]) -> None:
    """Rows and, for each row with a baseline, its throughput as a share of the baseline's."""
    by_name = {r.name: r for r in rows}
    print(f"{'case':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'vs baseline':>12}")
    for r in rows:
        base = by_name.get(baseline.get(r.name, ""))
        ratio = f"{r.rps / base.rps:>11.0%}" if base else ""
        print(f"{r.name:<34} {r.rps:>9.1f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} {r.errors:>8} {ratio:>12}")
