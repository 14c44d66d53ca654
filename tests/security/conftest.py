"""Fixtures for the attack suite: a seeded organisation on each database."""

from __future__ import annotations

import pytest

from tests.security.world import Org, seed


@pytest.fixture
def org(app, make, db, data_dir) -> Org:
    """The organisation of tests/security/world.py, in this test's database."""
    return seed(make, db, data_dir)
