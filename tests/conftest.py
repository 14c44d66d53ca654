"""Shared fixtures: a fresh database per test on SQLite and, when
``CITADEL_TEST_DATABASE_URL`` names a PostgreSQL server, on PostgreSQL too.

Each test gets its own database cloned from a template migrated once per run:
a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL. Tests
are therefore isolated even when they start other processes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from appliance.kernel.db import make_engine
from appliance.schema import upgrade

PG_ENV = "CITADEL_TEST_DATABASE_URL"
BACKENDS = ["sqlite", "postgresql"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a PostgreSQL server configured, PostgreSQL variants are skipped, loudly."""
    if os.environ.get(PG_ENV):
        return
    skip = pytest.mark.skip(reason=f"set {PG_ENV} to run on PostgreSQL")
    for item in items:
        if "[postgresql" in item.nodeid:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    server = make_url(os.environ[PG_ENV])
    name = f"citadel_tpl_{os.getpid()}"
    admin = _pg_admin(server)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _pg_admin(server) -> Engine:
    url = server.set(drivername="postgresql+psycopg", database="postgres")
    return create_engine(url, isolation_level="AUTOCOMMIT")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database at the newest schema, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "citadel.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    server = make_url(os.environ[PG_ENV])
    name = f"citadel_t_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin(server)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


# -- an appliance, its web app and a browser-like client -----------------------
FAST_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
FAST_KDF = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}


@pytest.fixture
def data_dir(tmp_path: Path, database_url: str) -> Iterator[Path]:
    """An initialised, unsealed data directory on the test database (schema at head, roles
    seeded; demo keys, so no officer needs to unseal it)."""
    from appliance import keys
    from appliance.kernel.config import write_initial
    from appliance.kernel.runtime import Appliance
    from crm.roles import seed_roles

    root = tmp_path / "appliance"
    write_initial(root, {"database_url": database_url, "argon2": FAST_ARGON2, "keys": FAST_KDF})
    keys.init_keys(root, threshold=0, holders=[], demo=True)
    keys.auto_unseal_demo(root)  # every process of this appliance now finds the keys
    appliance = Appliance.open(root)
    with appliance.session() as db:
        seed_roles(db)
    appliance.dispose()
    yield root
    keys.seal_now(root)


@pytest.fixture
def appliance(data_dir: Path):
    from appliance.kernel.runtime import Appliance

    opened = Appliance.open(data_dir)
    yield opened
    opened.dispose()


@pytest.fixture
def app(appliance):
    from appliance.app import create_app

    app = create_app(appliance, {"TESTING": True})
    app.test_client_class = _whole_answers_client()
    return app


def _whole_answers_client() -> type:
    from flask.testing import FlaskClient

    class WholeAnswersClient(FlaskClient):
        """Reads every answer to its end and closes it, as a WSGI server does. A streamed
        answer left half-read keeps its request's context pushed, and the next request
        in this thread would share its ``g`` (and its CSRF token)."""

        def open(self, *args, buffered: bool = True, **kwargs):
            return super().open(*args, buffered=buffered, **kwargs)

    return WholeAnswersClient


@pytest.fixture
def db(database_url: str):
    """A session for arranging and checking rows. Its transactions are plain (deferred), so a
    test that reads does not hold SQLite's write lock while the app under test writes."""
    from sqlalchemy.orm import Session

    url = make_url(database_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url)
    session = Session(engine, expire_on_commit=False)
    yield session
    session.close()
    engine.dispose()


@pytest.fixture
def make(db):
    """Factories for users, teams and records (see tests/factories.py)."""
    from tests.factories import Factory

    return Factory(db)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def login(app):
    """``login("alice")`` returns a test client signed in as alice (password from the factory)."""
    from tests.factories import PASSWORD, signed_in_client

    def sign_in(username: str, password: str = PASSWORD):
        return signed_in_client(app, username, password)

    return sign_in


# -- a real server and a real browser ------------------------------------------
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base: str, process: subprocess.Popen, log_path: Path, tries: int = 900) -> None:
    """Wait (about a second a try) until ``base`` answers /healthz; fail with the log if
    ``process`` stops first or never answers."""
    for _ in range(tries):
        if process.poll() is not None:
            pytest.fail(f"stopped with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):  # noqa: S310
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"never answered /healthz:\n{log_path.read_text()[-3000:]}")


def sign_in_page(page, base: str, username: str, password: str) -> None:
    """Sign in through the login form of a real browser page."""
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


@pytest.fixture
def start_live_server(data_dir: Path):
    """``start_live_server(port=None, **settings)`` runs ``appliance serve``; returns its base URL.

    Settings are passed as ``CITADEL_*`` environment variables; the server stops at teardown.
    """
    started: list[tuple[subprocess.Popen, object]] = []

    def start(port: int | None = None, **settings: str) -> str:
        port = port or free_port()
        env = dict(os.environ, CITADEL_SECURE_COOKIES="false",
                   **{f"CITADEL_{k.upper()}": v for k, v in settings.items()})
        log = (data_dir / "serve.log").open("a")
        proc = subprocess.Popen([Path(sys.executable).parent / "appliance", "--data-dir", str(data_dir),
                                 "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                                stdout=log, stderr=log, env=env)
        started.append((proc, log))
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)  # noqa: S310
                return base
            except OSError:
                time.sleep(0.1)
        raise RuntimeError((data_dir / "serve.log").read_text())

    yield start
    for proc, log in started:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture
def live_server(start_live_server) -> str:
    """``appliance serve`` on a free port; its base URL."""
    return start_live_server()


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
