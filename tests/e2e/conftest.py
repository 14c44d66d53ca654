"""End-to-end tests drive a real headless Chromium against `appliance serve`
(fixtures ``live_server`` and ``browser`` in tests/conftest.py)."""
