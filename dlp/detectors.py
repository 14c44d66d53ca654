"""Detectors: how unusual an event's features are, as scikit-learn estimators.

Every detector takes a feature matrix ``X`` whose columns are
``dlp.features.COLUMNS`` (window features, then context such as the person's
code and day). ``fit`` learns from events before a cut-off and returns
``self``; learned attributes end in ``_``; ``score_samples`` returns a risk in
[0, 1] (higher is more suspicious); ``predict`` returns 1 for "raise an alert"
and 0 otherwise.

- ``BaselineDetector``: each person's own normal, learned as a high quantile
  of their daily peaks for every feature, shrunk towards their peer group's;
  an event's surprise is how many times (in doublings) it exceeds that normal.
- ``IsolationForestDetector``: an isolation forest over the same features,
  relative to each person's median day.
- ``LeakDetector``: the final model, the baseline's surprises combined with
  context (notice period, reassigned books, new staff) and the policy rules
  (``dlp.rules``) into one risk.

Peer groups come from ``meta.role`` when the events carry it, else from
clustering people's baseline profiles (k-means); they are never required.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.ensemble import IsolationForest

from dlp.features import FEATURE_INDEX as IX
from dlp.features import FEATURE_NAMES
from dlp.rules import POLICY, RuleDetector


@dataclass(frozen=True)
class Signal:
    """A feature the risk looks at: its weight, the smallest amount worth attention, its kind."""

    feature: str
    weight: float
    floor: float
    kind: str


#: The features the risk looks at. ``floor`` keeps handfuls of records from
#: ever being an incident; ``kind`` groups signals that say the same thing.
SIGNALS: tuple[Signal, ...] = (
    Signal("exfil_rows_day", 1.0, 20, "exfil"),
    Signal("export_rows_day", 1.0, 20, "exfil"),
    Signal("print_rows_day", 1.0, 10, "exfil"),
    Signal("copy_rows_day", 1.0, 10, "exfil"),
    Signal("api_rows_day", 1.0, 250, "exfil"),
    Signal("file_rows_day", 1.0, 20, "exfil"),
    Signal("exfil_rows_week", 1.0, 40, "exfil"),
    Signal("export_rows_week", 1.0, 40, "exfil"),
    Signal("print_rows_week", 1.0, 20, "exfil"),
    Signal("copy_rows_week", 1.0, 20, "exfil"),
    Signal("exfil_rows_month", 1.0, 80, "exfil"),
    Signal("outside_exfil_day", 1.0, 15, "exfil"),
    Signal("outside_exfil_week", 1.0, 30, "exfil"),
    Signal("outside_exfil_month", 1.0, 60, "exfil"),
    Signal("offhours_exfil_day", 1.0, 15, "offhours"),
    Signal("offhours_rows_day", 0.8, 40, "offhours"),
    Signal("offhours_rows_week", 0.8, 100, "offhours"),
    Signal("views_day", 0.5, 60, "recon"),
    Signal("outside_rows_day", 0.5, 40, "recon"),
    Signal("outside_rows_week", 0.5, 60, "recon"),
    Signal("new_accounts_day", 0.5, 40, "recon"),
    Signal("new_accounts_week", 0.5, 60, "recon"),
    Signal("new_accounts_month", 0.5, 100, "recon"),
    Signal("searches_day", 0.3, 40, "recon"),
    Signal("newnet_rows_day", 0.5, 40, "place"),
    Signal("ip_switches_day", 1.5, 0.5, "place"),
    Signal("failed_logins_day", 0.5, 5, "access"),
)
KINDS = ("exfil", "offhours", "recon", "place", "access")
#: Kinds whose normal grows with the records a person was just given.
GIVEN = ("exfil", "recon")

WINDOW_DAYS = {"hour": 0, "day": 1, "week": 7, "month": 30}


def _window_days(feature: str) -> int:
    return WINDOW_DAYS[feature.rsplit("_", 1)[1]]


def daily_peaks(X: np.ndarray, columns: np.ndarray,  # noqa: N803 - sklearn naming
                min_tenure: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per person and day, the highest value each column reached: (users, peaks).

    ``min_tenure`` gives each column's window in days: a person with less
    history than the window has their value scaled up to a full window, and
    one with less than a fifth of it does not count for that column.
    """
    user = X[:, IX["user"]].astype(np.int64)
    day = X[:, IX["day"]].astype(np.int64)
    key = user * 1_000_000 + day
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
    values = X[order][:, columns]
    if min_tenure is not None:
        # A window longer than the person's history holds only part of a
        # window: scale it up; too short a history (under a fifth) says nothing.
        tenure = np.maximum(X[order, IX["tenure_days"]][:, None], 1.0)
        span = min_tenure[None, :]
        values = np.where(tenure < span, values * span / tenure, values)
        values = np.where(tenure < np.maximum(1.0, span / 5), np.nan, values)
    if not len(key_sorted):  # no history yet (a new appliance): no days, no peaks
        return key_sorted // 1_000_000, values
    return key_sorted[starts] // 1_000_000, np.fmax.reduceat(values, starts, axis=0)


