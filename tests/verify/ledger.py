"""What the clients were told, and the check that the database still says so.

Every write a client sees acknowledged (2xx with the record in the answer) is
noted here; so is every attempt, acknowledged or not, because an attempt whose
answer was lost may still have committed. ``check`` then reads the database:
every acknowledged create is there with its audit event, every record holds its
last acknowledged value or a value attempted after it, every export the client
received whole is recorded with the same SHA-256 and its audit event, and every
recorded export has its event.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Engine, text


@dataclass
class Attempt:
    value: str
    acked: bool = False


@dataclass
class Ledger:
    creates: dict[str, str] = field(default_factory=dict)  # id -> table (acknowledged)
    updates: dict[str, list[Attempt]] = field(default_factory=dict)  # account id -> attempts
    exports: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (sha256, rows)
    outcomes: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def created(self, table: str, record_id: str) -> None:
        with self._lock:
            self.creates[record_id] = table

    def attempt_update(self, record_id: str, value: str) -> Attempt:
        attempt = Attempt(value)
        with self._lock:
            self.updates.setdefault(record_id, []).append(attempt)
        return attempt

    def exported(self, export_id: str, sha256: str, rows: int) -> None:
        with self._lock:
            self.exports[export_id] = (sha256, rows)

    def outcome(self, kind: str, result: str) -> None:
        with self._lock:
            self.outcomes[f"{kind} {result}"] += 1

    @property
    def acknowledged(self) -> int:
        return sum(n for k, n in self.outcomes.items() if k.endswith(" ok"))

    @property
    def refused(self) -> int:
        return sum(n for k, n in self.outcomes.items() if not k.endswith(" ok"))

    # -- the check ---------------------------------------------------------------
    def check(self, engine: Engine) -> list[str]:
        """What the database lost or got wrong; empty when every acknowledgement holds."""
        problems: list[str] = []
        with engine.connect() as conn:
            problems += self._check_creates(conn)
            problems += self._check_updates(conn)
            problems += self._check_exports(conn)
        return problems

    def _check_creates(self, conn) -> list[str]:
        problems = []
        for table in sorted(set(self.creates.values())):
            wanted = {i for i, t in self.creates.items() if t == table}
            found = _existing(conn, table, wanted)
            problems += [f"acknowledged {table} {i} is missing" for i in sorted(wanted - found)]
            audited = _audited(conn, "record.create", wanted)
            problems += [f"acknowledged {table} {i} has no record.create event"
                         for i in sorted(found - audited)]
        return problems

    def _check_updates(self, conn) -> list[str]:
        problems = []
        ids = list(self.updates)
        cities: dict[str, str] = {}
        for chunk in _chunks(ids, 500):
            rows = conn.execute(text("SELECT id, city FROM accounts WHERE id IN :ids")
                                .bindparams(_expanding("ids")), {"ids": _uuids(conn, chunk)})
            cities.update({str(r[0]): r[1] for r in rows})
        for record_id, attempts in self.updates.items():
            acked = [k for k, a in enumerate(attempts) if a.acked]
            if not acked:
                continue
            allowed = {a.value for a in attempts[acked[-1]:]}
            if cities.get(record_id) not in allowed:
                problems.append(f"account {record_id}: city is {cities.get(record_id)!r}, the "
                                f"last acknowledged update set {attempts[acked[-1]].value!r}")
        return problems

    def _check_exports(self, conn) -> list[str]:
        problems = []
        stored = {str(r[0]): (r[1], r[2]) for r in conn.execute(
            text("SELECT id, content_sha256, row_count FROM exports"))}
        for export_id, (sha, rows) in self.exports.items():
            if export_id not in stored:
                problems.append(f"export {export_id} was delivered but is not recorded")
            elif stored[export_id] != (sha, rows):
                problems.append(f"export {export_id} is recorded as {stored[export_id]}, "
                                f"delivered as {(sha, rows)}")
        audited = _audited(conn, "export", set(stored))
        problems += [f"export {i} is recorded without its export event"
                     for i in sorted(set(stored) - audited)]
        return problems


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def _expanding(name: str):
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


def _uuids(conn, ids: list[str]) -> list[object]:
    """Ids as the column stores them: native UUIDs on PostgreSQL, hex text on SQLite."""
    if conn.dialect.name == "postgresql":
        return [uuid.UUID(i) for i in ids]
    return [uuid.UUID(i).hex for i in ids]


def _existing(conn, table: str, ids: set[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(ids), 500):
        rows = conn.execute(text(f"SELECT id FROM {table} WHERE id IN :ids")  # noqa: S608
                            .bindparams(_expanding("ids")), {"ids": _uuids(conn, chunk)})
        found |= {str(uuid.UUID(str(r[0]))) for r in rows}
    return found


def _audited(conn, action: str, ids: set[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(ids), 500):
        rows = conn.execute(text("SELECT entity_id FROM audit_events WHERE action = :a AND "
                                 "entity_id IN :ids").bindparams(_expanding("ids")),
                            {"a": action, "ids": chunk})
        found |= {r[0] for r in rows}
    return found


def audit_gaps(engine: Engine) -> str | None:
    """None when the live audit seqs run 0..n-1 without a hole, else what is wrong."""
    with engine.connect() as conn:
        low, high, count = conn.execute(
            text("SELECT min(seq), max(seq), count(*) FROM audit_events")).one()
    if count == 0:
        return None
    if low != 0 or high != count - 1:
        return f"seq runs {low}..{high} with {count} events: {high - low + 1 - count} missing"
    return None
