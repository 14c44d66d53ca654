"""Figures for docs/watermarks.md: what marking costs, how much of a file trace needs.

Run ``.venv/bin/python -m tests.dlp_trace.bench_trace [--accounts N] [--trials K]``.
Builds a throw-away appliance (SQLite, demo keys) with one team's book, has
five people export it (two of them twice), then traces cut-down copies of
each export and hand-made files that carry no marks. Prints tables; asserts
nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import statistics
import tempfile
import time
from pathlib import Path

from appliance import keys
from appliance.kernel.config import write_initial
from appliance.kernel.runtime import Appliance
from appliance.schema import upgrade
from crm.access import Action, Entity, Policy
from crm.exports import _cell
from crm.queries import ListQuery, build
from crm.roles import seed_roles
from dlp import watermark
from dlp.sensors.readers import read_bytes
from dlp.trace import FOUND, trace_report
from tests.dlp_trace.conftest import _accounts, export
from tests.factories import Factory

SHARES = (0.0025, 0.005, 0.01, 0.02, 0.05)
COLUMN_SETS = {"all columns": None, "name, email, phone": ["name", "email", "phone"],
               "name only": ["name"]}


def _csv(header, rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _appliance(root: Path) -> Appliance:
    write_initial(root, {"database_url": "", "argon2": {"time_cost": 1, "memory_cost": 1024,
                                                         "parallelism": 1}})
    keys.init_keys(root, threshold=0, holders=[], demo=True)
    keys.auto_unseal_demo(root)
    appliance = Appliance.open(root)
    upgrade(appliance.engine)
    return appliance


def cost(db, user, rounds: int = 3) -> None:
    """Time to write an export without and with marks (the same rows, in memory)."""
    policy = Policy(db, user)
    records = db.scalars(build(policy, Entity.ACCOUNT, ListQuery(sort="name"),
                               Action.EXPORT)).unique().all()
    fields = policy.visible_fields(Entity.ACCOUNT)
    header = ["id", *fields]
    plain, marked, recorded = [], [], []
    for _ in range(rounds):
        started = time.perf_counter()
        rows = [[str(r.id), *(_cell(s.get(f)) for f in fields)]
                for r, s in ((r, policy.present(Entity.ACCOUNT, r)) for r in records)]
        content = _csv(header, rows)
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        mark = watermark.plan(db, export_id=None, user=user, entity="account", rows=len(rows))
        content = _csv(header, watermark.apply(mark, header, rows))
        marked.append(time.perf_counter() - started)
        started = time.perf_counter()
        watermark.record(db, mark, [r.id for r in records])
        db.flush()
        recorded.append(time.perf_counter() - started)
        db.rollback()
    base, extra, store = (statistics.median(x) for x in (plain, marked, recorded))
    print(f"\nmarking an export of {len(records)} accounts ({len(content) // 1024} KB)")
    print(f"  rows and CSV, no marks (baseline) {base * 1000:8.1f} ms")
    print(f"  plan + apply + CSV                {extra * 1000:8.1f} ms  ({extra / base:.2f}x baseline)")
    print(f"  record (ids, canaries)            {store * 1000:8.1f} ms  ({store / base:.2f}x baseline)")


def confidence(db, exports, trials: int) -> None:
    """How often a cut-down copy names its export (and only it), by share of rows kept."""
    print(f"\ntracing cut-down copies ({trials} per cell; canaries dropped; "
          f"{len(exports)} exports of the same book on file)")
    print(f"  {'columns kept':<20}" + "".join(f"{s:>9.2%}" for s in SHARES) + "   (named right)")
    rng = random.Random(3)
    timings = []
    for label, names in COLUMN_SETS.items():
        line = f"  {label:<20}"
        for share in SHARES:
            right = 0
            for _ in range(trials):
                done = rng.choice(exports)
                rows = rng.sample(done.real_rows(), max(1, round(len(done.rows) * share)))
                header = done.header
                if names:
                    at = [header.index(n) for n in names]
                    header, rows = names, [[r[i] for i in at] for r in rows]
                started = time.perf_counter()
                report = trace_report(db, read_bytes(_csv(header, rows), "leak.csv"))
                timings.append((len(rows), time.perf_counter() - started))
                named = [m.mark_id for m in report.matches]
                right += named[:1] == [str(done.mark.id)] and len(named) == 1
            line += f"{right / trials:>9.0%}"
        print(line)
    small = statistics.median(t for n, t in timings if n <= 10)
    large = statistics.median(t for n, t in timings if n >= 50)
    print(f"  trace time: {small * 1000:.0f} ms for up to 10 rows, {large * 1000:.0f} ms for 50+")


def full_files(db, exports) -> None:
    started = time.perf_counter()
    report = trace_report(db, read_bytes(exports[0].csv(), "full.csv"))
    took = time.perf_counter() - started
    best = report.matches[0]
    print(f"\nthe whole export ({report.rows} rows): {took * 1000:.0f} ms, confidence "
          f"{best.confidence}, {len({c['where'] for c in best.canaries})} canaries, "
          f"marks {best.marks_matched}/{best.marks_tested}")


def no_false_accusations(db, book, trials: int) -> None:
    """Files of real clients typed by hand (no marks): nobody may be named."""
    rng = random.Random(4)
    named, best = 0, []
    for _ in range(trials):
        sample = rng.sample(book, 50)
        rows = [[a.name, a.email, a.phone, a.city] for a in sample]
        report = trace_report(db, read_bytes(_csv(["name", "email", "phone", "city"], rows), "x"))
        named += bool(report.matches)
        best.append(max((c.confidence for c in report.candidates), default=0.0))
    print(f"\nhand-made files of 50 real clients, no marks: {named} of {trials} named anyone; "
          f"highest confidence of any candidate {max(best):.4f} (needed: {FOUND})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        appliance = _appliance(Path(scratch) / "appliance")
        try:
            with appliance.session() as db:
                seed_roles(db)
            with appliance.sessions() as db:
                make = Factory(db)
                people = [make.user(f"manager{i}", roles=("manager",)) for i in range(5)]
                book = _accounts(people[0], args.accounts, random.Random(1), 1)
                db.add_all(book)
                db.commit()
                cost(db, people[0])
                exports = [export(db, p) for p in people] + [export(db, p) for p in people[:2]]
                full_files(db, exports)
                confidence(db, exports, args.trials)
                no_false_accusations(db, book, args.trials)
        finally:
            appliance.dispose()
            keys.seal_now(Path(scratch) / "appliance")


if __name__ == "__main__":
    main()