def _habits(X: np.ndarray, n_users: int) -> np.ndarray:  # noqa: N803
    """Each person's median day over every 24-hour feature: what their work looks like."""
    columns = np.array([k for k, name in enumerate(FEATURE_NAMES) if name.endswith("_day")])
    users, peaks = daily_peaks(X, columns)
    med, _days = _per_user_quantile(users, peaks, n_users, 0.5)
    return np.nan_to_num(med)


def _per_user_quantile(users: np.ndarray, peaks: np.ndarray, n_users: int,
                       q: float) -> tuple[np.ndarray, np.ndarray]:
    """Each person's ``q`` quantile of daily peaks (NaN days ignored), and days counted.

    Linear interpolation between order statistics, as ``numpy.nanquantile``.
    """
    ref = np.full((n_users, peaks.shape[1]), np.nan)
    days = np.zeros((n_users, peaks.shape[1]))
    if not len(users):
        return ref, days
    order = np.argsort(users, kind="stable")
    users, peaks = users[order], peaks[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    columns = np.arange(peaks.shape[1])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        block = np.sort(peaks[a:b], axis=0)  # NaN last
        counted = (~np.isnan(block)).sum(axis=0)
        days[users[a]] = counted
        position = q * np.maximum(counted - 1, 0)
        lo = np.floor(position).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(counted - 1, 0))
        low, high = block[lo, columns], block[hi, columns]
        value = low + (high - low) * (position - lo)
        ref[users[a]] = np.where(counted > 0, value, np.nan)
    return ref, days


