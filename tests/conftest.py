"""Shared fixtures: a throwaway PostgreSQL database, the fake WUZAPI, apps on both stores.

PostgreSQL tests use the server on 127.0.0.1:5432 (``STABILIZER_TEST_PG`` overrides
the admin URL). When it is unreachable they are skipped, unless
``STABILIZER_REQUIRE_POSTGRES=1`` (set by .ci/run) turns that into a failure.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from stabilizer import create_app
from stabilizer.config import load_settings
from tests.fake_wuzapi import FakeWuzapi

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("STABILIZER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DATABASE_NAME = re.compile(r"^(test|stabilizer_test)_[a-z0-9_]+$")
SECRET = "test-secret-" + "s" * 40
ADMIN_TOKEN = "admin-token-0123456789"
USER_TOKEN = "user-token-0123456789"
OTHER_TOKEN = "other-token-0123456789"


def assert_test_database(url: str) -> None:
    """Refuse any database whose name does not look like a throwaway test database."""
    name = urlsplit(url).path.lstrip("/")
    if not TEST_DATABASE_NAME.match(name):
        raise RuntimeError(f"refusing to run tests against database {name!r}: its name must start with "
                           "'test_' or 'stabilizer_test_'")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the message catalogs when `make translations` has not run (plain `pytest`)."""
    catalogs = ROOT / "stabilizer" / "translations"
    for po in catalogs.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            subprocess.run([sys.executable, "-m", "babel.messages.frontend", "compile", "-f", "-i", str(po),
                            "-o", str(mo)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A throwaway PostgreSQL database for this test run, dropped at the end."""
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("STABILIZER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")
    name = f"stabilizer_test_{os.getpid()}_{secrets.token_hex(3)}"
    url = _with_database(PG_ADMIN_URL, name)
    assert_test_database(url)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fake():
    with FakeWuzapi(admin_token=ADMIN_TOKEN, users={"alice": USER_TOKEN, "bob": OTHER_TOKEN},
                    connect_hold_ms=300) as server:
        yield server


def app_environ(**overrides: str) -> dict[str, str]:
    """Return environment variables for a fast, quiet test app; overrides win."""
    environ = {
        "STABILIZER_ENV": "test",
        "SESSION_SECRET": SECRET,
        "WUZAPI_ADMIN_TOKEN": ADMIN_TOKEN,
        "WUZAPI_CONNECT_TIMEOUT": "500",
        "WUZAPI_TIMEOUT": "1500",
        "WUZAPI_DEADLINE": "4000",
        "WUZAPI_RETRY_INITIAL_DELAY": "10",
        "WUZAPI_RETRY_MAX_DELAY": "100",
        "SESSION_PRUNE_INTERVAL": "0",
        "SESSION_TABLE": "s_" + secrets.token_hex(6),
        "DB_POOL_TIMEOUT": "2",
        "LOG_LEVEL": "debug",
    }
    environ.update(overrides)
    return environ


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_app(request, tmp_path, fake, backend):
    """Build apps on the selected store; every table is dropped at teardown."""
    built = []

    def build(**overrides: str):
        environ = app_environ(WUZAPI_BASE_URL=fake.url, SQLITE_PATH=str(tmp_path / "sessions.sqlite3"))
        if backend == "postgresql":
            url = request.getfixturevalue("pg_url")
            assert_test_database(url)
            environ["DATABASE_URL"] = url
        environ.update(overrides)
        settings = load_settings(environ, instance_path=tmp_path / "instance")
        app = create_app(settings, instance_path=str(tmp_path / "instance"), configure_logging=False)
        app.config["TESTING"] = True
        app.config["PROPAGATE_EXCEPTIONS"] = False  # answer like production: problem+json, not a raise
        runtime = app.extensions["stabilizer"]
        if runtime.database.backend == "postgresql":
            runtime.database.migrate()
        built.append(app)
        return app

    yield build
    for app in built:
        runtime = app.extensions["stabilizer"]
        if runtime.database.backend == "postgresql":
            try:
                table = runtime.database.table
                runtime.database._run(lambda conn, table=table: conn.execute(
                    f"DROP TABLE IF EXISTS {table}, {table}_circuit, {table}_circuit_events, {table}_ratelimit"))
            except Exception:  # noqa: BLE001 - a test may have broken the connection on purpose
                pass
        runtime.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def database(app):
    return app.extensions["stabilizer"].database


class StatementCounter:
    """Collects every SQL statement the store runs while active."""

    def __init__(self, database):
        self.database = database
        self.statements: list[str] = []

    def __enter__(self) -> "StatementCounter":
        self.statements.clear()
        self.database.statement_listeners.append(self.statements.append)
        return self

    def __exit__(self, *exc_info) -> None:
        self.database.statement_listeners.remove(self.statements.append)

    @property
    def count(self) -> int:
        return len(self.statements)

    @property
    def writes(self) -> list[str]:
        return [sql for sql in self.statements if not sql.lstrip().upper().startswith("SELECT")]


@pytest.fixture
def count_statements(database):
    return lambda: StatementCounter(database)


class AuthActions:
    def __init__(self, client):
        self.client = client

    def login(self, token: str = USER_TOKEN, role: str = "user", **headers: str):
        return self.client.post("/api/auth/login", json={"token": token, "role": role}, headers=headers)

    def logout(self):
        return self.client.post("/api/auth/logout", json={})


@pytest.fixture
def auth(client):
    return AuthActions(client)
