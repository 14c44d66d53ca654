"""Fixtures for the attack suite: a seeded organisation on each database."""

from __future__ import annotations

import pytest

# Served apps import the command line first (``appliance serve``); some views reach helpers
# that only import in that order (see test_known_issues.py).
import appliance.cli  # noqa: F401
from tests.security.world import Org, seed


@pytest.fixture
def org(app, make, db, data_dir) -> Org:
    """The organisation of tests/security/world.py, in this test's database."""
    return seed(make, db, data_dir)
