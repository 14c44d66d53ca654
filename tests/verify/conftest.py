"""The verification suite needs PostgreSQL's server binaries for a cluster of its own."""

from __future__ import annotations

import pytest

from tests.verify.cluster import available


@pytest.fixture
def private_postgres() -> None:
    why = available()
    if why:
        pytest.skip(why)
