"""Key rotation: a new key version, then every stored value rewritten under it, online.

``rotate`` makes the new version current at once (new writes use it) and
re-encrypts what is stored in batches: the fields of every model that
declared ``encrypted_field`` (``fields``), their blind indexes
(``blind_index``), attachment files (``attachments``). ``backups`` and
``audit_signing`` only get a new version: old archives and checkpoints keep
verifying with the old public keys.

Safe while the appliance runs: each row is rewritten with a compare-and-swap
(``UPDATE ... WHERE id = :id AND col = :old``), so a concurrent edit wins and
is never overwritten with stale data. Resumable: progress (the last primary
key done per table) is saved in ``keys/rotation-<purpose>.json`` after each
committed batch, and rows already under the new version are skipped, so a
crash anywhere costs at most one batch of repeated work. Old versions stay
readable throughout and afterwards (older backups still need them); when a
final sweep finds nothing left under them they are marked ``retired``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, and_, func, inspect, select, update

from appliance.keys import attachments, blind, files
from appliance.keys import fields as fieldcrypt
from appliance.keys.errors import RotationError
from appliance.keys.keyring import Keyring, check_purpose, file_lock

REWRITTEN_PURPOSES = ("fields", "blind_index", "attachments")
MAX_SWEEPS = 3

#: Called after each committed batch with the number of rows or files it covered.
Progress = Callable[[int], None]


@dataclass
class RotationResult:
    """``rewritten``: rows (or files) re-encrypted; ``leftovers``: values still on old versions."""

    purpose: str
    version: int
    rewritten: int = 0
    skipped_tables: list[str] = field(default_factory=list)
    leftovers: int = 0
    resumed: bool = False


@dataclass
class _TablePlan:
    table: Table
    pk: Any
    fields: list[fieldcrypt.EncryptedField[Any]]

    @property
    def name(self) -> str:
        return self.table.name


def _plans(purpose: str) -> list[_TablePlan]:
    by_table: dict[str, _TablePlan] = {}
    for spec in fieldcrypt.REGISTRY.values():
        if purpose == "blind_index" and not spec.index_attr:
            continue
        table: Table = spec.owner.__table__  # type: ignore[attr-defined]
        plan = by_table.get(table.name)
        if plan is None:
            pks = list(table.primary_key.columns)
            if len(pks) != 1:
                raise RotationError(detail=f"{table.name} needs a single-column primary key")
            plan = by_table[table.name] = _TablePlan(table, pks[0], [])
        plan.fields.append(spec)
    return sorted(by_table.values(), key=lambda p: p.name)


def _restore_pk(column: Any, text: str) -> Any:
    python_type = column.type.python_type
    if python_type is uuid.UUID:
        return uuid.UUID(text)
    return python_type(text)


class Rotation:
    """One rotation of one purpose, started fresh or resumed from its progress file."""

    def __init__(self, engine: Engine, keyring: Keyring, purpose: str, *,
                 batch_size: int = 500, on_batch: Progress | None = None) -> None:
        self.engine = engine
        self.keyring = keyring
        self.purpose = check_purpose(purpose)
        self.batch_size = batch_size
        self.on_batch = on_batch or (lambda _n: None)
        self.path = files.rotation_path(keyring.data_dir, purpose)
        self.progress: dict[str, Any] = {}

    # -- progress file --

    def _save(self) -> None:
        files.write_json(self.path, self.progress)

    def _begin(self) -> bool:
        """Load or create the progress file and make sure the target version exists."""
        resumed = self.path.exists()
        if resumed:
            self.progress = files.read_json(self.path)
        else:
            self.progress = {
                "purpose": self.purpose,
                "to_version": max(self.keyring.versions(self.purpose)) + 1,
                "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "phase": "rewrite",
                "tables": {},
            }
            self._save()  # before the new version, so a crash here never makes two
        target = int(self.progress["to_version"])
        self.keyring.reload()
        if target not in self.keyring.versions(self.purpose):
            made = self.keyring.add_version(self.purpose)
            if made != target:
                raise RotationError(detail=f"expected to create version {target}, made {made}")
        elif self.keyring.current_version(self.purpose) != target:
            raise RotationError(detail=f"{self.path} targets version {target}, but the current "
                                f"version is {self.keyring.current_version(self.purpose)}")
        return resumed

    # -- running --

    def run(self) -> RotationResult:
        with file_lock(self.keyring.data_dir, f"rotate-{self.purpose}", wait=False) as got:
            if not got:
                raise RotationError(detail=f"another rotation of `{self.purpose}` is running")
            resumed = self._begin()
            result = RotationResult(self.purpose, int(self.progress["to_version"]),
                                    resumed=resumed)
            if self.purpose in ("fields", "blind_index"):
                self._rotate_tables(result)
            elif self.purpose == "attachments":
                result.rewritten += self._rotate_files()
            if not result.leftovers:
                old = [v for v in self.keyring.versions(self.purpose) if v != result.version]
                self.keyring.retire(self.purpose, old)
                self.path.unlink(missing_ok=True)
            return result

    def total_items(self) -> int:
        """How many rows a full pass covers (for a progress bar)."""
        if self.purpose not in ("fields", "blind_index"):
            return 0
        present = set(inspect(self.engine).get_table_names())
        with self.engine.connect() as conn:
            return sum(conn.scalar(select(func.count()).select_from(p.table)) or 0
                       for p in _plans(self.purpose) if p.name in present)

    def _rotate_tables(self, result: RotationResult) -> None:
        present = set(inspect(self.engine).get_table_names())
        plans = [p for p in _plans(self.purpose) if p.name in present]
        result.skipped_tables = sorted(p.name for p in _plans(self.purpose)
                                       if p.name not in present)
        if self.progress["phase"] == "rewrite":
            for plan in plans:
                result.rewritten += self._sweep(plan, persist=True)
            self.progress["phase"] = "sweep"
            self._save()
        # Values written meanwhile by a process still on the old version: sweep again.
        for _ in range(MAX_SWEEPS):
            found = sum(self._sweep(plan, persist=False) for plan in plans)
            result.rewritten += found
            if not found:
                result.leftovers = 0
                return
            result.leftovers = found
        result.leftovers = sum(self._count_old(plan) for plan in plans)

    def _sweep(self, plan: _TablePlan, *, persist: bool) -> int:
        state = self.progress["tables"].setdefault(plan.name, {"after": None, "done": False})
        if persist and state["done"]:
            return 0
        after = _restore_pk(plan.pk, state["after"]) if persist and state["after"] else None
        rewritten = 0
        while True:
            rows = self._batch(plan, after)
            if not rows:
                break
            rewritten += self._rewrite(plan, rows)
            after = rows[-1][0]
            self.on_batch(len(rows))
            if persist:
                state["after"] = str(after)
                self._save()
        if persist:
            state["done"] = True
            self._save()
        return rewritten

    def _columns(self, plan: _TablePlan) -> list[Any]:
        cols = [plan.pk]
        for spec in plan.fields:
            cols.append(plan.table.c[spec.name])
            if self.purpose == "blind_index":
                cols.append(plan.table.c[f"{spec.name}_bidx"])
        return cols

    def _batch(self, plan: _TablePlan, after: Any) -> list[Any]:
        query = select(*self._columns(plan)).order_by(plan.pk).limit(self.batch_size)
        if after is not None:
            query = query.where(plan.pk > after)
        with self.engine.connect() as conn:
            return list(conn.execute(query).all())

    def _rewrite(self, plan: _TablePlan, rows: list[Any]) -> int:
        keep_timestamps = {c.name: c for c in plan.table.c if c.onupdate is not None}
        rewritten = 0
        with self.engine.begin() as conn:
            for row in rows:
                changes = self._changes(plan, row)
                if not changes:
                    continue
                guard = [plan.table.c[name] == old for name, (old, _new) in changes.items()]
                values = {name: new for name, (_old, new) in changes.items()}
                statement = (update(plan.table).where(plan.pk == row[0], and_(*guard))
                             .values(**values, **keep_timestamps))
                rewritten += conn.execute(statement).rowcount
        return rewritten

    def _changes(self, plan: _TablePlan, row: Any) -> dict[str, tuple[bytes, bytes]]:
        """Column -> (old, new) for the values of ``row`` not yet under the target version."""
        target, row_id = int(self.progress["to_version"]), row[0]
        values = dict(zip([c.name for c in self._columns(plan)], row, strict=True))
        changes: dict[str, tuple[bytes, bytes]] = {}
        for spec in plan.fields:
            stored = values[spec.name]
            if stored is None:
                continue
            if self.purpose == "fields":
                if fieldcrypt.stored_version(stored) != target:
                    plain = fieldcrypt.decrypt_bytes(plan.name, spec.name, row_id, stored,
                                                     keyring=self.keyring)
                    changes[spec.name] = (stored, fieldcrypt.encrypt_bytes(
                        plan.name, spec.name, row_id, plain, keyring=self.keyring, version=target))
                continue
            index_col = f"{spec.name}_bidx"
            old_index = values[index_col]
            if old_index is not None and blind.index_version(old_index) == target:
                continue
            value = spec.codec.decode(fieldcrypt.decrypt_bytes(plan.name, spec.name, row_id,
                                                               stored, keyring=self.keyring))
            new_index = blind.blind_index(plan.name, spec.name, spec.index_kind or "text",
                                          str(value), keyring=self.keyring, version=target)
            if new_index is not None and new_index != old_index:
                changes[index_col] = (old_index, new_index)  # type: ignore[assignment]
                changes[spec.name] = (stored, stored)  # guard: the value itself is unchanged
        return changes

    def _count_old(self, plan: _TablePlan) -> int:
        target, count, after = int(self.progress["to_version"]), 0, None
        while rows := self._batch(plan, after):
            for row in rows:
                values = dict(zip([c.name for c in self._columns(plan)], row, strict=True))
                for spec in plan.fields:
                    name = spec.name if self.purpose == "fields" else f"{spec.name}_bidx"
                    stored = values[name]
                    if stored is None:
                        continue
                    version = (fieldcrypt.stored_version(stored) if self.purpose == "fields"
                               else blind.index_version(stored))
                    count += version != target
            after = rows[-1][0]
        return count

    def _rotate_files(self) -> int:
        rewritten = 0
        for source in attachments.SOURCES:
            for path, file_id in source(self.engine):
                rewritten += attachments.reencrypt(Path(path), file_id, keyring=self.keyring)
                self.on_batch(1)
        return rewritten


def rotate(engine: Engine, keyring: Keyring, purpose: str, *, batch_size: int = 500,
           on_batch: Progress | None = None) -> RotationResult:
    """Rotate ``purpose``: start, or resume an interrupted rotation, and run it to the end."""
    return Rotation(engine, keyring, purpose, batch_size=batch_size, on_batch=on_batch).run()


def pending_rotation(data_dir: Path, purpose: str) -> dict[str, Any] | None:
    """The progress of an interrupted rotation of ``purpose``, if there is one."""
    path = files.rotation_path(data_dir, purpose)
    return files.read_json(path) if path.exists() else None
