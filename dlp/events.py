"""DLP events: reading, validating and holding them in columns.

An event is one JSON object per line (DESIGN.md, "DLP event")::

    {"ts": "2026-03-02T09:14:03Z", "user": "alice", "action": "export",
     "entity": "account", "count": 412, "ip": "10.0.0.5", "meta": {...}}

Events are held column-wise in an ``EventTable`` (numpy arrays, one row per
event) so that features are computed without a Python object per event.
Names (users, addresses, record ids) become integer codes through a
``Vocabulary`` that lives as long as the model, so codes agree between the
events a model was fitted on and the events it scores later.

Bad input never stops a run and is never silently lost: a line that cannot be
an event (not JSON, no user, no time, a negative count) is rejected with its
reason; everything else is kept, including unknown actions, out-of-order
times and repeated beacons, and counted in an ``InputReport``.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

try:  # orjson is several times faster; the standard library is the fallback.
    import orjson

    _loads = orjson.loads

    def _canonical(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)

except ImportError:  # pragma: no cover - exercised only without orjson
    _loads = json.loads

    def _canonical(obj: Any) -> bytes:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


#: The actions DESIGN.md names, in a fixed order: their index is the action code.
ACTIONS: tuple[str, ...] = (
    "login", "login.failed", "logout", "record.view", "record.search", "record.create",
    "record.update", "record.delete", "record.reassign", "report.run", "export", "print",
    "copy", "api.read", "file.external", "user.notice", "card.removed",
)
ACTION_CODE: dict[str, int] = {name: code for code, name in enumerate(ACTIONS)}
#: The code every action DESIGN.md does not name shares; the event is kept.
UNKNOWN_ACTION = len(ACTIONS)

#: Browser beacons (copy, print) repeated faster than a person can act come
#: from a misbehaving page; beyond this many per user and second they are kept
#: but not counted as activity.
BEACON_ACTIONS = frozenset({ACTION_CODE["copy"], ACTION_CODE["print"]})
BEACONS_PER_SECOND = 3

EXAMPLES_PER_REASON = 3
REPEAT_MEMORY = 256


class Vocabulary:
    """Integer codes for users, IP addresses and record ids, stable for a model's life."""

    def __init__(self) -> None:
        self.users: dict[str, int] = {}
        self.user_names: list[str] = []
        self.ips: dict[str, int] = {}
        self.ip_names: list[str] = []
        self.ids: dict[str, int] = {}
        self.entities: dict[str, int] = {}
        self.entity_names: list[str] = []
        self.roles: dict[int, str] = {}
        self.teams: dict[int, str] = {}
        # Canonical forms of the events of the latest second, to recognise repeats
        # across reads (online scoring reads one event at a time).
        self.recent: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self.recent_ts = ""

    def user(self, name: str) -> int:
        code = self.users.get(name)
        if code is None:
            code = self.users[name] = len(self.user_names)
            self.user_names.append(name)
        return code

    def ip(self, address: str | None) -> int:
        if address is None:
            return -1
        code = self.ips.get(address)
        if code is None:
            code = self.ips[address] = len(self.ip_names)
            self.ip_names.append(address)
        return code

    def entity(self, name: str | None) -> int:
        if name is None:
            return -1
        code = self.entities.get(name)
        if code is None:
            code = self.entities[name] = len(self.entity_names)
            self.entity_names.append(name)
        return code

    def record_id(self, value: object) -> int:
        key = str(value)
        code = self.ids.get(key)
        if code is None:
            code = self.ids[key] = len(self.ids)
        return code


