"""Rate-limit counters in the session database (RATELIMIT_STORAGE_URI=database://), on both stores."""

from __future__ import annotations

import time

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from stabilizer.web.ratelimit import DatabaseStorage
from tests.conftest import USER_TOKEN


@pytest.fixture
def storage(database):
    built = storage_from_string("database://", database=database)
    assert isinstance(built, DatabaseStorage)
    return built


def _age_counters(database, seconds):
    """Move every counter's window end ``seconds`` into the past."""
    if database.backend == "postgresql":
        sql = f"UPDATE {database.table}_ratelimit SET expire = now() - make_interval(secs => %s)"
    else:
        sql = f"UPDATE {database.table}_ratelimit SET expire = (julianday('now') - 2440587.5) * 86400.0 - ?"
    database._run(lambda conn: conn.execute(sql, (seconds,)))


def _counter_rows(database) -> int:
    return database._run(lambda conn: conn.execute(f"SELECT count(*) FROM {database.table}_ratelimit").fetchone()[0])


def test_storage_needs_the_database():
    with pytest.raises(ValueError, match="session database"):
        storage_from_string("database://")


def test_incr_counts_within_the_window(storage):
    assert storage.get("k") == 0
    assert storage.incr("k", 60) == 1
    assert storage.incr("k", 60, amount=2) == 3
    assert storage.get("k") == 3
    assert storage.get("other") == 0
    assert time.time() + 55 < storage.get_expiry("k") <= time.time() + 61


def test_expired_window_starts_again(storage, database):
    storage.incr("k", 60)
    storage.incr("k", 60)
    _age_counters(database, 1)
    assert storage.get("k") == 0
    assert abs(storage.get_expiry("k") - time.time()) < 5  # no live window: now
    assert storage.incr("k", 30) == 1
    assert time.time() + 25 < storage.get_expiry("k") <= time.time() + 31


def test_window_end_does_not_move_with_hits(storage):
    storage.incr("k", 60)
    first = storage.get_expiry("k")
    storage.incr("k", 600)
    assert storage.get_expiry("k") == pytest.approx(first, abs=0.01)


def test_clear_and_reset(storage):
    storage.incr("a", 60)
    storage.incr("b", 60)
    storage.clear("a")
    assert storage.get("a") == 0
    assert storage.get("b") == 1
    assert storage.reset() == 1
    assert storage.get("b") == 0


def test_check_reports_reachability(storage, database):
    assert storage.check() is True
    database.close()
    assert storage.check() is False


def test_fixed_window_strategy_on_storage(storage):
    limiter = FixedWindowRateLimiter(storage)
    limit = parse("2 per minute")
    assert limiter.hit(limit, "client")
    assert limiter.hit(limit, "client")
    assert not limiter.hit(limit, "client")
    assert limiter.hit(limit, "someone-else")
    stats = limiter.get_window_stats(limit, "client")
    assert stats.remaining == 0
    assert time.time() < stats.reset_time <= time.time() + 61


def test_pruner_deletes_expired_counters(storage, database, app):
    storage.incr("old", 60)
    storage.incr("live", 60)
    _age_counters(database, 1)
    storage.incr("live", 60)  # starts a new window that ends in a minute
    app.extensions["stabilizer"].pruner.run_once()
    count = _counter_rows(database)
    assert count == 1
    assert storage.get("live") == 1


def test_cli_prune_deletes_expired_counters(storage, database, runner):
    storage.incr("old", 60)
    _age_counters(database, 1)
    result = runner.invoke(args=["sessions", "prune"])
    assert result.exit_code == 0, result.output
    assert "1 expired rate-limit counters" in result.output
    count = _counter_rows(database)
    assert count == 0


