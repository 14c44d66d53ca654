"""From events to alerts: the scorer the appliance runs and ``dlp replay`` uses.

``LeakScorer.fit`` learns everything from historical events (usual hours,
each person's and each peer group's normal, the client base's size).
``LeakScorer.feed`` then takes new events in order, any number at a time, and
returns the alerts they opened or extended. ``dlp replay`` feeds a whole file
at once; the live appliance feeds the audit log as it grows. It is one code
path, so both give the same alerts.

An alert is one incident of one person: it opens on the first event whose
risk reaches the detector's threshold, and every later risky event of that
person joins it (its evidence events, and its score if higher) instead of
raising another alert when it comes within ``incident_hours`` of the previous
one or rests on evidence the alert already lists.

The scorer keeps only what the features need: each person's last 31 days of
events (notices and reassignments for 90 days). ``save`` and ``load`` persist a
fitted scorer with a format version.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from dlp import explain
from dlp.detectors import LeakDetector
from dlp.events import (
    ACTION_CODE,
    EventTable,
    InputReport,
    Vocabulary,
    empty_table,
    iso,
    table_from_dicts,
)
from dlp.features import (
    DAY,
    FEATURE_INDEX,
    HOUR,
    INC,
    MEMORY,
    NOTICE_DAYS,
    WINDOWS,
    Profile,
    Rows,
    feature_matrix,
    fit_profile,
    networks,
    prepare,
)

MODEL_FORMAT = "citadel-dlp-model"
MODEL_VERSION = 1
MAX_EVIDENCE = 1000
BUSY_SECONDS = 3 * DAY
ESCALATION = 0.1  # a score this much above an incident's opens a new one
FOLD_ROWS = 50_000  # fed events kept unsorted until they are folded into the sorted base
KEEP_LONG = (ACTION_CODE["user.notice"], ACTION_CODE["record.reassign"])


class ModelError(Exception):
    """A saved model cannot be used (wrong file or version)."""


@dataclass
class Incident:
    """One open or closed alert of one person."""

    user: str
    ts: int
    last_ts: int
    score: float
    scenario: str
    reasons: list[str]
    events: set[int] = field(default_factory=set)

    @property
    def key(self) -> str:
        """Stable identity of the alert while it grows: person and opening time."""
        return f"{self.user}@{iso(self.ts)}"

    def as_alert(self) -> dict[str, Any]:
        """The alert in DESIGN.md's shape."""
        return {"user": self.user, "ts": iso(self.ts), "score": round(self.score, 2),
                "severity": explain.severity(self.score), "scenario": self.scenario,
                "reasons": list(self.reasons), "events": sorted(self.events)}


@dataclass
class FeedResult:
    """What one ``feed`` produced: alerts opened or grown, and the input's oddities."""

    alerts: list[Incident]
    report: InputReport
    scored: int