@dataclass
class InputReport:
    """What reading the input found: kept, rejected and why, and oddities that were kept."""

    lines: int = 0
    kept: int = 0
    blank: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)
    unknown_actions: Counter[str] = field(default_factory=Counter)
    out_of_order: int = 0
    duplicates: int = 0
    flooded_beacons: int = 0
    coerced: Counter[str] = field(default_factory=Counter)

    def reject(self, line: int, reason: str) -> None:
        self.rejected[reason] += 1
        seen = self.examples.setdefault(reason, [])
        if len(seen) < EXAMPLES_PER_REASON:
            seen.append(line)

    def merge(self, other: InputReport) -> None:
        """Add ``other``'s counts to this report (online scoring reads in pieces)."""
        self.lines += other.lines
        self.kept += other.kept
        self.blank += other.blank
        self.rejected.update(other.rejected)
        for reason, lines in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(lines[: EXAMPLES_PER_REASON - len(mine)])
        self.unknown_actions.update(other.unknown_actions)
        self.out_of_order += other.out_of_order
        self.duplicates += other.duplicates
        self.flooded_beacons += other.flooded_beacons
        self.coerced.update(other.coerced)

    def summary(self) -> str:
        """A few lines a person can act on, for stderr."""
        out = [f"read {self.lines} lines: {self.kept} events kept, "
               f"{sum(self.rejected.values())} rejected, {self.blank} blank"]
        for reason, n in self.rejected.most_common():
            where = ", ".join(str(i) for i in self.examples.get(reason, []))
            out.append(f"  rejected {n}: {reason} (first at line {where}; lines count from 0)")
        if self.unknown_actions:
            names = ", ".join(f"{a!r} x{n}" for a, n in self.unknown_actions.most_common(5))
            out.append(f"  kept {sum(self.unknown_actions.values())} events with unknown "
                       f"actions ({names}); they count as activity but match no rule")
        if self.out_of_order:
            out.append(f"  kept {self.out_of_order} events whose time was earlier than an "
                       "earlier line of the same user; they are scored at that user's latest time")
        if self.duplicates:
            out.append(f"  kept {self.duplicates} exact repeats of an earlier event in the same "
                       "second; they are not counted twice")
        if self.flooded_beacons:
            out.append(f"  kept {self.flooded_beacons} copy/print beacons beyond "
                       f"{BEACONS_PER_SECOND} per user and second; a page is flooding, "
                       "they are not counted as activity")
        for what, n in self.coerced.most_common():
            out.append(f"  kept {n} events with {what}")
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines, "kept": self.kept, "blank": self.blank,
            "rejected": dict(self.rejected), "unknown_actions": dict(self.unknown_actions),
            "out_of_order": self.out_of_order, "duplicates": self.duplicates,
            "flooded_beacons": self.flooded_beacons, "coerced": dict(self.coerced),
        }


@dataclass
class EventTable:
    """Events as columns; row ``i`` is one kept event.

    ``line`` is the event's 0-based line number in its input (or its sequence
    number in the audit log). ``outside`` and ``total`` are ``meta.outside_book``
    and ``meta.total_accounts`` (-1 when absent). ``ids`` of row ``i`` are
    ``id_codes[id_ptr[i]:id_ptr[i + 1]]``. ``target`` is the user a
    ``record.reassign`` gave records to (-1 when absent). ``counted`` is False
    for repeats and beacon floods, which are kept but add no activity.
    """

    line: np.ndarray
    ts: np.ndarray
    user: np.ndarray
    action: np.ndarray
    entity: np.ndarray
    count: np.ndarray
    ip: np.ndarray
    outside: np.ndarray
    total: np.ndarray
    target: np.ndarray
    counted: np.ndarray
    id_ptr: np.ndarray
    id_codes: np.ndarray

    def __len__(self) -> int:
        return int(self.line.shape[0])

    def take(self, index: np.ndarray) -> EventTable:
        """The rows at ``index`` (a boolean mask or positions), ids included."""
        if index.dtype == bool:
            index = np.flatnonzero(index)
        starts, ends = self.id_ptr[index], self.id_ptr[index + 1]
        lengths = ends - starts
        ptr = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=ptr[1:])
        if ptr[-1]:
            flat = np.repeat(starts - ptr[:-1], lengths) + np.arange(ptr[-1])
            codes = self.id_codes[flat]
        else:
            codes = np.zeros(0, dtype=np.int64)
        cols = {name: getattr(self, name)[index] for name in _ROW_COLUMNS}
        return EventTable(**cols, id_ptr=ptr, id_codes=codes)

    @staticmethod
    def concat(tables: list[EventTable]) -> EventTable:
        cols = {name: np.concatenate([getattr(t, name) for t in tables]) for name in _ROW_COLUMNS}
        lengths = np.concatenate([np.diff(t.id_ptr) for t in tables])
        ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=ptr[1:])
        codes = np.concatenate([t.id_codes for t in tables])
        return EventTable(**cols, id_ptr=ptr, id_codes=codes)