def test_keys_hold_no_token(make_app, fake):
    """Counter keys carry a hash of the token, never the token itself."""
    app = make_app(LOGIN_RATE_LIMIT="5 per minute")
    database = app.extensions["stabilizer"].database
    app.test_client().post("/api/auth/login", json={"token": "never-stored-token", "role": "user"})
    keys = [row[0] for row in database._run(lambda conn: conn.execute(
        f"SELECT key FROM {database.table}_ratelimit").fetchall())]
    assert len(keys) == 2  # one per address, one per token
    assert not any("never-stored-token" in key for key in keys)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_limit_holds_across_gunicorn_workers(request, tmp_path, fake, store):
    """Three workers count one limit: every attempt beyond it is refused, whichever worker answers."""
    import secrets

    import requests

    from tests.processes import Gunicorn

    environ = {"WUZAPI_BASE_URL": fake.url, "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "2",
               "LOGIN_RATE_LIMIT": "4 per minute", "SESSION_TABLE": "rl_" + secrets.token_hex(4),
               "SQLITE_PATH": str(tmp_path / "sessions.sqlite3")}
    if store == "postgresql":
        from stabilizer.config import load_settings
        from stabilizer.db import open_database

        environ["DATABASE_URL"] = request.getfixturevalue("pg_url")
        database = open_database(load_settings({**environ, "SESSION_SECRET": "r" * 40}, instance_path=tmp_path))
        database.migrate()
        database.close()
    server = Gunicorn(environ, tmp_path / "gunicorn.log")
    try:
        statuses = []
        for attempt in range(12):
            # a new connection each time, so any worker may take each attempt
            response = requests.post(server.url + "/api/auth/login", json={"token": f"guess-{attempt}"},
                                     headers={"Connection": "close"}, timeout=10)
            statuses.append(response.status_code)
    finally:
        assert server.stop() == 0
    assert statuses == [401] * 4 + [429] * 8


def test_clear_login_limits_unblocks_address(make_app):
    app = make_app(LOGIN_RATE_LIMIT="1 per minute")
    client = app.test_client()
    assert client.post("/api/auth/login", json={"token": "wrong-token", "role": "user"}).status_code == 401
    assert client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"}).status_code == 429
    result = app.test_cli_runner().invoke(args=["sessions", "clear-login-limits"])
    assert result.exit_code == 0, result.output
    assert result.output == "cleared 2 login rate-limit counters\n"  # the address and the wrong token
    assert client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"}).status_code == 200


def test_clear_login_limits_other_storage(make_app):
    app = make_app(RATELIMIT_STORAGE_URI="memory://")
    result = app.test_cli_runner().invoke(args=["sessions", "clear-login-limits"])
    assert result.exit_code == 1
    assert "memory://" in result.output


def test_missing_counter_table_falls_back(make_app, caplog):
    """An upgraded PostgreSQL without `flask sessions init-db` still limits logins, per process."""
    app = make_app(LOGIN_RATE_LIMIT="2 per minute")
    database = app.extensions["stabilizer"].database
    database._run(lambda conn: conn.execute(f"DROP TABLE {database.table}_ratelimit"))
    client = app.test_client()
    statuses = [client.post("/api/auth/login", json={"token": "wrong-token", "role": "user"}).status_code
                for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert "cannot count login attempts in the session database" in caplog.text
    assert "ratelimit" in caplog.text  # the missing table is named


def test_prune_without_counter_table(make_app, caplog):
    """After an upgrade without init-db, sessions are pruned and the counters only warn."""
    app = make_app()
    database = app.extensions["stabilizer"].database
    database._run(lambda conn: conn.execute(f"DROP TABLE {database.table}_ratelimit"))
    database.session_insert("old", "{}", None, 60)
    database._run(lambda conn: conn.execute(f"UPDATE {database.table} SET expire = created_at"))

    app.extensions["stabilizer"].pruner.run_once()
    assert database.stats()["rows"] == 0
    assert "could not prune login rate-limit counters" in caplog.text

    result = app.test_cli_runner().invoke(args=["sessions", "prune"])
    assert result.exit_code == 1
    assert "deleted 0 expired sessions" in result.output
    assert "init-db" in result.output


def test_prune_skips_counters_elsewhere(make_app):
    app = make_app(RATELIMIT_STORAGE_URI="memory://")
    database = app.extensions["stabilizer"].database
    database._run(lambda conn: conn.execute(f"DROP TABLE {database.table}_ratelimit"))
    assert app.extensions["stabilizer"].pruner.prune_counters is False
    result = app.test_cli_runner().invoke(args=["sessions", "prune"])
    assert result.exit_code == 0, result.output
    assert "rate-limit" not in result.output
