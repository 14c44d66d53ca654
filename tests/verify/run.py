"""The long "prove it holds" suite, with one summary table at the end.

    .venv/bin/python -m tests.verify.run                 # load 10 min, 100 crashes, faults
    .venv/bin/python -m tests.verify.run --quick         # load 45 s, 5 crashes, faults
    .venv/bin/python -m tests.verify.run --only load --load-seconds 120

Exits 1 when any part found a problem (each problem is printed after the
table), 0 when everything held. Timings are printed, never judged.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

PARTS = ("load", "crashes", "database", "disk", "clock")


@dataclass
class Row:
    name: str
    result: str
    figures: str
    problems: list[str]
    seconds: float


def _load(args: argparse.Namespace, workdir: Path) -> Row:
    from tests.verify import load

    report = load.run(workdir, seconds=args.load_seconds, users=args.users,
                      accounts=args.accounts, warmup=args.warmup,
                      history_days=args.history_days)
    print(report.table(), flush=True)
    return Row("load", "ok" if report.ok else "FAILED", report.summary(), report.problems, 0)


def _crashes(args: argparse.Namespace, workdir: Path) -> Row:
    from tests.verify import crashes

    report = crashes.run(workdir, iterations=args.crashes, seed=args.seed,
                         restart_sec=args.restart_sec)
    return Row("crashes", "ok" if report.ok else "FAILED", report.summary(), report.problems, 0)


def _fault(name: str) -> Row:
    from tests.verify import faults

    report = faults.FAULTS[name]()
    result = "skipped" if report.skipped else ("ok" if report.ok else "FAILED")
    return Row(report.name, result, report.summary(), report.problems, 0)


def print_table(rows: list[Row]) -> None:
    print("\n" + "=" * 100)
    print(f"{'part':<22} {'result':<8} {'time':>7}  figures")
    print("-" * 100)
    for row in rows:
        lines = textwrap.wrap(row.figures, 60) or [""]
        print(f"{row.name:<22} {row.result:<8} {row.seconds:>6.0f}s  {lines[0]}")
        for more in lines[1:]:
            print(f"{'':<40}{more}")
    print("=" * 100)
    for row in rows:
        for problem in row.problems:
            print(f"PROBLEM in {row.name}: {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke: 45 s of load, 5 crashes, the faults")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts")
    parser.add_argument("--load-seconds", type=float, default=None)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--history-days", type=int, default=28)
    parser.add_argument("--crashes", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--restart-sec", type=float, default=None,
                        help="override the units' RestartSec (default: as the units say)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.load_seconds = args.load_seconds or (45 if quick else 600)
    args.accounts = args.accounts or (5000 if quick else 20_000)
    args.warmup = args.warmup or (20 if quick else 60)
    args.crashes = args.crashes or (5 if quick else 100)
    if quick and args.restart_sec is None:
        args.restart_sec = 0.5
    rows: list[Row] = []
    for part in args.only or PARTS:
        print(f"--- {part}", flush=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"citadel-verify-{part}-") as tmp:
            try:
                if part == "load":
                    row = _load(args, Path(tmp))
                elif part == "crashes":
                    row = _crashes(args, Path(tmp))
                else:
                    row = _fault(part)
            except Exception as exc:  # one part breaking must not hide the others' results
                row = Row(part, "FAILED", "", [f"{exc.__class__.__name__}: {exc}"], 0)
        row.seconds = time.monotonic() - started
        rows.append(row)
    print_table(rows)
    return 1 if any(row.result == "FAILED" for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
