"""Per-table row counts and content digests, the same way on SQLite and PostgreSQL.

A table's digest depends only on its rows, not on how the database stores
them (pages, dump format, physical order):

* each row is encoded by the database as a JSON array of its columns in
  declared order (``json_array`` on SQLite, with blobs as ``"x:<HEX>"``;
  ``json_build_array(...)::text`` on PostgreSQL) and followed by ``\\n``;
* rows are read in primary-key order (all columns when there is none), text
  keys compared bytewise (``COLLATE "C"`` on PostgreSQL, ``BINARY`` on SQLite);
* a table whose primary key is one integer column is hashed in groups of
  ``GROUP_SPAN`` key values (group ``g`` holds keys ``g*SPAN <= id < (g+1)*SPAN``);
  any other table is one group ``0``. The digest is
  ``SHA-256(for each non-empty group in order: int64_be(g) || SHA-256(rows))``.

Groups are hashed in parallel: in worker processes on SQLite (the encoding
runs in the reader's process), in threads on PostgreSQL (it runs in the
server). A snapshot and its restored copy on the same backend have equal
digests exactly when every row is equal.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import struct
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.types import Integer, LargeBinary, String

from backup.rowhash import (
    GROUP_SPAN,
    TablePlan,
    fetch_batches,
    group_query,
    hash_rows,
    hash_sqlite_group,
)

Connect = Callable[[], AbstractContextManager[Connection]]


def plan_tables(conn: Connection) -> list[TablePlan]:
    """Every user table of the connected database with the SQL that reads it."""
    insp = inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    pg = conn.dialect.name == "postgresql"
    plans = []
    for name in sorted(insp.get_table_names()):
        if name.startswith("sqlite_"):
            continue
        cols = insp.get_columns(name)
        pk = insp.get_pk_constraint(name).get("constrained_columns") or []
        by_name = {c["name"]: c for c in cols}
        order = pk or [c["name"] for c in cols]
        order_sql = ", ".join(
            f'{quote(c)} COLLATE "C"' if pg and isinstance(by_name[c]["type"], String) else quote(c) for c in order
        )
        if pg:
            select = f"json_build_array({', '.join(quote(c['name']) for c in cols)})::text"
        else:
            select = (
                "json_array("
                + ", ".join(
                    f"'x:' || hex({quote(c['name'])})" if isinstance(c["type"], LargeBinary) else quote(c["name"])
                    for c in cols
                )
                + ")"
            )
        int_key = quote(pk[0]) if len(pk) == 1 and isinstance(by_name[pk[0]]["type"], Integer) else None
        plans.append(TablePlan(quote(name), select, order_sql, int_key))
    return plans


def _groups(conn: Connection, plan: TablePlan) -> list[int | None]:
    if plan.int_key is None:
        return [None]
    # Identifiers come quoted from the reflected schema; no value is interpolated.
    sql = f"SELECT min({plan.int_key}), max({plan.int_key}) FROM {plan.name}"  # noqa: S608
    low, high = conn.exec_driver_sql(sql).one()
    if low is None:
        return [None]
    return list(range(low // GROUP_SPAN, high // GROUP_SPAN + 1))


def _hash_pg_group(connect: Connect, plan: TablePlan, group: int | None) -> tuple[int, bytes]:
    sql, params = group_query(plan, group, "format")
    with connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor(name=f"citadel_digest_{group}")
        try:
            cursor.execute(sql, params)
            return hash_rows(fetch_batches(cursor))
        finally:
            cursor.close()


def table_digests(engine: Engine, *, workers: int = 2, connect: Connect | None = None) -> dict[str, dict[str, Any]]:
    """``{table: {"rows": n, "sha256": hex}}`` for every user table.

    ``connect`` opens the connections used on PostgreSQL (each must see the
    same data, e.g. connections that imported one exported snapshot).
    """
    connect = connect or engine.connect
    with connect() as conn:
        plans = plan_tables(conn)
        jobs = [(plan, group) for plan in plans for group in _groups(conn, plan)]
    executor: Executor
    if engine.dialect.name == "sqlite":
        path = engine.url.database or ""
        path = re.sub(r"^file:", "", path).split("?")[0]
        executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        run = [executor.submit(hash_sqlite_group, path, plan, group) for plan, group in jobs]
    else:
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backup-digest")
        run = [executor.submit(_hash_pg_group, connect, plan, group) for plan, group in jobs]
    with executor:
        results = [future.result() for future in run]
    names = {plan.name: plan for plan in plans}
    out: dict[str, dict[str, Any]] = {}
    for (plan, group), (rows, digest) in zip(jobs, results, strict=True):
        entry = out.setdefault(plan.name, {"rows": 0, "h": hashlib.sha256()})
        if rows:
            entry["rows"] += rows
            entry["h"].update(struct.pack(">q", group or 0) + digest)
    return {
        _unquote(name): {"rows": e["rows"], "sha256": e["h"].hexdigest()} for name, e in out.items() if name in names
    }


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name
