"""Fixed policy rules, in the style of transaction-security policies.

Each rule is a threshold an administrator would set ("export above 500 rows",
"two places at once"), the same for everyone. They are easy to explain and to
audit, blind to what is normal for a person, and they are one part of the
final risk score (``dlp.detectors.LeakDetector``) and a baseline of their own
(``RuleDetector``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator

from dlp.features import FEATURE_INDEX


@dataclass(frozen=True)
class Rule:
    """``feature`` above ``limit`` (optionally only in a notice period) fires the rule."""

    name: str
    feature: str
    limit: float
    risk: float
    scenario: str
    notice_only: bool = False


#: The default policy; limits are per person over the window the feature names.
POLICY: tuple[Rule, ...] = (
    Rule("export above 500 rows in a day", "export_rows_day", 500, 0.8, "bulk-export"),
    Rule("print above 150 rows in a day", "print_rows_day", 150, 0.7, "print"),
    Rule("copy of more than 60 records in a day", "copy_rows_day", 60, 0.7, "copy"),
    Rule("API read above 5000 rows in a day", "api_rows_day", 5000, 0.7, "api-scrape"),
    Rule("more than 100 records sent outside in a day", "file_rows_day", 100, 0.6, "file-external"),
    Rule("off-hours reads above 100 records", "offhours_rows_day", 100, 0.6, "off-hours"),
    Rule("export during notice period", "exfil_rows_day", 50, 0.9, "notice-export",
         notice_only=True),
    Rule("more than 200 records outside own book in a day", "outside_rows_day", 200, 0.6,
         "outside-book"),
    Rule("more than 300 accounts new to the person in a day", "new_accounts_day", 300, 0.6,
         "coverage"),
    Rule("two places at once", "ip_switches_day", 3, 0.7, "shared-credentials"),
)


class RuleDetector(BaseEstimator):
    """Fires fixed rules; ``score_samples`` is the highest risk of the rules an event fires.

    Parameters
    ----------
    policy : the rules to apply (default ``POLICY``).
    threshold : the risk at and above which ``predict`` says 1 (alert).
    """

    def __init__(self, policy: tuple[Rule, ...] = POLICY, threshold: float = 0.5) -> None:
        self.policy = policy
        self.threshold = threshold

    def fit(self, X: np.ndarray, y: object = None,  # noqa: N803 - sklearn API
            groups: np.ndarray | None = None) -> RuleDetector:
        """Rules learn nothing; this records the columns they read and checks ``X``.

        ``groups`` (peer groups) is accepted for a uniform interface and ignored.
        """
        if X.ndim != 2:
            raise ValueError("X must be a 2-D feature matrix (see dlp.features)")
        self.columns_ = np.array([FEATURE_INDEX[rule.feature] for rule in self.policy])
        self.n_features_in_ = X.shape[1]
        return self

    def fired(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """A boolean matrix: event x rule."""
        values = X[:, self.columns_]
        limits = np.array([rule.limit for rule in self.policy])
        hit = values > limits
        notice = X[:, FEATURE_INDEX["in_notice"]] > 0
        for k, rule in enumerate(self.policy):
            if rule.notice_only:
                hit[:, k] &= notice
        return hit

    def score_samples(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        hit = self.fired(X)
        risks = np.array([rule.risk for rule in self.policy])
        return np.where(hit, risks, 0.0).max(axis=1, initial=0.0)

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return (self.score_samples(X) >= self.threshold).astype(np.int64)
