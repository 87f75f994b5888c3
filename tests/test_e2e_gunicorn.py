"""End-to-end tests of real gunicorn processes in front of the fake WUZAPI, on both session stores.

Each test starts the fake WUZAPI and gunicorn as separate processes and talks HTTP to
them on 127.0.0.1. A login must survive ten SIGTERM restarts of gunicorn, and a logged-out
cookie must stay dead.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import SECRET, assert_test_database
from tests.processes import FakeWuzapiProcess, free_port, stop_process, tail, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "e2e-admin-token-0123456789"
USER_TOKEN = "e2e-user-token-0123456789"
COOKIE_NAME = "wuzapi.sid"
RESTARTS = 10

READY_TIMEOUT = 15.0  # seconds to wait for GET /health/ready to return 200
EXIT_TIMEOUT = 20.0  # seconds a process gets to exit after SIGTERM before the test fails
CLI_TIMEOUT = 30.0  # seconds for `flask sessions init-db`
HTTP_TIMEOUT = 10.0  # seconds for one test request

# Only these variables pass from the test run's environment to the processes it starts,
# so a developer's shell (DATABASE_URL, LOG_LEVEL, ...) cannot change what a test runs.
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")


def base_environ() -> dict[str, str]:
    """Return the few inherited variables a child process needs to run Python."""
    return {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}


class GunicornProcess:
    """A gunicorn master serving wsgi:app with a fixed environment, which a test stops and starts again.

    Each start writes its own stdout and stderr files in `log_dir`, so a failure message
    can show the log of the start that failed.
    """

    def __init__(self, environ: dict[str, str], port: int, log_dir: Path):
        self.environ = environ
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / f"gunicorn.{self.starts}.stderr.log"

    def start(self) -> None:
        self.starts += 1
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        stdout_path = self.log_dir / f"gunicorn.{self.starts}.stdout.log"
        with stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.environ, stdout=stdout, stderr=stderr)
        self.wait_ready()

    def wait_ready(self) -> None:
        wait_ready(self.process, self.url + "/health/ready", self.stderr_path, timeout=READY_TIMEOUT)

    def stop(self) -> int | None:
        """Send SIGTERM to the master and return its exit status (negative when a signal ended it)."""
        if self.process is None:
            return None
        return stop_process(self.process)


def init_db(environ: dict[str, str]) -> None:
    """Create the session table the way operators do, with `flask sessions init-db`."""
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "stabilizer", "sessions", "init-db"],
                            cwd=ROOT, env=environ, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert result.returncode == 0, f"init-db failed:\n{result.stdout}\n{result.stderr}"
    assert "schema ready on postgresql" in result.stdout


def drop_tables(database_url: str, table: str) -> None:
    """Drop the session table and the circuit-breaker and rate-limit tables named after it."""
    import psycopg

    assert_test_database(database_url)
    with psycopg.connect(database_url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_circuit, {table}_circuit_events, {table}_ratelimit")


@pytest.fixture
def fake_wuzapi(tmp_path):
    fake = FakeWuzapiProcess(tmp_path, admin_token=ADMIN_TOKEN, user_token=USER_TOKEN, env=base_environ())
    try:
        fake.start()
        yield fake
    finally:
        fake.stop()


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def gunicorn(request, tmp_path, fake_wuzapi):
    """A running gunicorn (2 workers, 4 threads each) on the store named by the parameter."""
    table = "e2e_" + secrets.token_hex(6)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    environ = base_environ()
    environ.update({
        "STABILIZER_ENV": "test",
        "SESSION_SECRET": SECRET,
        "SESSION_TABLE": table,
        "WUZAPI_BASE_URL": fake_wuzapi.url,
        "WUZAPI_ADMIN_TOKEN": ADMIN_TOKEN,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        "LOG_LEVEL": "info",
        # gunicorn.conf.py keeps per-worker metric files here, inside tmp_path, so pytest removes them.
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    })
    database_url = None
    if request.param == "postgresql":
        database_url = request.getfixturevalue("pg_url")
        assert_test_database(database_url)
        environ["DATABASE_URL"] = database_url
        init_db(environ)
    else:
        environ["SQLITE_PATH"] = str(tmp_path / "sessions.sqlite3")
        # An empty value counts as unset for Stabilizer, and python-dotenv never
        # overrides a variable that is present, so a .env file cannot select PostgreSQL.
        environ["DATABASE_URL"] = ""
        environ["SUPABASE_URL"] = ""

    server = GunicornProcess(environ, port, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        if database_url is not None:
            drop_tables(database_url, table)


def assert_gateway_status(client: requests.Session, server: GunicornProcess, fake_url: str, request_id: str) -> None:
    """Check that GET /api/wuzapi/session/status returns WUZAPI's response unchanged, with the gateway headers."""
    response = client.get(server.url + "/api/wuzapi/session/status", headers={"X-Request-ID": request_id},
                          timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, f"{request_id}: {response.text}"
    direct = requests.get(fake_url + "/session/status", headers={"Token": USER_TOKEN, "Connection": "close"},
                          timeout=HTTP_TIMEOUT)
    assert response.json() == direct.json(), request_id
    assert response.json()["success"] is True, request_id
    assert response.headers["X-Request-ID"] == request_id
    assert response.headers["X-Upstream-Attempts"] == "1", request_id


def assert_logged_in(client: requests.Session, server: GunicornProcess, user_id: str, when: str) -> None:
    response = client.get(server.url + "/api/auth/status", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, f"{when}: {response.text}"
    body = response.json()
    assert body["authenticated"] is True, f"{when}: {body}"
    assert body["user"]["id"] == user_id, f"{when}: {body}"


def test_login_survives_ten_restarts(gunicorn, fake_wuzapi):
    server = gunicorn
    client = requests.Session()

    # log in, then check the cookie and a first gateway call
    login = client.post(server.url + "/api/auth/login", json={"token": USER_TOKEN, "role": "user"},
                        timeout=HTTP_TIMEOUT)
    assert login.status_code == 200, login.text
    user_id = login.json()["user"]["id"]
    assert user_id == hashlib.sha256(USER_TOKEN.encode()).hexdigest()[:32]
    assert login.headers["X-Request-ID"]
    set_cookie = login.headers["Set-Cookie"]
    assert set_cookie.startswith(COOKIE_NAME + "="), set_cookie
    assert "HttpOnly" in set_cookie, set_cookie
    assert list(client.cookies.keys()) == [COOKIE_NAME]
    cookie_value = client.cookies[COOKIE_NAME]
    assert_gateway_status(client, server, fake_wuzapi.url, "e2e-restart-00")

    # the same cookie must keep working across ten gunicorn restarts
    for restart in range(1, RESTARTS + 1):
        exit_status = server.stop()
        assert exit_status == 0, f"restart {restart}: gunicorn exit status {exit_status}\n{tail(server.stderr_path)}"
        server.start()
        if restart == 1:
            # A stopping gunicorn 27 worker keeps an idle keep-alive connection open for up
            # to 2 s. The first stop covered that case, and later requests close their
            # connection so that each restart takes a fraction of a second.
            client.headers["Connection"] = "close"
        assert_logged_in(client, server, user_id, f"after restart {restart}")
        assert_gateway_status(client, server, fake_wuzapi.url, f"e2e-restart-{restart:02d}")
        assert client.cookies[COOKIE_NAME] == cookie_value, f"restart {restart} replaced the cookie"

    # after logout the client drops the cookie, and its old value no longer opens a session
    logout = client.post(server.url + "/api/auth/logout", json={}, timeout=HTTP_TIMEOUT)
    assert logout.status_code == 200, logout.text
    assert logout.json() == {"authenticated": False}
    assert COOKIE_NAME not in client.cookies, logout.headers.get("Set-Cookie")
    client.close()

    stale = requests.Session()
    stale.headers["Connection"] = "close"
    stale.cookies.set(COOKIE_NAME, cookie_value)
    status = stale.get(server.url + "/api/auth/status", timeout=HTTP_TIMEOUT)
    assert status.status_code == 200, status.text
    assert status.json() == {"authenticated": False}
    gateway = stale.get(server.url + "/api/wuzapi/session/status", timeout=HTTP_TIMEOUT)
    assert gateway.status_code == 401, gateway.text
    assert gateway.headers["Content-Type"].startswith("application/problem+json")
    assert gateway.json()["code"] == "not_authenticated"
    assert gateway.json()["request_id"] == gateway.headers["X-Request-ID"]
    stale.close()

    # no start or graceful stop may have logged a traceback
    for log in sorted(server.log_dir.glob("gunicorn.*.log")):
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, f"{log.name}:\n{tail(log)}"
        assert "Exception ignored" not in text, f"{log.name}:\n{tail(log)}"
