"""One appliance at run time: its settings, database engine and sessions.

The CLI, the web app and the worker each build one ``Appliance`` from a data
directory and reach the database only through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from appliance.kernel.config import Settings
from appliance.kernel.db import make_engine, make_session_factory, session_scope


class Appliance:
    """Settings plus lazily created database access for one data directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def open(cls, data_dir: str | Path | None = None) -> Appliance:
        return cls(Settings.load(data_dir))

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with session_scope(self.sessions) as session:
            yield session

    def dispose(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def appliance_settings() -> Any:
    """The settings of the appliance the running web app serves."""
    return current_app.extensions["citadel.appliance"].settings
