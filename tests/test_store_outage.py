"""PostgreSQL going away and hanging, through a loopback TCP proxy in front of the real server."""

from __future__ import annotations

import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import USER_TOKEN
from tests.tcp_proxy import TcpProxy


@pytest.fixture
def backend() -> str:
    return "postgresql"


@pytest.fixture
def proxy(pg_url):
    parts = urlsplit(pg_url)
    server = TcpProxy((parts.hostname, parts.port or 5432)).start()
    yield server
    server.stop()


@pytest.fixture
def proxied_app(make_app, proxy, pg_url):
    parts = urlsplit(pg_url)
    url = urlunsplit((parts.scheme, f"{parts.username}@127.0.0.1:{proxy.port}", parts.path, "", ""))
    return make_app(DATABASE_URL=url, DB_POOL_TIMEOUT="1", DB_POOL_MIN="1")


def _restart(proxy: TcpProxy) -> TcpProxy:
    port = proxy.port
    proxy.stop()
    time.sleep(0.1)
    fresh = TcpProxy(proxy.target, port=port).start()
    proxy._listener = fresh._listener
    proxy._thread = fresh._thread
    proxy._sockets = fresh._sockets
    return proxy


def test_database_down_is_503_and_keeps_cookie(proxied_app, proxy):
    client = proxied_app.test_client()
    assert client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"}).status_code == 200
    cookie = client.get_cookie("wuzapi.sid").value

    proxy.stop()
    response = client.get("/api/auth/status")
    assert response.status_code == 503
    assert response.get_json()["code"] == "session_store_unavailable"
    assert response.headers["Retry-After"]
    assert "Set-Cookie" not in response.headers
    assert client.get_cookie("wuzapi.sid").value == cookie

    gateway = client.get("/api/wuzapi/session/status")
    assert gateway.status_code == 503
    assert "Set-Cookie" not in gateway.headers

    _restart(proxy)
    recovered = client.get("/api/auth/status")
    assert recovered.status_code == 200
    assert recovered.get_json()["authenticated"] is True
    assert client.get_cookie("wuzapi.sid").value == cookie


def test_dead_pooled_connection_is_replaced(proxied_app, proxy):
    """The server dropping every connection (a restart) costs no failed request."""
    client = proxied_app.test_client()
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    proxy.cut()
    response = client.get("/api/auth/status")
    assert response.status_code == 200
    assert response.get_json()["authenticated"] is True


def test_login_while_database_down_is_503(proxied_app, proxy):
    client = proxied_app.test_client()
    proxy.stop()
    response = client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    assert response.status_code == 503
    assert response.get_json()["code"] == "session_store_unavailable"
    assert "Set-Cookie" not in response.headers


def test_health_fast_when_database_hangs(proxied_app, proxy):
    client = proxied_app.test_client()
    proxy.mode = "blackhole"
    proxy.cut()
    timings = []
    for _ in range(5):
        started = time.monotonic()
        response = client.get("/health")
        timings.append(time.monotonic() - started)
        assert response.status_code == 503
        check = response.get_json()["checks"]["sessionStore"][0]
        assert check["status"] == "fail"
    assert max(timings) < 0.5
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert client.get("/health/live").status_code == 200


def test_health_fails_later_hang_quickly(proxied_app, proxy):
    """A store that passed and then hangs: no request waits for it, and within a second /health says fail."""
    client = proxied_app.test_client()
    assert client.get("/health").get_json()["checks"]["sessionStore"][0]["status"] == "pass"
    proxy.mode = "blackhole"
    proxy.cut()
    cut_at = time.monotonic()
    timings, statuses = [], []
    while time.monotonic() - cut_at < 1.5:
        started = time.monotonic()
        response = client.get("/health")
        timings.append(time.monotonic() - started)
        statuses.append(response.get_json()["checks"]["sessionStore"][0]["status"])
        time.sleep(0.01)
    # StoreProbe.PASS_TTL + PROBE_WAIT = 0.8 s; a request gives a new probe 20 ms
    assert max(timings) < 0.29, max(timings)  # below PROBE_WAIT: nobody waited for the hung probe
    assert statuses[-1] == "fail"
    assert statuses.index("fail") > 0  # the last pass is reported until the probe is overdue
    assert "pass" not in statuses[statuses.index("fail"):]


def test_health_ready_recovers(proxied_app, proxy):
    client = proxied_app.test_client()
    proxy.stop()
    deadline = time.monotonic() + 5
    while client.get("/health/ready").status_code != 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/health/ready").status_code == 503
    _restart(proxy)
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline:
        status = client.get("/health/ready").status_code
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200


def test_unreachable_database_names_cause(pg_url, tmp_path):
    """A pool timeout carries the reason of the last failed connection attempt."""

    from stabilizer import create_app
    from stabilizer.config import load_settings
    from stabilizer.db import PostgresDatabase, StoreUnavailable

    parts = urlsplit(pg_url)
    missing = urlunsplit((parts.scheme, parts.netloc, "/stabilizer_test_no_such_database", "", ""))
    database = PostgresDatabase(missing, "s_missing", min_size=1, max_size=1, timeout=1,
                                statement_timeout_ms=1000, via_pooler=False)
    try:
        with pytest.raises(StoreUnavailable, match='database "stabilizer_test_no_such_database" does not exist'):
            database.ping()
    finally:
        database.close()

    settings = load_settings({"DATABASE_URL": missing, "SESSION_SECRET": "m" * 40, "DB_POOL_TIMEOUT": "1"},
                             instance_path=tmp_path)
    app = create_app(settings, instance_path=str(tmp_path), configure_logging=False)
    try:
        result = app.test_cli_runner().invoke(args=["sessions", "stats"])
    finally:
        app.extensions["stabilizer"].close()
    assert result.exit_code == 1
    assert "does not exist" in result.output
