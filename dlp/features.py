"""Features: what each person did in the hour, day, week and month up to each event.

Every event adds *increments* (records viewed, rows exported, prints, copies,
API rows, records outside the person's own book, accounts new to them, rows
touched outside their usual hours or from a network new to them, ...). The
features of an event are the sums of its person's increments over trailing
windows of whole clock hours that end with the event itself: the current hour,
24 hours, 7 days and 30 days. Because a window includes the event, a feature
crosses a line on the very event that takes it there, which is what lets an
alert be raised as soon as it happens.

The same function computes the features of a whole file (replay) and of the
events fed one by one to a live scorer: it needs only the person's last 30
days, which is what the online scorer keeps. Windows are whole hours so that
the answer never depends on how events were batched.

Nothing here needs ``meta``. When the appliance adds ``meta.outside_book`` and
``meta.ids`` the outside-book and new-account features use them; without them
those features are zero and coverage is estimated from the records touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlp.events import ACTION_CODE, BEACON_ACTIONS, BEACONS_PER_SECOND, EventTable

HOUR = 3600
DAY = 24 * HOUR
WINDOWS = {"hour": 1, "day": 24, "week": 168, "month": 720}  # in hours
LOOKBACK = 720 * HOUR  # how far back any feature looks, besides notices
NOTICE_DAYS = 90  # a notice period this long or shorter is "in notice"
NEW_PLACE = 7 * DAY  # a network first used this recently is a new place
REPORT_EXPORT = 15 * 60  # an export this soon after a report run exports that report
# What the online scorer keeps of every person's events: a 30-day window sums
# rows whose own "new to the person" flags look back another 30 days.
MEMORY = 2 * LOOKBACK + DAY
_SHIFT = np.int64(1) << np.int64(34)  # separates users in combined sort keys

A = ACTION_CODE
READS = np.array([A["record.view"], A["record.update"], A["record.create"],
                  A["record.delete"], A["export"], A["print"], A["copy"], A["api.read"],
                  A["file.external"]])
EXFIL = {"export_rows": A["export"], "print_rows": A["print"], "copy_rows": A["copy"],
         "api_rows": A["api.read"], "file_rows": A["file.external"]}

#: What one event adds; a feature is a window sum of one of these.
INCREMENTS: tuple[str, ...] = (
    "events", "views", "searches", "updates", "reports", "exports", "export_rows",
    "print_rows", "copy_rows", "api_rows", "file_rows", "exfil_rows", "outside_rows",
    "new_accounts", "touched_rows", "offhours_rows", "offhours_exfil", "newnet_rows",
    "ip_switches", "card_removed", "failed_logins", "reassigned", "unlisted_rows",
    "outside_exfil",
)
INC = {name: i for i, name in enumerate(INCREMENTS)}

#: The features every event gets: (increment, window).
FEATURES: tuple[tuple[str, str], ...] = (
    *((name, "day") for name in INCREMENTS if name not in ("reassigned", "unlisted_rows")),
    ("exfil_rows", "hour"), ("api_rows", "hour"), ("views", "hour"),
    ("exfil_rows", "week"), ("export_rows", "week"), ("print_rows", "week"),
    ("copy_rows", "week"), ("outside_rows", "week"), ("new_accounts", "week"),
    ("offhours_rows", "week"), ("outside_exfil", "week"),
    ("exfil_rows", "month"), ("new_accounts", "month"), ("touched_rows", "month"),
    ("outside_exfil", "month"),
    ("reassigned", "month"),
    ("unlisted_rows", "day"), ("unlisted_rows", "week"), ("unlisted_rows", "month"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f"{name}_{window}" for name, window in FEATURES)
#: Facts about the event itself that follow the features in a feature matrix.
CONTEXT: tuple[str, ...] = ("user", "day", "in_notice", "tenure_days", "offhour", "new_net",
                            "action", "count", "base_size", "peers_busy")
COLUMNS: tuple[str, ...] = FEATURE_NAMES + CONTEXT
FEATURE_INDEX = {name: i for i, name in enumerate(COLUMNS)}


@dataclass
class Profile:
    """What the features need to know about people beforehand (learned by ``fit_profile``).

    ``off_hours[u, h]`` is True when hour-of-week ``h`` (Monday 00 UTC = 0) is
    outside person ``u``'s usual hours; ``usual`` is the organisation's
    profile, used for people without enough history. ``first_seen`` is when
    each person was first seen (-1 unknown). ``base_size`` is the size of the
    client base, given by the appliance or estimated. ``known_nets`` holds the
    (person, network) pairs seen while fitting, as sorted keys.
    """

    off_hours: np.ndarray
    usual: np.ndarray
    first_seen: np.ndarray
    base_size: int
    known_nets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def off(self, users: np.ndarray, how: np.ndarray) -> np.ndarray:
        known = users < self.off_hours.shape[0]
        out = self.usual[how]
        if known.any():
            out[known] = self.off_hours[users[known], how[known]]
        return out


@dataclass
class Rows:
    """Events (and derived rows) in per-person order with their increments.

    ``event`` is False for rows derived from another person's event (a
    reassignment credited to its receiver); such rows carry increments but are
    never scored. ``pos`` is each row's position in the input table. ``late``
    marks events whose time was before an earlier event of the same person
    (scored at that person's latest time); ``flooded`` marks beacons beyond
    the per-second limit.
    """

    user: np.ndarray
    line: np.ndarray
    ts: np.ndarray
    action: np.ndarray
    count: np.ndarray
    ip: np.ndarray
    pos: np.ndarray
    event: np.ndarray
    inc: np.ndarray
    off: np.ndarray
    new_net: np.ndarray
    in_notice: np.ndarray
    tenure_days: np.ndarray
    late: np.ndarray
    flooded: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])


def hour_of_week(ts: np.ndarray) -> np.ndarray:
    """Hour of the week in UTC, Monday 00:00 = 0 (1970-01-01 was a Thursday)."""
    return ((ts // DAY + 3) % 7) * 24 + (ts // HOUR) % 24


def fit_profile(table: EventTable, n_users: int, net_of_ip: np.ndarray | None = None,
                min_events: int = 150, rare: float = 0.1) -> Profile:
    """Learn each person's usual hours and the size of the client base from ``table``.

    An hour of the week is *off* for a person when, with its neighbours, it
    holds less than ``rare`` of the share an average hour of theirs holds.
    People with fewer than ``min_events`` events are blended with the
    organisation's profile.
    """
    how = hour_of_week(table.ts)
    counts = np.zeros((n_users, 168))
    np.add.at(counts, (table.user, how), 1.0)
    org = counts.sum(axis=0)
    org_share = _smooth(org) / max(org.sum(), 1.0)
    usual = org_share < rare / 168
    totals = counts.sum(axis=1, keepdims=True)
    weight = np.clip(totals / min_events, 0.0, 1.0)
    share = _smooth(counts) / np.maximum(totals, 1.0)
    share = weight * share + (1.0 - weight) * org_share
    off_hours = share < rare / 168
    first = np.full(n_users, -1, dtype=np.int64)
    if len(table):
        order = np.argsort(table.ts, kind="stable")
        users, where = np.unique(table.user[order], return_index=True)
        first[users] = table.ts[order][where]
    known = np.zeros(0, dtype=np.int64)
    if net_of_ip is not None and net_of_ip.size:
        used = table.ip >= 0
        known = np.unique(_net_keys(table.user[used], net_of_ip[table.ip[used]]))
    return Profile(off_hours, usual, first, _base_size(table), known)


def _net_keys(user: np.ndarray, net: np.ndarray) -> np.ndarray:
    return user * _SHIFT + net


def _smooth(counts: np.ndarray) -> np.ndarray:
    """An hour and its two neighbours (cyclic over the week)."""
    return counts + np.roll(counts, 1, axis=-1) + np.roll(counts, -1, axis=-1)


def _base_size(table: EventTable) -> int:
    """The client base's size: from ``meta.total_accounts``, else the distinct ids seen."""
    known = table.total[table.total > 0]
    if known.size:
        return int(np.median(known))
    if table.id_codes.size:
        return int(np.unique(table.id_codes).size)
    return 0


def prepare(table: EventTable, profile: Profile, net_of_ip: np.ndarray) -> Rows:
    """Order ``table`` per person, add derived rows and compute every increment."""
    n_events = len(table)
    table = _with_reassignments(table)
    derived = np.zeros(len(table), dtype=bool)
    derived[n_events:] = True
    order = np.lexsort((derived, table.line, table.user))
    user, line = table.user[order], table.line[order]
    raw_ts = table.ts[order]
    key = np.maximum.accumulate(user * _SHIFT + raw_ts)
    ts = key - user * _SHIFT
    action, count, ip = table.action[order], table.count[order], table.ip[order]
    counted = table.counted[order].copy()
    flooded = _drop_floods(user, ts, action, counted)
    off = profile.off(user, hour_of_week(ts))
    net = np.full(ip.shape, -1, dtype=np.int64)
    if net_of_ip.size:
        net = np.where(ip >= 0, net_of_ip[np.clip(ip, 0, net_of_ip.size - 1)], -1)
    prev_net_ts = _previous_same(user, net, ts, valid=net >= 0)
    new_net = (net >= 0) & ((prev_net_ts < 0) | (ts - prev_net_ts >= LOOKBACK))
    age = _since_new(user, net, ts, new_net)
    # A network the person used while the model was fitted is never a new place.
    known = np.isin(_net_keys(user, net), profile.known_nets) & (net >= 0)
    new_net &= ~known
    age[known] = np.iinfo(np.int64).max
    first = _first_seen(user, ts, profile)
    switches = _net_switches(user, net, ts, prev_net_ts, age)
    switches &= ts - first >= NEW_PLACE  # everything is a new place to a newcomer
    new_ids = _new_accounts(table, order, user, ts, action)
    halve = _report_exports(user, ts, action, count)
    inc = _increments(table, order, action, np.where(halve, (count + 1) // 2, count), counted,
                      off, new_net, switches, new_ids)
    rows = Rows(
        user=user, line=line, ts=ts, action=action, count=count, ip=ip, pos=order,
        event=~derived[order], inc=inc, off=off, new_net=new_net,
        in_notice=_in_notice(user, ts, action), tenure_days=(ts - first) / DAY,
        late=ts > raw_ts, flooded=flooded,
    )
    return rows


def _with_reassignments(table: EventTable) -> EventTable:
    """Credit each ``record.reassign`` to its receiver as well (``meta.to``)."""
    mask = (table.action == A["record.reassign"]) & (table.target >= 0) & table.counted
    if not mask.any():
        return table
    extra = table.take(mask)
    extra.user = extra.target.copy()
    extra.id_ptr = np.zeros(len(extra) + 1, dtype=np.int64)
    extra.id_codes = np.zeros(0, dtype=np.int64)
    return EventTable.concat([table, extra])


def _drop_floods(user: np.ndarray, ts: np.ndarray, action: np.ndarray,
                 counted: np.ndarray) -> np.ndarray:
    """Beacons beyond the per-second limit stop counting; returns which rows those are."""
    out = np.zeros(user.shape[0], dtype=bool)
    beacon = np.flatnonzero(np.isin(action, list(BEACON_ACTIONS)) & counted)
    if beacon.size <= BEACONS_PER_SECOND:
        return out
    keys = np.stack([user[beacon], ts[beacon], action[beacon]])
    order = np.lexsort((beacon, keys[2], keys[1], keys[0]))
    k = keys[:, order]
    start = np.ones(beacon.size, dtype=bool)
    start[1:] = (k[:, 1:] != k[:, :-1]).any(axis=0)
    first = np.maximum.accumulate(np.where(start, np.arange(beacon.size), 0))
    rank = np.arange(beacon.size) - first
    flood = beacon[order][rank >= BEACONS_PER_SECOND]
    counted[flood] = False
    out[flood] = True
    return out


def _previous_same(user: np.ndarray, value: np.ndarray, ts: np.ndarray,
                   valid: np.ndarray) -> np.ndarray:
    """For each row, the time of the person's previous row with the same value (-1 if none)."""
    out = np.full(user.shape[0], -1, dtype=np.int64)
    rows = np.flatnonzero(valid)
    if rows.size < 2:
        return out
    order = rows[np.lexsort((rows, value[rows], user[rows]))]
    same = (user[order][1:] == user[order][:-1]) & (value[order][1:] == value[order][:-1])
    out[order[1:][same]] = ts[order[:-1][same]]
    return out


def _since_new(user: np.ndarray, net: np.ndarray, ts: np.ndarray,
               new_net: np.ndarray) -> np.ndarray:
    """For each row, seconds since its network became new to the person (-1: no network)."""
    out = np.full(user.shape[0], -1, dtype=np.int64)
    rows = np.flatnonzero(net >= 0)
    if not rows.size:
        return out
    order = rows[np.lexsort((rows, net[rows], user[rows]))]
    began = np.where(new_net[order], ts[order], 0)
    group = np.r_[True, (user[order][1:] != user[order][:-1]) | (net[order][1:] != net[order][:-1])]
    began = np.where(group & ~new_net[order], ts[order], began)  # first row kept before our memory
    idx = np.maximum.accumulate(np.where(group | new_net[order], np.arange(order.size), 0))
    out[order] = ts[order] - began[idx]
    return out


def _net_switches(user: np.ndarray, net: np.ndarray, ts: np.ndarray, prev_same: np.ndarray,
                  age: np.ndarray) -> np.ndarray:
    """The first row of each clock hour in which the account was in two places at once.

    Two places at once is coming back to a network within the hour after
    another was used (A, B, A), where one of the two networks is new to the
    person this week; not someone who moved from the office to home (A, B),
    nor a phone they have used for weeks beside their desk.
    """
    rows = np.flatnonzero(net >= 0)
    out = np.zeros(user.shape[0], dtype=bool)
    if rows.size < 3:
        return out
    prev = np.empty_like(rows)
    prev[0] = -1
    prev[1:] = rows[:-1]
    ok = prev >= 0
    ok[1:] &= user[rows[1:]] == user[rows[:-1]]
    p = np.where(ok, prev, 0)
    back = ok & (net[p] != net[rows]) & (prev_same[rows] >= 0)
    back &= (ts[rows] - prev_same[rows] <= HOUR) & (ts[rows] - ts[p] <= HOUR)
    back &= (age[rows] < NEW_PLACE) | (age[p] < NEW_PLACE)
    hits = rows[back]
    if hits.size:
        bucket = ts[hits] // HOUR
        first = np.r_[True, (user[hits][1:] != user[hits][:-1]) | (bucket[1:] != bucket[:-1])]
        out[hits[first]] = True
    return out


def _new_accounts(table: EventTable, order: np.ndarray, user: np.ndarray, ts: np.ndarray,
                  action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, how many of its records the person had not touched in 30 days.

    Counted from ``meta.ids`` when the event has them; otherwise estimated as
    its records outside the person's book (``meta.outside_book``) when known,
    and not guessed at all without either (the exfiltration signals still see
    the volume). Returns (counted from ids, estimated); ``feature_matrix``
    saturates the estimated part so that it never exceeds the client base.
    """
    n = order.shape[0]
    lengths = table.id_ptr[order + 1] - table.id_ptr[order]
    lengths = np.where(np.isin(action, READS), lengths, 0)
    outside = table.outside[order]
    estimate = np.where(np.isin(action, READS) & (lengths == 0), np.maximum(outside, 0), 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(n, dtype=np.int64), estimate
    row = np.repeat(np.arange(n), lengths)
    starts = np.repeat(table.id_ptr[order] - np.concatenate(([0], np.cumsum(lengths)[:-1])),
                       lengths)
    ids = table.id_codes[starts + np.arange(total)]
    prev = _previous_same(user[row], ids, ts[row], valid=np.ones(total, dtype=bool))
    fresh = (prev < 0) | (ts[row] - prev >= LOOKBACK)
    return np.bincount(row[fresh], minlength=n), estimate


def _increments(table: EventTable, order: np.ndarray, action: np.ndarray, count: np.ndarray,
                counted: np.ndarray, off: np.ndarray, new_net: np.ndarray,
                switches: np.ndarray, new_ids: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    inc = np.zeros((action.shape[0], len(INCREMENTS)), dtype=np.int64, order="F")
    c = np.where(counted, count, 0)
    one = counted.astype(np.int64)
    inc[:, INC["events"]] = one
    inc[:, INC["views"]] = np.where(action == A["record.view"], c, 0)
    inc[:, INC["searches"]] = np.where(action == A["record.search"], one, 0)
    edits = np.isin(action, [A["record.update"], A["record.create"], A["record.delete"]])
    inc[:, INC["updates"]] = np.where(edits, c, 0)
    inc[:, INC["reports"]] = np.where(action == A["report.run"], c, 0)
    inc[:, INC["exports"]] = np.where(action == A["export"], one, 0)
    exfil = np.zeros_like(c)
    for name, code in EXFIL.items():
        inc[:, INC[name]] = np.where(action == code, c, 0)
        if name != "file_rows":  # a file seen leaving is usually an export leaving again
            exfil += inc[:, INC[name]]
    inc[:, INC["exfil_rows"]] = exfil
    reads = np.isin(action, READS) & counted
    touched = np.where(reads, c, 0)
    outside = table.outside[order]
    inc[:, INC["outside_rows"]] = np.where(reads & (outside > 0), np.minimum(outside, c), 0)
    inc[:, INC["outside_exfil"]] = np.where(exfil > 0, inc[:, INC["outside_rows"]], 0)
    inc[:, INC["new_accounts"]] = np.where(counted, new_ids[0] + new_ids[1], 0)
    inc[:, INC["unlisted_rows"]] = np.where(counted, new_ids[1], 0)
    inc[:, INC["touched_rows"]] = touched
    inc[:, INC["offhours_rows"]] = np.where(off, touched, 0)
    inc[:, INC["offhours_exfil"]] = np.where(off, exfil + inc[:, INC["file_rows"]], 0)
    inc[:, INC["newnet_rows"]] = np.where(new_net, touched, 0)
    inc[:, INC["ip_switches"]] = switches & counted
    inc[:, INC["card_removed"]] = np.where(action == A["card.removed"], one, 0)
    inc[:, INC["failed_logins"]] = np.where(action == A["login.failed"], one, 0)
    inc[:, INC["reassigned"]] = np.where(action == A["record.reassign"], c, 0)
    # A reassignment credits its receiver (derived row), not the manager who made it.
    giver = (action == A["record.reassign"]) & (table.target[order] >= 0)
    giver &= table.user[order] != table.target[order]
    inc[giver, INC["reassigned"]] = 0
    return inc


def _report_exports(user: np.ndarray, ts: np.ndarray, action: np.ndarray,
                    count: np.ndarray) -> np.ndarray:
    """Exports of a report the person ran in the previous ``REPORT_EXPORT`` seconds.

    Sending out figures one has just run is how reports are shared; such an
    export counts half, so only a large one still stands out.
    """
    report = action == A["report.run"]
    if not report.any():
        return np.zeros(user.shape[0], dtype=bool)
    stamp = np.where(report, ts + 1, 0)
    last = np.maximum.accumulate(user * _SHIFT + stamp) - user * _SHIFT
    size = np.where(report, count, 0)
    # the size of the latest report: carried forward from the row that set ``last``
    where = np.maximum.accumulate(np.where(report, np.arange(user.shape[0]), 0))
    latest = np.where(last > 0, size[where], 0)
    return (action == A["export"]) & (last > 0) & (ts - (last - 1) <= REPORT_EXPORT) & (
        count <= latest)


def _in_notice(user: np.ndarray, ts: np.ndarray, action: np.ndarray) -> np.ndarray:
    """True for rows within ``NOTICE_DAYS`` after the person's latest ``user.notice``."""
    notice = action == A["user.notice"]
    if not notice.any():
        return np.zeros(user.shape[0], dtype=bool)
    stamp = np.where(notice, ts + 1, 0)
    last = np.maximum.accumulate(user * _SHIFT + stamp) - user * _SHIFT
    return (last > 0) & (ts - (last - 1) <= NOTICE_DAYS * DAY)


def _first_seen(user: np.ndarray, ts: np.ndarray, profile: Profile) -> np.ndarray:
    n_users = int(user.max()) + 1 if user.size else 0
    first = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, user, ts)
    known = profile.first_seen[: min(n_users, profile.first_seen.shape[0])]
    has = known >= 0
    first[: known.shape[0]][has] = np.minimum(first[: known.shape[0]][has], known[has])
    return first[user]


def feature_matrix(rows: Rows, base_size: int, select: np.ndarray | None = None) -> np.ndarray:
    """Features and context of the rows (``select``: a mask or positions) as one matrix.

    This is what every detector takes as ``X``; its columns are ``COLUMNS``:
    first the window sums of increments ending at (and including) each row,
    then the context. ``peers_busy`` (the share of the person's peers who did
    the same in the last three days) needs other people's events and is
    filled in by the scorer.
    """
    if select is None:
        pick = np.arange(len(rows))
    elif select.dtype == bool:
        pick = np.flatnonzero(select)
    else:
        pick = select
    out = np.zeros((pick.size, len(COLUMNS)), dtype=np.float64, order="F")
    if not pick.size:
        return out
    key = rows.user * _SHIFT + rows.ts // HOUR
    starts = {w: np.searchsorted(key, key[pick] - (hours - 1), side="left")
              for w, hours in WINDOWS.items()}
    sums: dict[str, np.ndarray] = {}
    for k, (name, window) in enumerate(FEATURES):
        cs = sums.get(name)
        if cs is None:
            cs = sums[name] = np.concatenate(([0], np.cumsum(rows.inc[:, INC[name]])))
        np.subtract(cs[pick + 1], cs[starts[window]], out=out[:, k], casting="unsafe")
    context = (rows.user, rows.ts // DAY, rows.in_notice, rows.tenure_days, rows.off,
               rows.new_net, rows.action, rows.count)
    first = len(FEATURES)
    for k, column in enumerate(context):
        out[:, first + k] = column[pick]
    out[:, FEATURE_INDEX["base_size"]] = base_size
    _saturate_estimates(out, base_size)
    return out


def _saturate_estimates(out: np.ndarray, base_size: int) -> None:
    """New accounts estimated without ids, as a random draw from the client base.

    ``n`` records drawn from a base of ``N`` touch ``N (1 - exp(-n / N))``
    distinct accounts: never more than the base, however much is read.
    """
    if base_size <= 0:
        return
    for window in ("day", "week", "month"):
        new = out[:, FEATURE_INDEX[f"new_accounts_{window}"]]
        unlisted = out[:, FEATURE_INDEX[f"unlisted_rows_{window}"]]
        new -= unlisted
        new += base_size * -np.expm1(-unlisted / base_size)


def daily_table(rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Increments summed per person and UTC day: (users, days, sums[n, len(INCREMENTS)])."""
    day = rows.ts // DAY
    key = rows.user * _SHIFT + day
    uniq, inverse = np.unique(key, return_inverse=True)
    sums = np.zeros((uniq.size, len(INCREMENTS)), dtype=np.int64)
    np.add.at(sums, inverse, rows.inc)
    return uniq // _SHIFT, uniq % _SHIFT, sums


def hourly_table(rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Increments summed per person and clock hour: (users, hours, sums)."""
    hour = rows.ts // HOUR
    key = rows.user * _SHIFT + hour
    uniq, inverse = np.unique(key, return_inverse=True)
    sums = np.zeros((uniq.size, len(INCREMENTS)), dtype=np.int64)
    np.add.at(sums, inverse, rows.inc)
    return uniq // _SHIFT, uniq % _SHIFT, sums


def networks(ip_names: list[str], known: dict[str, int] | None = None) -> np.ndarray:
    """The network of each address: an IPv4 /16 or an IPv6 /48, as a code."""
    codes = known if known is not None else {}
    out = np.empty(len(ip_names), dtype=np.int64)
    for i, address in enumerate(ip_names):
        v6 = ":" in address
        net = (":" if v6 else ".").join(address.split(":" if v6 else ".")[:3 if v6 else 2])
        out[i] = codes.setdefault(net, len(codes))
    return out
