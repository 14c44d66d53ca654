"""Alerts in words: which features made an event risky, against whose normal.

A reason names the amount, the window, and how it compares with the person's
own normal high and their peers' ("exported 412 records in 24 hours: 40x their
usual high of 10, 9x their peers'"). Rules that fired and the notice period
are stated as facts.
"""

from __future__ import annotations

import numpy as np

from dlp.detectors import KINDS, SIGNALS, IsolationForestDetector, LeakDetector
from dlp.features import FEATURE_INDEX as IX
from dlp.rules import RuleDetector

WHAT: dict[str, str] = {
    "exfil_rows": "took {n} records out (export, print, copy, API)",
    "export_rows": "exported {n} records",
    "print_rows": "printed {n} records",
    "copy_rows": "copied {n} records",
    "api_rows": "read {n} records through the API",
    "file_rows": "sent {n} records to removable media or an outside share",
    "offhours_exfil": "took {n} records out outside their usual hours",
    "offhours_rows": "touched {n} records outside their usual hours",
    "views": "viewed {n} records",
    "outside_rows": "touched {n} records outside their own book",
    "outside_exfil": "took {n} records outside their own book out",
    "new_accounts": "touched {n} accounts they had not touched in the previous 30 days",
    "searches": "ran {n} searches",
    "newnet_rows": "touched {n} records from a network they had not used in 30 days",
    "ip_switches": "switched {n} times back and forth between two networks within the hour",
    "failed_logins": "failed to log in {n} times",
}
WHEN = {"hour": "in the hour", "day": "in 24 hours", "week": "in 7 days", "month": "in 30 days"}

#: The scenario an alert is filed under, by the signal that weighed most.
SCENARIO = {
    "export_rows": "bulk-export", "print_rows": "print", "copy_rows": "copy",
    "api_rows": "api-scrape", "file_rows": "file-external", "offhours_exfil": "off-hours",
    "offhours_rows": "off-hours", "views": "reconnaissance", "outside_rows": "reconnaissance",
    "new_accounts": "coverage", "outside_exfil": "bulk-export", "searches": "reconnaissance",
    "newnet_rows": "new-place",
    "ip_switches": "shared-credentials", "failed_logins": "access",
}
EXFIL_PARTS = ("export_rows", "print_rows", "copy_rows", "api_rows", "file_rows")


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _times(value: float, normal: float) -> str:
    ratio = value / normal
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def signal_reason(detector: LeakDetector, x: np.ndarray, k: int) -> str:
    """One signal of one event (row ``x`` of a feature matrix) in words."""
    base = detector.baseline_
    signal = base.signals[k]
    name, window = signal.feature.rsplit("_", 1)
    value = float(x[IX[signal.feature]])
    user = int(x[IX["user"]])
    text = WHAT[name].format(n=_num(value)) + " " + WHEN[window]
    if name == "new_accounts" and window == "month" and x[IX["base_size"]] > 0:
        share = 100.0 * value / float(x[IX["base_size"]])
        text += f" ({share:.0f}% of the client base)"
    normal = float(base.normal_[user, k]) if user < base.normal_.shape[0] else 0.0
    known = user < base.days_.shape[0] and base.days_[user, k] >= base.min_days
    group = int(base.groups_[user]) if user < base.groups_.shape[0] else -1
    peer = float(base.peer_[group, k])
    parts = []
    if known and normal >= 1:
        parts.append(f"{_times(value, normal)} their usual high of {_num(normal)}")
    elif known:
        parts.append("they normally do none")
    else:
        parts.append("no history of their own yet")
    if peer >= 1:
        parts.append(f"{_times(value, peer)} their peers'")
    elif value > 0:
        parts.append("their peers normally do none")
    return f"{text}: {', '.join(parts)}"


