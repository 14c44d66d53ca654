"""Appliances for the suite: a small one for crashes and faults, a demo-sized
company with a crowd of staff for the load test.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update

from appliance.kernel.runtime import Appliance
from tests.bench.web import build_appliance
from tests.verify.stack import configure

#: Intervals for the worker under test: the same jobs, on a faster clock.
WORKER = {"checkpoint_seconds": 5, "scoring_seconds": 5, "housekeeping_seconds": 60}


def backup_settings(target: Path, scratch_url: str) -> dict[str, object]:
    return {"backup": {"target": "local", "scratch_url": scratch_url,
                       "files": ["citadel.toml", "secret_key", "keys/keyring.json"],
                       "keep": {"daily": 100, "weekly": 0, "monthly": 0},
                       "targets": {"local": {"type": "local", "path": str(target)}}}}


def small_appliance(root: Path, database_url: str, *, accounts: int = 2000,
                    scratch_url: str | None = None) -> Path:
    """20 sellers with ``accounts`` accounts, a director and a manager; unsealed (demo key)."""
    build_appliance(root, database_url, accounts).dispose()
    configure(root, {"worker": WORKER, **backup_settings(root.parent / "backups",
                                                          scratch_url or database_url)})
    return root


@dataclass
class Crowd:
    """The staff who make up the load: user names and how many accounts each owns."""

    usernames: list[str]
    book_size: int


def demo_company(root: Path, database_url: str, *, accounts: int, staff: int,
                 scratch_url: str, seed: int = 42) -> Crowd:
    """``appliance init --demo`` with ``accounts`` accounts, plus ``staff`` more sales staff.

    The demo's books are split so that each added person owns an equal share of
    the accounts (with their deals and activities): realistic books of a few
    hundred clients each, beside the demo's own sellers.
    """
    subprocess.run([str(Path(sys.executable).parent / "appliance"), "init", "--data-dir",
                    str(root), "--database-url", database_url, "--demo", "--seed", str(seed),
                    "--accounts", str(accounts)], check=True, capture_output=True, text=True)
    configure(root, {"worker": WORKER, "login_max_failures": 50,
                     **backup_settings(root.parent / "backups", scratch_url)})
    appliance = Appliance.open(root)
    try:
        return _add_crowd(appliance, staff)
    finally:
        appliance.dispose()


def _add_crowd(appliance: Appliance, staff: int) -> Crowd:
    from appliance import auth
    from appliance.demo import DEMO_PASSWORD, SALES_TEAMS
    from crm.identity import User
    from crm.models import Account, Activity, Deal
    from crm.people import add_user

    hasher = auth.password_hasher(appliance.settings)
    names = [f"staff{i:02d}" for i in range(1, staff + 1)]
    with appliance.session() as db:
        people = [add_user(db, hasher, username=name, full_name=f"Staff {name[5:]}",
                           password=DEMO_PASSWORD, roles=["staff"],
                           team=SALES_TEAMS[i % len(SALES_TEAMS)],
                           email=f"{name}@citadel.example") for i, name in enumerate(names)]
        db.flush()
        sellers = db.scalar(select(func.count(func.distinct(Account.owner_id)))) or 1
        total = db.scalar(select(func.count()).select_from(Account)) or 0
        book = total // (sellers + staff)
        ids = db.scalars(select(Account.id).order_by(Account.id).limit(book * staff)).all()
        for k, person in enumerate(people):
            mine = ids[k * book:(k + 1) * book]
            for model in (Account, Deal, Activity):
                column = model.id if model is Account else model.account_id
                db.execute(update(model).where(column.in_(mine)).values(
                    owner_id=person.id, team_id=person.team_id))
        assert all(isinstance(p, User) for p in people)
    return Crowd(names, book)
