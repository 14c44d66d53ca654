"""Leak monitoring.

Owns the sensors (server hooks, browser beacons, the host file sensor), the
features computed from the audit log, the detectors (rules and learned
baselines as scikit-learn estimators), alerts and their triage, export
watermarks and canaries, and the activity simulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Blueprint, Flask


def init_app(app: Flask, api: Blueprint) -> None:
    """Add leak monitoring to ``app``: the alert pages, the alerts and beacons under ``api``
    (``/api/v1``) and their OpenAPI part."""
    from appliance.kernel.openapi import add_fragment
    from dlp import api as alerts_api
    from dlp import beacons, openapi, views

    app.register_blueprint(views.bp)
    api.register_blueprint(alerts_api.bp)
    api.register_blueprint(beacons.bp)
    add_fragment(app, openapi.fragment)