_ROW_COLUMNS = ("line", "ts", "user", "action", "entity", "count", "ip", "outside",
                "total", "target", "counted")


def empty_table() -> EventTable:
    ints = {name: np.zeros(0, dtype=np.int64) for name in _ROW_COLUMNS}
    ints["counted"] = np.zeros(0, dtype=bool)
    return EventTable(**ints, id_ptr=np.zeros(1, dtype=np.int64),
                      id_codes=np.zeros(0, dtype=np.int64))


def iso(ts: int | np.integer) -> str:
    """Epoch seconds as DESIGN.md writes times: ``2026-03-02T09:14:03Z``."""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    """An ISO 8601 time (``Z`` or an offset; naive means UTC) as epoch seconds.

    Raises ``ValueError`` when it is not one.
    """
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp())


class _Builder:
    """Accumulates validated events into lists, then columns."""

    def __init__(self, vocab: Vocabulary, report: InputReport) -> None:
        self.vocab = vocab
        self.report = report
        self.line: list[int] = []
        self.fast_ts: list[str] = []
        self.slow: list[tuple[int, int]] = []  # (row, epoch) for times not in the fast form
        self.user: list[int] = []
        self.action: list[int] = []
        self.entity: list[int] = []
        self.count: list[int] = []
        self.ip: list[int] = []
        self.outside: list[int] = []
        self.total: list[int] = []
        self.target: list[int] = []
        self.dup: list[bool] = []
        self.id_len: list[int] = []
        self.id_codes: list[int] = []

    def add(self, obj: Any, lineno: int) -> None:  # noqa: C901 - one flat validation pass
        """Validate one decoded line and append it, or reject it with a reason."""
        report = self.report
        if type(obj) is not dict:
            report.reject(lineno, "not a JSON object")
            return
        ts = obj.get("ts")
        user = obj.get("user")
        action = obj.get("action")
        if type(ts) is not str:
            report.reject(lineno, "no time: `ts` must be an ISO 8601 string")
            return
        if type(user) is not str or not user:
            report.reject(lineno, "no user: `user` must be a non-empty string")
            return
        if type(action) is not str or not action:
            report.reject(lineno, "no action: `action` must be a non-empty string")
            return
        count = obj.get("count", 0)
        if type(count) is not int:
            if type(count) is float and count.is_integer():
                count = int(count)
                report.coerced["a whole-number float count"] += 1
            elif count is None:
                count = 0
            else:
                report.reject(lineno, "bad count: `count` must be a whole number")
                return
        if count < 0:
            report.reject(lineno, "bad count: `count` must not be negative")
            return
        row = len(self.line)
        if len(ts) == 20 and ts[19] == "Z":
            self.fast_ts.append(ts[:19])
        else:
            try:
                self.slow.append((row, parse_time(ts)))
            except (ValueError, OverflowError):
                report.reject(lineno, "bad time: `ts` is not an ISO 8601 time")
                return
            self.fast_ts.append("1970-01-01T00:00:00")
        code = ACTION_CODE.get(action, UNKNOWN_ACTION)
        if code == UNKNOWN_ACTION:
            report.unknown_actions[action] += 1
        ip = obj.get("ip")
        if ip is not None and type(ip) is not str:
            report.coerced["an `ip` that is not a string (ignored)"] += 1
            ip = None
        entity = obj.get("entity")
        if entity is not None and type(entity) is not str:
            report.coerced["an `entity` that is not a string (ignored)"] += 1
            entity = None
        vocab = self.vocab
        ucode = vocab.user(user)
        meta = obj.get("meta")
        if type(meta) is str and meta.startswith("{"):  # the audit log stores meta as JSON text
            try:
                meta = _loads(meta)
            except ValueError:
                meta = None
                report.coerced["a `meta` that is not an object (ignored)"] += 1
        outside = total = target = -1
        n_ids = 0
        if meta:
            if type(meta) is dict:
                outside, total, target, n_ids = self._meta(meta, ucode, lineno)
            else:
                report.coerced["a `meta` that is not an object (ignored)"] += 1
        eid = obj.get("entity_id")
        if eid is not None and n_ids == 0:
            self.id_codes.append(vocab.record_id(eid))
            n_ids = 1
        self.dup.extend(_repeats(vocab, [obj], [ts]))
        self.line.append(lineno)
        self.user.append(ucode)
        self.action.append(code)
        self.entity.append(vocab.entity(entity))
        self.count.append(count)
        self.ip.append(vocab.ip(ip))
        self.outside.append(outside)
        self.total.append(total)
        self.target.append(target)
        self.id_len.append(n_ids)
        report.kept += 1

    def add_clean(self, objs: list[Any], linenos: list[int]) -> bool:
        """Append a chunk of decoded lines column-wise, if every one is a plain event.

        Plain: a JSON object with a ``...Z`` time, a user, an action, a whole
        non-negative count, a string or null address and entity, and a simple
        ``meta``. Returns False without changing anything otherwise; the caller
        then adds the lines one by one, which explains every oddity.
        """
        if set(map(type, objs)) != {dict}:
            return False
        try:  # every field present: one C-level pass
            ts, users, actions, counts, ips, entities, metas = map(
                list, zip(*map(_FIELDS, objs), strict=True))
        except KeyError:
            ts = [o.get("ts") for o in objs]
            users = [o.get("user") for o in objs]
            actions = [o.get("action") for o in objs]
            counts = [o.get("count", 0) for o in objs]
            ips = [o.get("ip") for o in objs]
            entities = [o.get("entity") for o in objs]
            metas = [o.get("meta") for o in objs]
        metas = [m or _EMPTY for m in metas]
        if not (set(map(type, ts)) == {str} and set(map(len, ts)) == {20}
                and all(map(str.endswith, ts, repeat("Z")))
                and set(map(type, users)) == {str} and "" not in set(users)
                and set(map(type, actions)) == {str} and "" not in set(actions)
                and set(map(type, counts)) == {int} and min(counts) >= 0
                and set(map(type, ips)) <= _OPTIONAL_STR
                and set(map(type, entities)) <= _OPTIONAL_STR
                and set(map(type, metas)) == {dict}
                and not any(map(_has_entity_id, objs))):
            return False
        id_lists = [m.get("ids", ()) for m in metas]
        if not set(map(type, id_lists)) <= {list, tuple}:
            return False
        flat = [v for ids in id_lists for v in ids]
        if not set(map(type, flat)) <= {str, int}:
            return False
        stamps = [t[:19] for t in ts]
        try:
            np.array(stamps, dtype="datetime64[s]")
        except ValueError:
            return False
        self._extend_clean(objs, linenos, ts, stamps, users, actions, counts, ips, entities,
                           metas, id_lists, flat)
        return True

    def _extend_clean(self, objs: list[Any], linenos: list[int], ts: list[str],
                      stamps: list[str], users: list[str], actions: list[str],
                      counts: list[int], ips: list[str | None], entities: list[str | None],
                      metas: list[dict[str, Any]], id_lists: list[Any],
                      flat: list[Any]) -> None:
        vocab, report = self.vocab, self.report
        user_codes = _codes(vocab.users, vocab.user_names, users)
        codes = [ACTION_CODE.get(a, UNKNOWN_ACTION) for a in actions]
        if UNKNOWN_ACTION in codes:
            report.unknown_actions.update(a for a, c in zip(actions, codes, strict=True)
                                          if c == UNKNOWN_ACTION)
        outside = [m.get("outside_book", -1) for m in metas]
        outside = [v if type(v) is int and v >= 0 else -1 for v in outside]
        total = [m.get("total_accounts", -1) for m in metas]
        total = [v if type(v) is int and v > 0 else -1 for v in total]
        target = [-1] * len(objs)
        for k in [k for k, m in enumerate(metas) if "to" in m or "role" in m or "team" in m]:
            to, role, team = metas[k].get("to"), metas[k].get("role"), metas[k].get("team")
            if type(to) is str and to:
                target[k] = vocab.user(to)
            if type(role) is str and role:
                vocab.roles[user_codes[k]] = role
            if type(team) is str and team:
                vocab.teams[user_codes[k]] = team
        self.id_codes.extend(_codes(vocab.ids, None, flat))
        self.dup.extend(_repeats_chunk(vocab, objs, ts, users, actions, counts))
        self.line.extend(linenos)
        self.fast_ts.extend(stamps)
        self.user.extend(user_codes)
        self.action.extend(codes)
        self.entity.extend(_optional_codes(vocab.entities, vocab.entity_names, entities))
        self.count.extend(counts)
        self.ip.extend(_optional_codes(vocab.ips, vocab.ip_names, ips))
        self.outside.extend(outside)
        self.total.extend(total)
        self.target.extend(target)
        self.id_len.extend(map(len, id_lists))
        report.kept += len(objs)

    def _meta(self, meta: dict[str, Any], ucode: int, lineno: int) -> tuple[int, int, int, int]:
        """The optional facts the appliance adds to ``meta``; wrong types are ignored."""
        outside = meta.get("outside_book", -1)
        if type(outside) is not int or outside < 0:
            outside = -1
        total = meta.get("total_accounts", -1)
        if type(total) is not int or total <= 0:
            total = -1
        target = -1
        to = meta.get("to")
        if type(to) is str and to:
            target = self.vocab.user(to)
        role, team = meta.get("role"), meta.get("team")
        if type(role) is str and role:
            self.vocab.roles[ucode] = role
        if type(team) is str and team:
            self.vocab.teams[ucode] = team
        ids = meta.get("ids")
        n_ids = 0
        if type(ids) is list:
            record_id = self.vocab.record_id
            for value in ids:
                if type(value) in (str, int):
                    self.id_codes.append(record_id(value))
                    n_ids += 1
        return outside, total, target, n_ids

    def table(self) -> EventTable:
        """The accepted events as columns; marks repeats and beacon floods as not counted."""
        n = len(self.line)
        ts = np.array(self.fast_ts, dtype="datetime64[s]").astype(np.int64) if n else \
            np.zeros(0, dtype=np.int64)
        for row, epoch in self.slow:
            ts[row] = epoch
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.array(self.id_len, dtype=np.int64), out=ptr[1:])
        table = EventTable(
            line=np.array(self.line, dtype=np.int64), ts=ts,
            user=np.array(self.user, dtype=np.int64),
            action=np.array(self.action, dtype=np.int64),
            entity=np.array(self.entity, dtype=np.int64),
            count=np.array(self.count, dtype=np.int64), ip=np.array(self.ip, dtype=np.int64),
            outside=np.array(self.outside, dtype=np.int64),
            total=np.array(self.total, dtype=np.int64),
            target=np.array(self.target, dtype=np.int64),
            counted=~np.array(self.dup, dtype=bool), id_ptr=ptr,
            id_codes=np.array(self.id_codes, dtype=np.int64),
        )
        self.report.duplicates += int(n - table.counted.sum())
        return table