class BaselineDetector(BaseEstimator):
    """Each person's normal and their peers', and how far an event goes beyond it.

    Parameters
    ----------
    quantile : which quantile of a person's daily peaks is "their normal high".
    prior_days : how many days of peer evidence a person's own baseline is
        blended with (fewer own days, more weight on peers).
    peer_floor : a person's normal is never below this share of their peers'.
    peak_share : nor below this share of the highest day they had.
    min_days : people with fewer baseline days than this use their peers' normal.
    scale : doublings of surprise that make a risk of 0.5 (the alert line).
    threshold : risk at and above which ``predict`` says 1.
    n_groups : peer groups to cluster into when no roles are given (0: automatic).
    signals : the features looked at (default ``SIGNALS``).
    random_state : seed of the clustering.
    """

    def __init__(self, quantile: float = 0.95, prior_days: float = 5.0, min_days: int = 5,
                 peer_floor: float = 0.5, peak_share: float = 0.5, scale: float = 2.5,
                 threshold: float = 0.5, n_groups: int = 0,
                 signals: tuple[Signal, ...] = SIGNALS, random_state: int = 0) -> None:
        self.quantile = quantile
        self.peak_share = peak_share
        self.prior_days = prior_days
        self.min_days = min_days
        self.peer_floor = peer_floor
        self.scale = scale
        self.threshold = threshold
        self.n_groups = n_groups
        self.signals = signals
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None,  # noqa: N803
            groups: np.ndarray | None = None) -> BaselineDetector:
        """Learn normals from ``X``; ``groups`` optionally gives each person's peer group.

        ``groups[u]`` is a non-negative group code for person ``u`` (for
        instance from ``meta.role``) or -1 when unknown.
        """
        self.columns_ = np.array([IX[s.feature] for s in self.signals])
        self.floors_ = np.array([s.floor for s in self.signals], dtype=float)
        self.weights_ = np.array([s.weight for s in self.signals], dtype=float)
        self.kinds_ = np.array([KINDS.index(s.kind) for s in self.signals])
        self.n_features_in_ = X.shape[1]
        n_users = int(X[:, IX["user"]].max()) + 1 if len(X) else 0
        tenure = np.array([max(1, _window_days(s.feature)) for s in self.signals], dtype=float)
        users, peaks = daily_peaks(X, self.columns_, tenure)
        own, days = _per_user_quantile(users, peaks, n_users, self.quantile)
        if self.peak_share > 0:  # a rare peak (month end) seen before is partly normal
            highest, _days = _per_user_quantile(users, peaks, n_users, 1.0)
            own = np.fmax(own, self.peak_share * highest)
        # A signal no one has enough history for cannot be judged yet.
        self.judged_ = (days >= self.min_days).any(axis=0) if n_users else \
            np.zeros(len(self.signals), dtype=bool)
        self.own_ = own
        self.days_ = days
        self.groups_ = self._peer_groups(_habits(X, n_users), days, groups, n_users)
        self.peer_ = self._peer_normals(own, days)
        self.peer_high_ = self._peer_normals(own, days, q=0.9)
        self.normal_ = self._blend(own, days)
        return self

    def _peer_groups(self, habits: np.ndarray, days: np.ndarray, groups: np.ndarray | None,
                     n_users: int) -> np.ndarray:
        """Roles when given for most people, else k-means over their median days."""
        if groups is not None and n_users and (groups[:n_users] >= 0).mean() >= 0.8:
            out = np.asarray(groups[:n_users], dtype=np.int64).copy()
            out[out < 0] = out.max() + 1
            return out
        active = days.max(axis=1) >= self.min_days if n_users else np.zeros(0, bool)
        if active.sum() < 4:
            return np.zeros(n_users, dtype=np.int64)
        profile = np.log1p(habits)
        spread = profile[active].std(axis=0)
        profile = (profile - profile[active].mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        k = self.n_groups or int(np.clip(round(np.sqrt(active.sum() / 4)), 2, 8))
        k = min(k, len(np.unique(profile[active].round(6), axis=0)))
        if k < 2:
            return np.zeros(n_users, dtype=np.int64)
        model = KMeans(n_clusters=k, n_init=4, random_state=self.random_state)
        model.fit(profile[active])
        return model.predict(profile).astype(np.int64)

    def _peer_normals(self, own: np.ndarray, days: np.ndarray,
                      q: float = 0.5) -> np.ndarray:
        """Each group's ``q`` quantile of its members' normals (last row: everyone's)."""
        n_groups = int(self.groups_.max()) + 1 if self.groups_.size else 0
        out = np.zeros((n_groups + 1, own.shape[1]))
        settled = days >= self.min_days
        for g in range(n_groups + 1):
            members = self.groups_ == g if g < n_groups else np.ones(own.shape[0], dtype=bool)
            vals = np.where(settled & members[:, None], own, np.nan)
            if np.isnan(vals).all():
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out[g] = np.nan_to_num(np.nanquantile(vals, q, axis=0), nan=0.0)
        return out

    def _blend(self, own: np.ndarray, days: np.ndarray) -> np.ndarray:
        """A person's normal: their own, shrunk towards peers, never below half the peers'.

        People without enough days of their own get the busier peers' normal
        (``peer_high_``): without evidence, assume they may be like any of them.
        """
        if not own.shape[0]:
            return own
        peer = self.peer_[self.groups_]
        mine = np.nan_to_num(own, nan=0.0)
        w = days / (days + self.prior_days)
        blended = np.maximum(w * mine + (1 - w) * peer, self.peer_floor * peer)
        return np.where(days >= self.min_days, blended,
                        np.maximum(blended, self.peer_high_[self.groups_]))

    def normals(self, X: np.ndarray, roles: np.ndarray | None = None) -> np.ndarray:  # noqa: N803
        """Each row's person's normal for every signal (peers' for people never seen)."""
        user = X[:, IX["user"]].astype(np.int64)
        known = user < self.normal_.shape[0]
        out = np.empty((len(X), len(self.signals)))
        out[known] = self.normal_[user[known]]
        out[~known] = self.peer_high_[-1]
        return out

    def group_sizes(self) -> dict[int, int]:
        """How many people each peer group has (-1: everyone)."""
        groups, counts = np.unique(self.groups_, return_counts=True)
        sizes = {int(g): int(c) for g, c in zip(groups, counts, strict=True)}
        sizes[-1] = int(self.groups_.size)
        return sizes

    def group_of(self, users: np.ndarray) -> np.ndarray:
        """Each person's peer group (people never seen: -1)."""
        users = np.asarray(users, dtype=np.int64)
        known = users < self.groups_.shape[0]
        return np.where(known, self.groups_[np.minimum(users, max(len(self.groups_) - 1, 0))],
                        -1) if self.groups_.size else np.full(users.shape, -1)

    def surprise(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Doublings beyond the person's normal, per signal, weighted (>= 0)."""
        normal = self.normals(X)
        normal += self.floors_
        given = X[:, IX["reassigned_month"]]
        if given.any():
            grows = np.isin(self.kinds_, [KINDS.index(k) for k in GIVEN])
            normal[:, grows] += given[:, None]
        s = X[:, self.columns_]
        s += self.floors_
        s /= normal
        np.log2(s, out=s)
        np.maximum(s, 0.0, out=s)
        s *= self.weights_ * self.judged_
        return s

    def evidence(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Surprise combined over signals: the strongest, plus half the strongest other kind."""
        s = self.surprise(X)
        return _top_two_kinds(s, self.kinds_)

    def score_samples(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return _risk(self.evidence(X), self.scale)

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return (self.score_samples(X) >= self.threshold).astype(np.int64)


def _top_two_kinds(s: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    per_kind = np.zeros((s.shape[0], len(KINDS)))
    for k in range(len(KINDS)):
        cols = kinds == k
        if cols.any():
            per_kind[:, k] = s[:, cols].max(axis=1)
    per_kind.sort(axis=1)
    return per_kind[:, -1] + 0.5 * per_kind[:, -2]


def _persistent(signals: tuple[Signal, ...], s: np.ndarray,
                exfil_cols: np.ndarray) -> np.ndarray:
    """How far both the 7-day and the 30-day exfiltration stay above normal.

    A drip shows in both windows at once; the weaker of the two is the
    corroboration it adds.
    """
    windows = np.array([sig.feature.rsplit("_", 1)[1] for sig in signals])
    week = s[:, exfil_cols & (windows == "week")].max(axis=1, initial=0.0)
    month = s[:, exfil_cols & (windows == "month")].max(axis=1, initial=0.0)
    return np.minimum(week, month)


def _risk(z: np.ndarray, scale: float) -> np.ndarray:
    """Evidence (doublings beyond normal) as a risk in [0, 1); ``scale`` doublings give 0.5."""
    return 1.0 - np.power(0.5, np.clip(z, 0.0, None) / scale)


def _evidence_of(risk: np.ndarray, scale: float) -> np.ndarray:
    """The evidence that ``_risk`` turns into ``risk`` (its inverse)."""
    return -scale * np.log2(1.0 - np.clip(risk, 0.0, 0.999))


class IsolationForestDetector(BaseEstimator):
    """An isolation forest over each person's days, relative to their median day.

    ``score_samples`` maps the forest's anomaly score to a risk so that the
    ``contamination`` share of baseline days score at or above 0.5.
    """

    def __init__(self, n_estimators: int = 100, contamination: float = 0.002,
                 threshold: float = 0.5, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.contamination = contamination
        self.threshold = threshold
        self.random_state = random_state

    def _inputs(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        user = X[:, IX["user"]].astype(np.int64)
        known = user < self.median_.shape[0]
        med = np.zeros((len(X), len(self.columns_)))
        med[known] = self.median_[user[known]]
        med[~known] = self.global_median_
        values = X[:, self.columns_]
        return np.hstack([np.log1p(values), np.log1p(values) - np.log1p(med)])

    def fit(self, X: np.ndarray, y: object = None,  # noqa: N803
            groups: np.ndarray | None = None) -> IsolationForestDetector:
        """Fit the forest on people's daily peaks; ``groups`` is accepted and ignored."""
        self.columns_ = np.array([IX[s.feature] for s in SIGNALS])
        self.n_features_in_ = X.shape[1]
        users, peaks = daily_peaks(X, self.columns_)
        peaks = np.nan_to_num(peaks)
        n_users = int(X[:, IX["user"]].max()) + 1 if len(X) else 0
        med, _days = _per_user_quantile(users, peaks, n_users, 0.5)
        self.median_ = np.nan_to_num(med)
        self.global_median_ = np.median(peaks, axis=0) if len(peaks) else np.zeros(
            len(self.columns_))
        days = np.zeros((len(users), self.n_features_in_))
        days[:, self.columns_] = peaks
        days[:, IX["user"]] = users
        inputs = self._inputs(days)
        self.forest_ = IsolationForest(n_estimators=self.n_estimators,
                                       random_state=self.random_state).fit(inputs)
        raw = -self.forest_.score_samples(inputs)
        self.cut_ = float(np.quantile(raw, 1 - self.contamination))
        self.spread_ = float(max(np.std(raw), 1e-6))
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        raw = -self.forest_.score_samples(self._inputs(X))
        return 1.0 / (1.0 + np.exp(-(raw - self.cut_) / (0.25 * self.spread_)))

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return (self.score_samples(X) >= self.threshold).astype(np.int64)


class LeakDetector(BaseEstimator):
    """The final model: personal and peer baselines, context and rules in one risk.

    Evidence is counted in doublings beyond a person's normal (see
    ``BaselineDetector``). Context adds to it: exfiltration beyond normal in a
    notice period (``notice_bonus``), rules that need no baseline (two places
    at once, policy limits a person has never come near). New staff
    (``new_days``) exploring the client base is expected, so their
    reconnaissance and new-network signals count for less.

    When at least the ``busy_peers`` share of a person's peers took out more
    than twice their own normal in the last three days (``peers_busy``), the organisation's
    calendar (quarter end, an audit) is the likelier cause: exfiltration and
    reconnaissance evidence counts half.

    Until any history exists (a new appliance), the policy rules decide alone.

    Parameters are the baseline's, plus ``notice_bonus``, ``rule_bonus``,
    ``new_days``, ``busy_peers`` and ``use_forest`` (add the isolation forest's
    opinion).
    """

    def __init__(self, quantile: float = 0.95, prior_days: float = 5.0, min_days: int = 5,
                 peer_floor: float = 0.5, peak_share: float = 0.5, scale: float = 2.5,
                 threshold: float = 0.5, n_groups: int = 0, notice_bonus: float = 2.0,
                 rule_bonus: float = 0.25,
                 new_days: float = 21.0, busy_peers: float = 0.2, persistence: float = 0.5,
                 use_forest: bool = False, random_state: int = 0) -> None:
        self.persistence = persistence
        self.quantile = quantile
        self.prior_days = prior_days
        self.min_days = min_days
        self.peer_floor = peer_floor
        self.peak_share = peak_share
        self.busy_peers = busy_peers
        self.scale = scale
        self.threshold = threshold
        self.n_groups = n_groups
        self.notice_bonus = notice_bonus
        self.rule_bonus = rule_bonus
        self.new_days = new_days
        self.use_forest = use_forest
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None,  # noqa: N803
            groups: np.ndarray | None = None) -> LeakDetector:
        self.baseline_ = BaselineDetector(
            quantile=self.quantile, prior_days=self.prior_days, min_days=self.min_days,
            peer_floor=self.peer_floor, peak_share=self.peak_share, scale=self.scale,
            n_groups=self.n_groups,
            random_state=self.random_state,
        ).fit(X, groups=groups)
        self.rules_ = RuleDetector(POLICY).fit(X)
        self.forest_ = (IsolationForestDetector(random_state=self.random_state).fit(X)
                        if self.use_forest else None)
        self.n_features_in_ = X.shape[1]
        return self

    def exfil_surprise(self, X: np.ndarray,  # noqa: N803
                       s: np.ndarray | None = None) -> np.ndarray:
        """The strongest exfiltration surprise of each row, before context."""
        s = self.baseline_.surprise(X) if s is None else s
        return s[:, self.baseline_.kinds_ == KINDS.index("exfil")].max(axis=1, initial=0.0)

    def contributions(self, X: np.ndarray,  # noqa: N803
                      s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-signal surprise after context, and per-rule firing: (signals, rules).

        ``s`` is the baseline's surprise for ``X`` when already computed.
        """
        s = self.baseline_.surprise(X) if s is None else s.copy()
        kinds = self.baseline_.kinds_
        newcomer = X[:, IX["tenure_days"]] < self.new_days
        soft = np.isin(kinds, [KINDS.index("recon"), KINDS.index("place")])
        s[np.ix_(newcomer, soft)] *= 0.25
        busy = X[:, IX["peers_busy"]] >= self.busy_peers
        seasonal = np.isin(kinds, [KINDS.index(k) for k in GIVEN])
        s[np.ix_(busy, seasonal)] *= 0.5
        return s, self.rules_.fired(X)

    def evidence(self, X: np.ndarray, s: np.ndarray | None = None) -> np.ndarray:  # noqa: N803
        """Evidence in doublings beyond normal, context and rules included."""
        s, fired = self.contributions(X, s)
        z = _top_two_kinds(s, self.baseline_.kinds_)
        exfil_cols = self.baseline_.kinds_ == KINDS.index("exfil")
        exfil = s[:, exfil_cols].max(axis=1, initial=0.0)
        z += self.persistence * _persistent(self.baseline_.signals, s, exfil_cols)
        notice = X[:, IX["in_notice"]] > 0
        z += np.where(notice, self.notice_bonus * np.clip(exfil, 0.0, 1.0), 0.0)
        z += self.rule_bonus * np.minimum(fired.sum(axis=1), 2) * (z > 0.5)
        if self.forest_ is not None:
            z += self.scale * np.clip(self.forest_.score_samples(X) - 0.5, 0.0, None)
        if not self.baseline_.judged_.any():  # a new appliance: no history to judge by yet,
            # so the policy limits decide alone (a 20,000-row export on day one still alerts)
            z = np.maximum(z, _evidence_of(self.rules_.score_samples(X), self.scale))
        return z

    def risk(self, X: np.ndarray, s: np.ndarray | None = None) -> np.ndarray:  # noqa: N803
        """``score_samples`` reusing an already computed baseline surprise ``s``."""
        return _risk(self.evidence(X, s), self.scale)

    def score_samples(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return _risk(self.evidence(X), self.scale)

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return (self.score_samples(X) >= self.threshold).astype(np.int64)
