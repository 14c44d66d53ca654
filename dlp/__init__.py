"""Leak monitoring.

Owns the sensors (server hooks, browser beacons, the host file sensor), the
features computed from the audit log, the detectors (rules and learned
baselines as scikit-learn estimators), alerts and their triage, export
watermarks and canaries, and the activity simulator.
"""
