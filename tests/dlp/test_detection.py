"""Detection on a simulated organisation: every insider found, look-alikes left alone."""

from __future__ import annotations

import pytest

from dlp.scenarios import BENIGN, INSIDER, evaluate

#: Words a reason must contain for each scenario: the feature that gave it away.
TELLS = {
    "bulk-export": ("export", "took"),
    "slow-drip": ("7 days", "30 days"),
    "print-lists": ("printed",),
    "copy-cards": ("copied",),
    "api-scrape": ("API",),
    "offhours-sweep": ("usual hours",),
    "shared-password": ("two networks",),
}


@pytest.mark.parametrize("scenario", INSIDER)
def test_every_insider_scenario_raises_an_alert_with_evidence(org, scenario: str) -> None:
    label = org.label(scenario)
    cases, _false = evaluate(org.result.alerts, [label], org.cut)
    assert cases and cases[0].alerted, f"{scenario} was not detected"
    alerts = [a for a in org.alerts_for(label["user"]) if set(a["events"]) & set(label["events"])]
    assert alerts, "the alert lists none of the case's events as evidence"
    text = " ".join(alerts[0]["reasons"])
    assert any(word in text for word in TELLS[scenario]), text


@pytest.mark.parametrize("scenario", BENIGN)
def test_benign_look_alikes_raise_no_alert(org, scenario: str) -> None:
    label = org.label(scenario)
    cases, _false = evaluate(org.result.alerts, [label], org.cut)
    assert cases and not cases[0].alerted, org.alerts_for(label["user"])


def test_few_false_alerts(org) -> None:
    _cases, false = evaluate(org.result.alerts, org.labels, org.cut)
    assert 100 * false / org.result.user_days <= 1.0


def test_detection_is_early(org) -> None:
    cases, _false = evaluate(org.result.alerts, org.labels, org.cut)
    burst = [c for c in cases if c.scenario in ("bulk-export", "api-scrape", "print-lists")]
    assert burst and all(c.delay is not None and c.delay <= 3600 for c in burst)


def test_reasons_compare_with_the_person_and_their_peers(org) -> None:
    label = org.label("print-lists")
    alert = org.alerts_for(label["user"])[0]
    assert "printed" in alert["reasons"][0]
    assert "their usual high" in alert["reasons"][0] or "normally do none" in alert["reasons"][0]
    assert "peers" in alert["reasons"][0]
    assert alert["severity"] in ("low", "medium", "high")
