"""The web layers' cost, with 100,000 accounts, each measured in the same run against a
baseline: the account list (50 rows, a search term) and the account page against a bare
Flask + SQLAlchemy route running the same queries; a manager's list with rights applied
against the same list with the policy switched off; the list showing encrypted fields
against the same list reading them without decryption.

    .venv/bin/python -m tests.bench.bench_web [--accounts 100000] [--seconds 10]
        [--database-url postgresql://postgres@127.0.0.1/citadel_bench]

Prints requests/s, p50, p99 and each case's share of its baseline's throughput.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sqlalchemy import select, text

from appliance.kernel.db import make_engine
from crm.models import Account
from tests.bench.web import BIN, build_appliance, print_table, serve, session_cookie, wrk


def prepare_database(url: str | None, root: Path) -> str:
    """A fresh database: SQLite in ``root`` or a new PostgreSQL database named in ``url``."""
    if not url:
        return f"sqlite:///{root / 'bench.db'}"
    name = url.rsplit("/", 1)[1]
    admin = make_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--term", default="fjord", help="search term for the list")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = prepare_database(args.database_url, root)
        print(f"Building an appliance with {args.accounts:,} accounts on "
              f"{url.split(':')[0]}...", flush=True)
        appliance = build_appliance(root / "appliance", url, args.accounts)
        with appliance.session() as db:
            some = db.scalars(select(Account.id).order_by(Account.name_folded).limit(1)).one()
        appliance.dispose()
        app_cmd = [str(BIN / "appliance"), "--data-dir", str(root / "appliance"), "serve",
                   "--bind", "127.0.0.1:{port}", "--workers", str(args.workers)]
        bare_cmd = [str(BIN / "gunicorn"), "-b", "127.0.0.1:{port}", "-w", str(args.workers),
                    "tests.bench.bare_app:app"]
        results = []
        list_path, page_path = f"/accounts?q={args.term}", f"/accounts/{some}"
        plain_list = "/accounts?sort=name"
        with serve(bare_cmd, {"BARE_DATABASE_URL": url, "CITADEL_DATA_DIR": str(root / "appliance")}) as bare:
            results.append(wrk("bare: account list", bare + list_path, seconds=args.seconds))
            results.append(wrk("bare: account page", bare + page_path, seconds=args.seconds))
        with serve(app_cmd) as app:
            cookie = session_cookie(app, "director")
            results.append(wrk("citadel: account list", app + list_path, cookie=cookie,
                               seconds=args.seconds))
            results.append(wrk("citadel: account page", app + page_path, cookie=cookie,
                               seconds=args.seconds))
            results.append(wrk("citadel: list, 2 encrypted fields", app + plain_list, cookie=cookie,
                               seconds=args.seconds))
            cookie = session_cookie(app, "manager")
            results.append(wrk("citadel: manager's list (rights)", app + plain_list, cookie=cookie,
                               seconds=args.seconds))
        variant_env = {"CITADEL_DATA_DIR": str(root / "appliance")}
        for name, factory, user in (("policy off: manager's list", "policy_off", "manager"),
                                    ("plaintext: list", "plaintext", "director")):
            cmd = [str(BIN / "gunicorn"), "-b", "127.0.0.1:{port}", "-w", str(args.workers),
                   f"tests.bench.variants:{factory}()"]
            with serve(cmd, variant_env) as variant:
                cookie = session_cookie(variant, user)
                results.append(wrk(name, variant + plain_list, cookie=cookie, seconds=args.seconds))
        print()
        print_table(results, {"citadel: account list": "bare: account list",
                              "citadel: account page": "bare: account page",
                              "citadel: manager's list (rights)": "policy off: manager's list",
                              "citadel: list, 2 encrypted fields": "plaintext: list"})
        sys.stdout.flush()


if __name__ == "__main__":
    main()