def _codes(known: dict[Any, int], names: list[Any] | None, values: list[Any]) -> list[int]:
    """Codes of ``values`` in ``known``, adding the new ones in order of appearance."""
    for value in dict.fromkeys(values):  # the distinct values, in order of appearance
        if value not in known:
            known[value] = len(known)
            if names is not None:
                names.append(value)
    return list(map(known.__getitem__, values))


CHUNK = 20_000
_EMPTY: dict[str, Any] = {}
_FIELDS = itemgetter("ts", "user", "action", "count", "ip", "entity", "meta")
_OPTIONAL_STR = {str, type(None)}


def _repeats(vocab: Vocabulary, objs: list[dict[str, Any]], ts: list[str]) -> list[bool]:
    """Which events repeat an earlier event of the same second exactly (equal JSON).

    Only events of the same person, action and count are compared, and at
    most ``REPEAT_MEMORY`` of them per second, so a flood stays cheap.
    """
    out = []
    recent, recent_ts = vocab.recent, vocab.recent_ts
    for obj, t in zip(objs, ts, strict=True):
        if t != recent_ts:
            recent, recent_ts = {}, t
        key = (obj.get("user"), obj.get("action"), obj.get("count"))
        seen = recent.get(key)
        if seen is None:
            recent[key] = [obj]
            out.append(False)
        elif obj in seen:
            out.append(True)
        else:
            if len(seen) < REPEAT_MEMORY:
                seen.append(obj)
            out.append(False)
    vocab.recent, vocab.recent_ts = recent, recent_ts
    return out


