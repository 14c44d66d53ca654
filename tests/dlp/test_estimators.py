"""Detectors follow scikit-learn's estimator conventions and need no ``meta``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from dlp.detectors import BaselineDetector, IsolationForestDetector, LeakDetector
from dlp.events import Vocabulary, read_events
from dlp.features import COLUMNS, feature_matrix, fit_profile, networks, prepare
from dlp.replay import replay
from dlp.rules import RuleDetector
from dlp.scenarios import evaluate

DETECTORS = [RuleDetector, BaselineDetector, IsolationForestDetector, LeakDetector]


@pytest.fixture(scope="module")
def matrices(org) -> tuple[np.ndarray, np.ndarray]:
    vocab = Vocabulary()
    table, _ = read_events(org.events, vocab)
    profile = fit_profile(table.take(table.ts < org.cut), len(vocab.user_names))
    rows = prepare(table, profile, networks(vocab.ip_names))
    x = feature_matrix(rows, profile.base_size, select=rows.event)
    past = rows.ts[rows.event] < org.cut
    return x[past], x[~past]


@pytest.mark.parametrize("make", DETECTORS)
def test_estimator_conventions(make, matrices) -> None:
    train, test = matrices
    detector = make()
    assert set(detector.get_params()) == set(clone(detector).get_params())
    with pytest.raises(NotFittedError):
        check_is_fitted(detector)
    assert detector.fit(train) is detector
    check_is_fitted(detector)
    learned = [name for name in vars(detector) if name.endswith("_")]
    assert learned and detector.n_features_in_ == len(COLUMNS)
    risk = detector.score_samples(test)
    assert risk.shape == (len(test),) and np.all((risk >= 0) & (risk <= 1))
    assert set(np.unique(detector.predict(test))) <= {0, 1}
    assert np.array_equal(detector.predict(test), (risk >= detector.threshold).astype(int))


def test_cloned_detector_scores_the_same(matrices) -> None:
    train, test = matrices
    a = LeakDetector(random_state=3).fit(train)
    b = clone(a).fit(train)
    assert np.array_equal(a.score_samples(test), b.score_samples(test))


def test_detection_without_meta(org, tmp_path: Path) -> None:
    """Events with only DESIGN.md's fields (empty ``meta``) still give the leaks away."""
    bare = tmp_path / "bare.jsonl"
    with open(bare, "wb") as out:
        for raw in org.lines:
            event = orjson.loads(raw)
            event["meta"] = {}
            out.write(orjson.dumps(event) + b"\n")
    result = replay(bare, org.cut, None)
    cases, false = evaluate(result.alerts, org.labels, org.cut)
    insiders = [c for c in cases if c.must_alert]
    assert sum(c.alerted for c in insiders) >= len(insiders) - 1
    assert 100 * false / result.user_days <= 1.0
