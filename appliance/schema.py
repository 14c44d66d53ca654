"""The database schema across packages: each package owns its tables and its
migration history (an Alembic branch named after the package); this module
is the one place that knows them all.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module, resources
from pathlib import Path
from tempfile import TemporaryDirectory

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, create_engine

#: Packages that own tables, in the order their histories are listed.
PACKAGES = ("crm", "audit", "dlp")


def package_metadata(package: str) -> MetaData:
    """The metadata holding ``package``'s tables (its ``<package>.schema.metadata()``)."""
    return import_module(f"{package}.schema").metadata()


def all_metadata() -> list[MetaData]:
    return [package_metadata(pkg) for pkg in PACKAGES]


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("appliance") / "migrations"))
    locations = [str(Path(str(resources.files(pkg))) / "migrations" / "versions") for pkg in PACKAGES]
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema of every package."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "heads")


def current_heads(bind: Engine | Connection) -> set[str]:
    if isinstance(bind, Connection):
        return set(MigrationContext.configure(bind).get_current_heads())
    with bind.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


@cache
def expected_heads() -> frozenset[str]:
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def is_current(bind: Engine | Connection) -> bool:
    return current_heads(bind) == expected_heads()


def new_revision(package: str, message: str) -> None:
    """Write ``package``'s next migration by comparing its models with its history.

    A development command: the comparison runs against a scratch SQLite
    database brought to the current heads.
    """
    metadata = package_metadata(package)
    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    has_history = any(package in (rev.branch_labels or ()) for rev in script.walk_revisions())
    with TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{scratch}/scratch.db")
        upgrade(engine)
        with engine.begin() as connection:
            cfg.attributes.update(connection=connection, target_metadata=metadata,
                                  own_tables=set(metadata.tables))
            command.revision(
                cfg, message=message, autogenerate=True,
                head=f"{package}@head" if has_history else "base",
                branch_label=None if has_history else package,
                version_path=str(Path(str(resources.files(package))) / "migrations" / "versions"),
            )
        engine.dispose()
