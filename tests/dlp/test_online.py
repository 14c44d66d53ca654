"""The online scorer: the same alerts as replay however events arrive; persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from dlp.events import Vocabulary, parse_lines, parse_time
from dlp.scoring import LeakScorer, ModelError


def fitted(org) -> tuple[LeakScorer, list[int], list[dict]]:
    objs = [orjson.loads(raw) for raw in org.lines]
    train = [k for k, o in enumerate(objs) if parse_time(o["ts"]) < org.cut]
    test = [k for k, o in enumerate(objs) if parse_time(o["ts"]) >= org.cut]
    assert train == list(range(len(train)))  # the simulator writes in time order
    vocab = Vocabulary()
    table, _report = parse_lines(org.lines[: len(train)], vocab)
    return LeakScorer().fit(table, vocab), test, objs


def test_online_alerts_equal_replay_alerts(org) -> None:
    scorer, test, objs = fitted(org)
    rng = np.random.default_rng(1)
    k, opened = 0, []
    while k < len(test):
        size = 1 if k < 100 else int(rng.integers(1, 2000))  # single events, then batches
        batch = test[k:k + size]
        k += size
        result = scorer.feed([objs[i] for i in batch], lines=batch)
        opened.extend(inc.key for inc in result.alerts)
    assert scorer.alerts() == org.result.alerts
    assert {a["user"] for a in org.result.alerts} <= {key.split("@")[0] for key in opened}


def test_an_alert_is_returned_by_the_event_that_crosses_the_line(org) -> None:
    scorer, test, objs = fitted(org)
    label = org.label("bulk-export")
    first_export = next(i for i in label["events"] if objs[i]["action"] == "export")
    start = test.index(label["events"][0]) - 50
    scorer.feed([objs[i] for i in test[:start]], lines=test[:start])
    for i in test[start:]:
        result = scorer.feed([objs[i]], lines=[i])
        if label["user"] in {inc.user for inc in result.alerts}:
            break
    assert i == first_export
    assert first_export in result.alerts[0].events


def test_saved_scorer_carries_on_where_it_stopped(org, tmp_path: Path) -> None:
    scorer, test, objs = fitted(org)
    half = len(test) // 2
    scorer.feed([objs[i] for i in test[:half]], lines=test[:half])
    path = tmp_path / "model.joblib"
    scorer.save(path)
    again = LeakScorer.load(path)
    again.feed([objs[i] for i in test[half:]], lines=test[half:])
    assert again.alerts() == org.result.alerts


def test_load_refuses_other_files_and_versions(tmp_path: Path) -> None:
    import joblib

    junk = tmp_path / "junk"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a saved DLP model"):
        LeakScorer.load(junk)
    old = tmp_path / "old"
    joblib.dump({"format": "citadel-dlp-model", "version": 0, "scorer": None}, old)
    with pytest.raises(ModelError, match="fit a new one"):
        LeakScorer.load(old)


def test_load_refuses_a_model_fitted_with_another_scikit_learn(tmp_path: Path) -> None:
    import joblib
    import sklearn

    other = tmp_path / "other"
    joblib.dump({"format": "citadel-dlp-model", "version": 1, "sklearn": "0.0.1", "scorer": None}, other)
    with pytest.raises(ModelError, match=r"fitted with scikit-learn 0\.0\.1.*runs scikit-learn "
                       + sklearn.__version__.replace(".", r"\.")):
        LeakScorer.load(other)
    unrecorded = tmp_path / "unrecorded"
    joblib.dump({"format": "citadel-dlp-model", "version": 1, "scorer": None}, unrecorded)
    with pytest.raises(ModelError, match="an unrecorded version"):
        LeakScorer.load(unrecorded)


def test_feeding_an_unfitted_scorer_says_what_to_do() -> None:
    with pytest.raises(ModelError, match="fit it"):
        LeakScorer().feed([{"ts": "2026-03-02T09:00:00Z", "user": "ann", "action": "login"}])