def _repeats_chunk(vocab: Vocabulary, objs: list[dict[str, Any]], ts: list[str],
                   users: list[Any], actions: list[Any], counts: list[Any]) -> list[bool]:
    """``_repeats`` for a chunk, without the per-event loop when nothing can repeat.

    Nothing can when no (time, user, action, count) occurs twice in the chunk
    and the chunk's first second is not the one remembered from before.
    """
    keys = list(zip(ts, users, actions, counts, strict=True))
    if not keys or ts[0] == vocab.recent_ts or len(set(keys)) < len(keys):
        return _repeats(vocab, objs, ts)
    last = ts[-1]
    tail = len(ts)
    while tail > 0 and ts[tail - 1] == last:
        tail -= 1
    vocab.recent, vocab.recent_ts = {}, ""
    _repeats(vocab, objs[tail:], ts[tail:])  # remember the last second for the next chunk
    return [False] * len(objs)


def _has_entity_id(obj: dict[str, Any]) -> bool:
    return "entity_id" in obj


def _optional_codes(known: dict[Any, int], names: list[Any], values: list[Any]) -> list[int]:
    """Like ``_codes``, with None coded -1."""
    present = [v for v in values if v is not None]
    if len(present) == len(values):
        return _codes(known, names, values)
    _codes(known, names, present)
    return [-1 if v is None else known[v] for v in values]