class LeakScorer:
    """Fitted from history, then fed events in order; returns alerts as they happen.

    Parameters
    ----------
    detector : the estimator that turns features into a risk (default ``LeakDetector()``;
        ``RuleDetector`` and ``IsolationForestDetector`` work too, for comparison).
    incident_hours : how long after a person's last risky event further risky
        events still belong to the same alert.
    """

    def __init__(self, detector: Any = None, incident_hours: float = 24.0) -> None:
        self.detector = detector if detector is not None else LeakDetector()
        self.incident_hours = incident_hours
        self.vocab = Vocabulary()
        self.profile: Profile | None = None
        self.net_codes: dict[str, int] = {}
        self.net_of_ip = np.zeros(0, dtype=np.int64)
        self.base = empty_table()  # kept events, sorted by person then line
        self.given = np.zeros(0, dtype=np.int64)  # rows of ``base`` that reassign records
        self.recent = empty_table()  # fed since ``base`` was last folded
        self.open: dict[str, Incident] = {}
        self.incidents: list[Incident] = []
        self.busy: dict[int, dict[int, int]] = {}  # peer group -> person -> last busy time
        self.next_line = 0
        self.latest = 0  # the latest event time seen

    # -- learning ---------------------------------------------------------------

    def fit(self, table: EventTable, vocab: Vocabulary | None = None) -> LeakScorer:
        """Learn from ``table`` (events before the cut-off), read with ``vocab``."""
        if vocab is not None:
            self.vocab = vocab
        self.profile = fit_profile(table, len(self.vocab.user_names), self._networks())
        rows = prepare(table, self.profile, self._networks())
        self._fit_rows(rows, rows.event)
        self._remember_all(table)
        return self

    def fit_and_feed(self, past: EventTable, future: EventTable, vocab: Vocabulary,
                     report: InputReport | None = None) -> FeedResult:
        """``fit(past)`` then ``feed_table(future)``, computing every feature only once.

        The same result as the two calls (the tests compare them); what replay uses.
        """
        self.vocab = vocab
        self.profile = fit_profile(past, len(vocab.user_names), self._networks())
        combined = EventTable.concat([past, future])
        rows = prepare(combined, self.profile, self._networks())
        self._fit_rows(rows, rows.event & (rows.pos < len(past)))
        self.next_line = int(past.line.max()) + 1 if len(past) else 0
        result = self._score_rows(rows, rows.event & (rows.pos >= len(past)),
                                  report or InputReport())
        self._remember_all(combined)
        self.next_line = max(self.next_line, int(combined.line.max()) + 1)
        return result

    def _fit_rows(self, rows: Rows, select: np.ndarray) -> None:
        assert self.profile is not None  # noqa: S101 - set by the caller
        x = feature_matrix(rows, self.profile.base_size, select=select)
        self.detector.fit(x, groups=self._roles())

    def _remember_all(self, table: EventTable) -> None:
        """Start the memory of recent events afresh from ``table``."""
        self.base, self.recent = empty_table(), table
        self.latest = int(table.ts.max()) if len(table) else 0
        self._prune()
        self.next_line = max(self.next_line, int(table.line.max()) + 1 if len(table) else 0)

    def _roles(self) -> np.ndarray:
        """Peer groups from ``meta.role`` where events carried it (-1: unknown)."""
        names = sorted(set(self.vocab.roles.values()))
        code = {name: k for k, name in enumerate(names)}
        out = np.full(len(self.vocab.user_names), -1, dtype=np.int64)
        for user, role in self.vocab.roles.items():
            out[user] = code[role]
        return out

    def _networks(self) -> np.ndarray:
        known = self.net_of_ip.shape[0]
        names = self.vocab.ip_names
        if known < len(names):
            extra = networks(names[known:], self.net_codes)
            self.net_of_ip = np.concatenate([self.net_of_ip, extra])
        return self.net_of_ip

    # -- scoring ----------------------------------------------------------------

    def feed(self, events: Iterable[dict[str, Any]], lines: Iterable[int] | None = None,
             ) -> FeedResult:
        """Score new events (decoded dicts, in order); ``lines``: their numbers or sequence.

        Without ``lines``, events are numbered on from the last one seen.
        """
        table, report = table_from_dicts(events, self.vocab, first_line=self.next_line,
                                         lines=lines)
        return self.feed_table(table, report)

    def feed_table(self, table: EventTable, report: InputReport | None = None) -> FeedResult:
        """Score an already parsed table of new events (the replay path)."""
        if self.profile is None:
            raise ModelError("the scorer is not fitted: fit it on historical events first")
        report = report or InputReport()
        if not len(table):
            return FeedResult([], report, 0)
        self._grow_people()
        history = self._history_for(table)
        combined = EventTable.concat([history, table])
        rows = prepare(combined, self.profile, self._networks())
        result = self._score_rows(rows, rows.event & (rows.pos >= len(history)), report)
        self._remember(table)
        self.next_line = max(self.next_line, int(table.line.max()) + 1)
        return result

    def _score_rows(self, rows: Rows, select: np.ndarray, report: InputReport) -> FeedResult:
        """Score the selected rows and turn the risky ones into incidents."""
        assert self.profile is not None  # noqa: S101 - checked by the callers
        report.out_of_order += int(rows.late[select].sum())
        report.flooded_beacons += int(rows.flooded[select].sum())
        x = feature_matrix(rows, self.profile.base_size, select=select)
        scored = np.flatnonzero(select)
        if isinstance(self.detector, LeakDetector):
            surprise = self.detector.baseline_.surprise(x)
            self._peers_busy(rows, scored, x, self.detector.exfil_surprise(x, surprise))
            risk = self.detector.risk(x, surprise)
        else:
            risk = self.detector.score_samples(x)
        touched = self._incidents(rows, scored, x, risk)
        return FeedResult(touched, report, int(select.sum()))

    def _grow_people(self) -> None:
        """People first seen after fitting get 'first seen' slots (filled by prepare)."""
        assert self.profile is not None  # noqa: S101 - checked by the caller
        n = len(self.vocab.user_names)
        first = self.profile.first_seen
        if first.shape[0] < n:
            self.profile.first_seen = np.concatenate(
                [first, np.full(n - first.shape[0], -1, dtype=np.int64)])

    def _history_for(self, table: EventTable) -> EventTable:
        """The kept events of the people in ``table`` (and of whoever gave them records)."""
        people = np.unique(np.concatenate([table.user, table.target[table.target >= 0]]))
        base = self.base
        lo = np.searchsorted(base.user, people, side="left")
        hi = np.searchsorted(base.user, people, side="right")
        parts = [np.arange(a, b) for a, b in zip(lo, hi, strict=True) if b > a]
        given = self.given[np.isin(base.target[self.given], people)]
        index = np.unique(np.concatenate([*parts, given])) if parts or given.size else given
        recent = self.recent
        mine = np.isin(recent.user, people) | np.isin(recent.target, people)
        if not mine.any():
            return base.take(index)
        return EventTable.concat([base.take(index), recent.take(mine)])

    def _remember(self, table: EventTable) -> None:
        """Keep ``table`` for later features; now and then fold and prune what is kept."""
        self.recent = EventTable.concat([self.recent, table])
        self.latest = max(self.latest, int(table.ts.max()))
        if len(self.recent) >= FOLD_ROWS:
            self._prune()

    def _prune(self) -> None:
        """Forget what no feature can look back to any more; keep the rest sorted by person."""
        kept = EventTable.concat([self.base, self.recent])
        self._remember_first_seen(kept)
        recent = kept.ts >= self.latest - MEMORY
        long = np.isin(kept.action, KEEP_LONG) & (kept.ts >= self.latest - NOTICE_DAYS * DAY)
        keep = np.flatnonzero(recent | long)
        keep = keep[np.lexsort((kept.line[keep], kept.user[keep]))]
        self.base = kept.take(keep)
        self.given = np.flatnonzero(self.base.target >= 0)
        self.recent = empty_table()

    def _remember_first_seen(self, kept: EventTable) -> None:
        assert self.profile is not None  # noqa: S101
        self._grow_people()
        first = self.profile.first_seen
        unknown = first[kept.user] < 0
        if unknown.any():
            users, ts = kept.user[unknown], kept.ts[unknown]
            earliest = np.full(first.shape[0], np.iinfo(np.int64).max)
            np.minimum.at(earliest, users, ts)
            fill = (first < 0) & (earliest < np.iinfo(np.int64).max)
            first[fill] = earliest[fill]

    def _peers_busy(self, rows: Rows, scored: np.ndarray, x: np.ndarray,
                    exfil: np.ndarray) -> None:
        """Fill ``peers_busy``: the share of peers who took out twice their normal in 3 days."""
        elevated = np.flatnonzero(exfil >= 1.0)
        if not elevated.size:
            return
        elevated = elevated[np.argsort(rows.line[scored[elevated]], kind="stable")]
        groups = self.detector.baseline_.group_of(rows.user[scored[elevated]])
        column = FEATURE_INDEX["peers_busy"]
        sizes = self.detector.baseline_.group_sizes()
        for k, group in zip(elevated, groups, strict=True):
            i = int(scored[k])
            user, ts = int(rows.user[i]), int(rows.ts[i])
            recent = self.busy.setdefault(int(group), {})
            busy = sum(1 for who, when in recent.items()
                       if who != user and when > ts - BUSY_SECONDS)
            x[k, column] = busy / max(1, sizes.get(int(group), 1) - 1)
            recent[user] = ts

    # -- incidents ---------------------------------------------------------------

    def _incidents(self, rows: Rows, scored: np.ndarray, x: np.ndarray,
                   risk: np.ndarray) -> list[Incident]:
        """Open or extend incidents with the risky rows, in the order events arrived."""
        hot = np.flatnonzero(risk >= self.detector.threshold)
        if not hot.size:
            return []
        hot = hot[np.argsort(rows.line[scored[hot]], kind="stable")]
        key = _hour_keys(rows)
        strongest = explain.evidence_features_many(self.detector, x[hot])
        touched: dict[str, tuple[Incident, int]] = {}
        for k, strong in zip(hot, strongest, strict=True):
            i = int(scored[k])
            name = self.vocab.user_names[int(rows.user[i])]
            ts, score = int(rows.ts[i]), float(risk[k])
            current = self.open.get(name)
            if current is not None and ts - current.last_ts <= self.incident_hours * HOUR:
                evidence = self._fed(rows, i, strong)
            else:
                evidence = self._evidence(rows, i, strong, key, x[k])
                if current is not None and not self._continues(current, score, evidence):
                    current = None
            if current is None:
                current = Incident(name, ts, ts, score, "", [])
                self.open[name] = current
                self.incidents.append(current)
                touched[current.key] = (current, k)
            elif score > current.score:
                current.score = score
                touched[current.key] = (current, k)
            else:
                touched.setdefault(current.key, (current, -1))
            current.last_ts = ts
            current.events.update(evidence)
            if len(current.events) > MAX_EVIDENCE:
                current.events = set(sorted(current.events)[-MAX_EVIDENCE:])
        for incident, peak in touched.values():
            if peak >= 0:  # the strongest event so far names the scenario and the reasons
                incident.scenario, incident.reasons = explain.describe(self.detector, x[peak])
        return [incident for incident, _peak in touched.values()]

    @staticmethod
    def _continues(incident: Incident, score: float, evidence: list[int]) -> bool:
        """Whether a risky event long after an incident's last one still belongs to it.

        It does when it rests on evidence the incident already lists (a 30-day
        window still holding last week's exports) without being clearly worse.
        """
        return score <= incident.score + ESCALATION and not incident.events.isdisjoint(evidence)

    @staticmethod
    def _fed(rows: Rows, i: int, strong: list[str]) -> list[int]:
        """Row ``i``'s own line, if it fed one of its strongest signals."""
        columns = [INC[feature.rsplit("_", 1)[0]] for feature in strong]
        return [int(rows.line[i])] if (rows.inc[i, columns] > 0).any() else []

    @staticmethod
    def _evidence(rows: Rows, i: int, strong: list[str], key: np.ndarray,
                  x: np.ndarray) -> list[int]:
        """The events behind row ``i``'s strongest signals: the ones that fed their windows."""
        lines = [int(rows.line[i])]
        for feature in strong:
            name, window = feature.rsplit("_", 1)
            first = np.searchsorted(key, key[i] - (WINDOWS[window] - 1), side="left")
            part = slice(int(first), i + 1)
            fed = (rows.inc[part, INC[name]] > 0) & rows.event[part]
            lines.extend(rows.line[part][fed].tolist())
        if x[FEATURE_INDEX["in_notice"]] > 0:
            user, j = rows.user[i], i
            while j >= 0 and rows.user[j] == user:
                if rows.action[j] == ACTION_CODE["user.notice"]:
                    lines.append(int(rows.line[j]))
                    break
                j -= 1
        return lines

    def alerts(self) -> list[dict[str, Any]]:
        """Every incident opened so far, as alerts, in the order they opened."""
        return [inc.as_alert() for inc in sorted(self.incidents, key=_opened)]

    # -- persistence ---------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the fitted scorer (and its memory of recent events) to ``path``, with the
        scikit-learn version it was fitted with: another version may read it differently."""
        joblib.dump({"format": MODEL_FORMAT, "version": MODEL_VERSION, "sklearn": sklearn.__version__,
                     "scorer": self}, path)

    @staticmethod
    def load(path: str | Path) -> LeakScorer:
        """Read a scorer written by ``save``; refuses other files and versions, and a model
        fitted with another scikit-learn than the one installed."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", InconsistentVersionWarning)
                data = joblib.load(path)
        except InconsistentVersionWarning as exc:
            raise ModelError(_other_sklearn(path, exc.original_sklearn_version)) from None
        except Exception as exc:  # joblib raises many types for a foreign file
            raise ModelError(f"{path} is not a saved DLP model ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ModelError(f"{path} is not a saved DLP model")
        if data.get("version") != MODEL_VERSION:
            raise ModelError(f"{path} is a version {data.get('version')} DLP model; this "
                             f"appliance reads version {MODEL_VERSION}: fit a new one")
        if data.get("sklearn") != sklearn.__version__:
            raise ModelError(_other_sklearn(path, data.get("sklearn") or "an unrecorded version"))
        return data["scorer"]


def _other_sklearn(path: str | Path, fitted_with: str) -> str:
    return (f"{path} was fitted with scikit-learn {fitted_with}, but this appliance runs scikit-learn "
            f"{sklearn.__version__}, which may read it wrongly: fit a new model "
            "(the worker does so on its own; `appliance dlp replay` fits one per run)")


def _hour_keys(rows: Rows) -> np.ndarray:
    """Sorted keys (person, clock hour) of the rows, to find where a window starts."""
    return rows.user * (np.int64(1) << np.int64(34)) + rows.ts // HOUR


def _opened(incident: Incident) -> tuple[int, str]:
    return incident.ts, incident.user