def reasons(detector: LeakDetector, x: np.ndarray, limit: int = 3) -> list[str]:
    """Why this event is risky, strongest first: signals, then context and rules."""
    s, fired = detector.contributions(x[None, :])
    s, fired = s[0], fired[0]
    out = []
    for k in np.argsort(-s, kind="stable")[:limit]:
        if s[k] < 0.5:
            break
        out.append(signal_reason(detector, x, int(k)))
    if x[IX["in_notice"]] > 0:
        out.append("in their notice period")
    if x[IX["reassigned_month"]] > 0:
        out.append(f"{_num(float(x[IX['reassigned_month']]))} records were reassigned to "
                   "them in 30 days (allowed for)")
    for k, rule in enumerate(detector.rules_.policy):
        if fired[k]:
            out.append(f"policy: {rule.name}")
    return out or ["unusual activity for this person"]


def top_signal(detector: LeakDetector, x: np.ndarray) -> int:
    """The signal that weighed most for this event."""
    s, _fired = detector.contributions(x[None, :])
    return int(np.argmax(s[0]))


def scenario(detector: LeakDetector, x: np.ndarray) -> str:
    """The kind of leak this looks like, for the alert's ``scenario``."""
    k = top_signal(detector, x)
    signal = detector.baseline_.signals[k]
    name, window = signal.feature.rsplit("_", 1)
    if signal.kind == KINDS[0] and window in ("week", "month"):
        return "slow-drip"
    if name in ("exfil_rows", "outside_exfil"):
        parts = {p: float(x[IX[f"{p}_day"]]) for p in EXFIL_PARTS}
        name = max(parts, key=parts.__getitem__)
    if x[IX["in_notice"]] > 0 and signal.kind == KINDS[0]:
        return "notice-" + SCENARIO[name]
    return SCENARIO[name]


def severity(score: float) -> str:
    """``high`` from 0.8, ``medium`` from 0.65, else ``low``."""
    if score >= 0.8:
        return "high"
    if score >= 0.65:
        return "medium"
    return "low"


def describe(detector: object, x: np.ndarray) -> tuple[str, list[str]]:
    """The scenario and the reasons of an event, from whichever detector scored it."""
    if isinstance(detector, LeakDetector):
        return scenario(detector, x), reasons(detector, x)
    if isinstance(detector, RuleDetector):
        fired = detector.fired(x[None, :])[0]
        rules = [rule for rule, hit in zip(detector.policy, fired, strict=True) if hit]
        if not rules:
            return "policy", ["no rule fired"]
        top = max(rules, key=lambda rule: rule.risk)
        return top.scenario, [f"policy: {rule.name} ({_num(float(x[IX[rule.feature]]))})"
                              for rule in rules]
    if isinstance(detector, IsolationForestDetector):
        names = forest_features(detector, x)
        return "anomaly", ["isolation forest: unusual " + ", ".join(
            f"{name} ({_num(float(x[IX[name]]))})" for name in names)]
    return "anomaly", ["unusual activity"]


def evidence_features(detector: object, x: np.ndarray) -> list[str]:
    """The features whose contributing events are an alert's evidence."""
    if isinstance(detector, LeakDetector):
        s, _fired = detector.contributions(x[None, :])
        order = np.argsort(-s[0], kind="stable")[:3]
        return [detector.baseline_.signals[k].feature for k in order if s[0, k] >= 0.5]
    if isinstance(detector, RuleDetector):
        fired = detector.fired(x[None, :])[0]
        return [rule.feature for rule, hit in zip(detector.policy, fired, strict=True) if hit]
    if isinstance(detector, IsolationForestDetector):
        return forest_features(detector, x)
    return []


def evidence_features_many(detector: object, x: np.ndarray) -> list[list[str]]:
    """``evidence_features`` of many rows at once."""
    if not isinstance(detector, LeakDetector):
        return [evidence_features(detector, row) for row in x]
    s, _fired = detector.contributions(x)
    order = np.argsort(-s, axis=1, kind="stable")[:, :3]
    signals = detector.baseline_.signals
    return [[signals[k].feature for k in row if s[j, k] >= 0.5] for j, row in enumerate(order)]


def forest_features(detector: IsolationForestDetector, x: np.ndarray) -> list[str]:
    """The two signals furthest above the person's median day."""
    inputs = detector._inputs(x[None, :])[0]  # noqa: SLF001 - same module family
    relative = inputs[len(detector.columns_):]
    order = np.argsort(-relative, kind="stable")[:2]
    return [SIGNALS[k].feature for k in order if relative[k] > 0]