def parse_lines(lines: list[bytes], vocab: Vocabulary, first_line: int = 0,
                report: InputReport | None = None) -> tuple[EventTable, InputReport]:
    """Parse JSON lines into a table; line numbers start at ``first_line``.

    Lines are decoded a chunk at a time; a chunk of plain events is taken
    column-wise, any other chunk line by line (every oddity counted).
    """
    report = report or InputReport()
    builder = _Builder(vocab, report)
    collecting = gc.isenabled()
    gc.disable()  # millions of small dicts that all survive: the collector only costs here
    try:
        for start in range(0, len(lines), CHUNK):
            chunk = lines[start:start + CHUNK]
            numbers = [first_line + start + k for k, raw in enumerate(chunk)
                       if raw and not raw.isspace()]
            if len(numbers) < len(chunk):
                report.blank += len(chunk) - len(numbers)
                chunk = [lines[n - first_line] for n in numbers]
            try:
                objs = [_loads(raw) for raw in chunk]
            except ValueError:
                objs = None
            if objs is None or not builder.add_clean(objs, numbers):
                _add_each(builder, chunk, numbers, objs)
            del objs
        report.lines += len(lines)
        return builder.table(), report
    finally:
        if collecting:
            gc.enable()


def _add_each(builder: _Builder, chunk: list[bytes], numbers: list[int],
              objs: list[Any] | None) -> None:
    """The careful path: line by line, each rejection with its reason."""
    if objs is not None:
        for obj, lineno in zip(objs, numbers, strict=True):
            builder.add(obj, lineno)
        return
    for raw, lineno in zip(chunk, numbers, strict=True):
        try:
            obj = _loads(raw)
        except ValueError:
            builder.report.reject(lineno, "not JSON")
            continue
        builder.add(obj, lineno)


def read_events(path: str | Path, vocab: Vocabulary) -> tuple[EventTable, InputReport]:
    """Read a JSON-lines file of events; a final newline does not count as a line."""
    data = Path(path).read_bytes()
    if data.endswith(b"\n"):
        data = data[:-1]
    lines = data.split(b"\n") if data else []
    return parse_lines(lines, vocab)


def table_from_dicts(events: Iterable[dict[str, Any]], vocab: Vocabulary, first_line: int = 0,
                     lines: Iterable[int] | None = None,
                     report: InputReport | None = None) -> tuple[EventTable, InputReport]:
    """Events already decoded (from the audit log); ``lines`` gives their numbers, if any."""
    report = report or InputReport()
    builder = _Builder(vocab, report)
    numbers = iter(lines) if lines is not None else None
    lineno = first_line - 1
    for obj in events:
        lineno = next(numbers) if numbers is not None else lineno + 1
        report.lines += 1
        if isinstance(obj, dict) and isinstance(obj.get("ts"), datetime):
            obj = dict(obj, ts=obj["ts"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        builder.add(obj, lineno)
    return builder.table(), report


def dumps(obj: Any) -> bytes:
    """One JSON line, keys in a stable order."""
    return _canonical(obj)
