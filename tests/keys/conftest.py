"""Fixtures for the key tests: a temporary appliance with fast Argon2 parameters,
unsealed through the real kernel keyring and sealed again afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine

from appliance.keys import KdfParams, Keyring, PassphraseHolder, init_keys, sealing, state
from appliance.keys.sealing import KeyInit
from tests.keys.models import Base

FAST_KDF = KdfParams(time_cost=1, memory_kib=8, parallelism=1)
PASSPHRASES = {"alice": "alice passphrase 1", "bob": "bob passphrase 22",
               "carol": "carol passphrase 333"}


@dataclass
class Box:
    data_dir: Path
    init: KeyInit

    def share(self, holder: str) -> Path:
        return next(p for p in self.init.share_files if p.stem == holder)


def make_appliance(root: Path, threshold: int = 2, demo: bool = False) -> Box:
    data_dir = root / "data"
    holders = [PassphraseHolder(name, phrase, FAST_KDF) for name, phrase in PASSPHRASES.items()]
    init = init_keys(data_dir, threshold=threshold, holders=holders,
                     share_dir=root / "shares", demo=demo)
    return Box(data_dir.resolve(), init)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    """An initialised, sealed appliance (2 of alice, bob, carol)."""
    made = make_appliance(tmp_path)
    yield made
    sealing.seal_now(made.data_dir)


@pytest.fixture
def keyring(box: Box) -> Keyring:
    """The same appliance, unsealed with its recovery key."""
    return sealing.unseal_with_recovery(box.data_dir, box.init.recovery_key)


@pytest.fixture(autouse=True)
def _forget_process_keyring() -> Iterator[None]:
    yield
    state.clear()


@pytest.fixture
def tables(engine: Engine) -> Engine:
    """The test models' tables, in a fresh database of each backend."""
    Base.metadata.create_all(engine)
    return engine
