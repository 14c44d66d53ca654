"""Hashing the rows of one table group: the part of ``backup.tabledigest`` that runs
in worker processes, so it imports nothing but the standard library (a worker
starts in a fraction of the time SQLAlchemy would take to import).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

GROUP_SPAN = 1 << 16
FETCH_ROWS = 5_000


@dataclass(frozen=True)
class TablePlan:
    """How one table is read: its SELECT, ORDER BY and whether it is grouped by integer key."""

    name: str
    select: str
    order_by: str
    int_key: str | None


def group_query(plan: TablePlan, group: int | None, style: str) -> tuple[str, tuple[int, ...]]:
    """SQL and parameters reading one group of a table in key order."""
    sql = f"SELECT {plan.select} FROM {plan.name}"  # noqa: S608 - quoted identifiers only
    params: tuple[int, ...] = ()
    if group is not None:
        mark = "?" if style == "qmark" else "%s"
        sql += f" WHERE {plan.int_key} >= {mark} AND {plan.int_key} < {mark}"
        params = (group * GROUP_SPAN, (group + 1) * GROUP_SPAN)
    return sql + f" ORDER BY {plan.order_by}", params


def hash_rows(batches: Iterable[list[tuple[str]]]) -> tuple[int, bytes]:
    """Row count and SHA-256 of JSON rows, each followed by a newline."""
    digest, rows = hashlib.sha256(), 0
    for batch in batches:
        rows += len(batch)
        digest.update(("\n".join([r[0] for r in batch]) + "\n").encode("utf-8", "surrogatepass"))
    return rows, digest.digest()


def fetch_batches(cursor: Any) -> Iterator[list[tuple[str]]]:
    """A DB-API cursor's rows, a batch at a time."""
    while batch := cursor.fetchmany(FETCH_ROWS):
        yield batch


def hash_sqlite_group(path: str, plan: TablePlan, group: int | None) -> tuple[int, bytes]:
    """One group of a SQLite table (runs in a worker process)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hash_rows(fetch_batches(conn.execute(*group_query(plan, group, "qmark"))))
    finally:
        conn.close()
