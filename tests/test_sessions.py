"""The SQL session store on PostgreSQL and SQLite: statements, rotation, expiry, failures."""

from __future__ import annotations

import hashlib
import logging
import time

import pytest
from flask import jsonify, session

from stabilizer.db import StoreUnavailable
from stabilizer.sessions import codec
from tests.conftest import USER_TOKEN


def _rows(database):
    if database.backend == "postgresql":
        return database._run(lambda conn: conn.execute(
            f"SELECT sid, sess::text, user_id FROM {database.table}").fetchall())
    return database._run(lambda conn: conn.execute(f"SELECT sid, sess, user_id FROM {database.table}").fetchall())


def _sql(database, statement, params=()):
    if database.backend == "postgresql":
        return database._run(lambda conn: conn.execute(statement.format(table=database.table), params))
    statement = statement.replace("%s", "?")
    return database._run(lambda conn: conn.execute(statement.format(table=database.table), params))


def _set_seconds_left(database, seconds: float) -> None:
    if database.backend == "postgresql":
        _sql(database, "UPDATE {table} SET expire = now() + make_interval(secs => %s)", (seconds,))
    else:
        _sql(database, "UPDATE {table} SET expire = (julianday('now') - 2440587.5) * 86400.0 + %s", (seconds,))


def _cookie(client) -> str:
    return client.get_cookie("wuzapi.sid").value


def test_rows_store_hashed_ids_and_encrypted_tokens(auth, database):
    auth.login()
    raw_sid = _cookie(auth.client).rsplit(".", 1)[0]
    [(sid, sess, user_id)] = _rows(database)
    assert sid == hashlib.sha256(raw_sid.encode()).hexdigest()
    assert raw_sid not in sess
    assert USER_TOKEN not in sess
    assert user_id == auth.client.get("/api/auth/status").get_json()["user"]["id"]


def test_unmodified_authenticated_request_is_one_statement(auth, count_statements):
    auth.login()
    with count_statements() as counter:
        response = auth.client.get("/api/auth/status")
    assert response.get_json()["authenticated"] is True
    assert counter.count == 1, counter.statements
    assert counter.writes == []
    assert "Set-Cookie" not in response.headers


def test_cookieless_requests_run_no_statement(client, count_statements):
    with count_statements() as counter:
        assert client.get("/api/auth/status").status_code == 200
        assert client.get("/health/live").status_code == 200
        assert client.post("/api/auth/logout", json={}).status_code == 200
    assert counter.count == 0


def test_health_live_with_cookie_runs_no_statement(auth, count_statements):
    auth.login()
    with count_statements() as counter:
        assert auth.client.get("/health/live").status_code == 200
    assert counter.count == 0


def test_cookieless_requests_create_no_rows(client, database):
    for _ in range(5):
        client.get("/api/auth/status")
        client.get("/api/wuzapi/session/status")
    assert database.stats()["rows"] == 0


def test_touch_only_when_due(auth, database, count_statements, app):
    auth.login()
    interface = app.extensions["stabilizer"].session_interface
    lifetime, interval = interface.lifetime, interface.touch_interval

    _set_seconds_left(database, lifetime - interval + 30)  # not yet due
    with count_statements() as counter:
        response = auth.client.get("/api/auth/status")
    assert counter.writes == []
    assert "Set-Cookie" not in response.headers

    _set_seconds_left(database, lifetime - interval - 30)  # due
    with count_statements() as counter:
        response = auth.client.get("/api/auth/status")
    assert len(counter.writes) == 1
    assert counter.writes[0].lstrip().startswith("UPDATE")
    assert "wuzapi.sid=" in response.headers["Set-Cookie"]
    assert database.session_get(hashlib.sha256(_cookie(auth.client).rsplit(".", 1)[0].encode()).hexdigest()) \
        .seconds_left > lifetime - 60


def test_anonymous_session_is_short_lived(app, database, count_statements):
    from stabilizer.sessions.interface import ANONYMOUS_LIFETIME

    @app.get("/test/lang")
    def choose_language():
        session["lang"] = "en"
        return jsonify(ok=True)

    client = app.test_client()
    response = client.get("/test/lang")
    assert f"Max-Age={ANONYMOUS_LIFETIME}" in response.headers["Set-Cookie"]
    [row] = _rows(database)
    assert row[2] is None
    assert database.session_get(row[0]).seconds_left <= ANONYMOUS_LIFETIME
    with count_statements() as counter:
        client.get("/api/auth/status")
    assert counter.writes == []  # a fresh anonymous row is not touched on every request


def test_expired_session_is_anonymous(auth, database):
    auth.login()
    _set_seconds_left(database, -1)
    assert auth.client.get("/api/auth/status").get_json() == {"authenticated": False}
    assert auth.client.get("/api/wuzapi/session/status").status_code == 401


def test_absolute_lifetime_caps_touches(make_app, fake):
    app = make_app(SESSION_LIFETIME="120", SESSION_ABSOLUTE_LIFETIME="3600", SESSION_TOUCH_INTERVAL="0")
    client = app.test_client()
    database = app.extensions["stabilizer"].database
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    # Logged in almost an hour ago: the next touch may extend the expiry only to login + 1 h.
    if database.backend == "postgresql":
        _sql(database, "UPDATE {table} SET created_at = now() - interval '3599 seconds', "
                       "expire = now() + interval '60 seconds'")
    else:
        _sql(database, "UPDATE {table} SET created_at = created_at - 3599, expire = expire - 60")
    assert client.get("/api/auth/status").get_json()["authenticated"] is True
    [row] = _rows(database)
    left = database.session_get(row[0]).seconds_left
    assert left <= 1.5
    time.sleep(max(0.0, left) + 0.3)
    assert client.get("/api/auth/status").get_json() == {"authenticated": False}


def test_unknown_signed_id_is_not_adopted(app, client, database):
    secrets = app.extensions["stabilizer"].secrets
    planted = "planted-session-id-000000000000000000000000"
    client.set_cookie("wuzapi.sid", secrets.sign(planted))
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    assert secrets.unsign(_cookie(client)) != planted
    assert [row[0] for row in _rows(database)] != [hashlib.sha256(planted.encode()).hexdigest()]


def test_bad_signature_costs_no_statement(client, count_statements):
    client.set_cookie("wuzapi.sid", "forged.value")
    with count_statements() as counter:
        assert client.get("/api/auth/status").get_json() == {"authenticated": False}
    assert counter.count == 0


def test_clear_then_rotate_at_login_replaces_planted_session(app, database):
    """An attacker's own live session id planted in a victim's browser does not survive login."""
    attacker = app.test_client()
    attacker.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    planted = _cookie(attacker)

    victim = app.test_client()
    victim.set_cookie("wuzapi.sid", planted)
    victim.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    assert _cookie(victim) != planted
    assert database.stats()["rows"] == 1  # the planted row was deleted at rotation
    assert attacker.get("/api/auth/status").get_json() == {"authenticated": False}


def test_slow_request_does_not_resurrect_logged_out_session(app, auth, database):
    @app.get("/test/slow-write")
    def slow_write():
        session.get("user")  # loaded now
        app.extensions["stabilizer"].database.revoke_all()  # logout by another request meanwhile
        session["note"] = "written late"
        return jsonify(ok=True)

    auth.login()
    assert auth.client.get("/test/slow-write").status_code == 200
    assert database.stats()["rows"] == 0


def test_concurrent_writes_last_writer_wins(app, auth, database):
    @app.get("/test/set/<value>")
    def set_value(value):
        session["note"] = value
        return jsonify(ok=True)

    auth.login()
    other = app.test_client()
    other.set_cookie("wuzapi.sid", _cookie(auth.client))
    auth.client.get("/test/set/first")
    other.get("/test/set/second")
    assert codec.decode(_rows(database)[0][1])["note"] == "second"


@pytest.mark.parametrize("stored", ['[1, 2]', '"text"', '{"user": 5}', '{"user": {"id": "x"}}',
                                    '{"user": {"id": "x", "role": "user"}}'])
def test_corrupt_row_is_deleted_and_answered_401(auth, database, stored, caplog):
    auth.login()
    _sql(database, "UPDATE {table} SET sess = %s" + ("::json" if database.backend == "postgresql" else ""),
         (stored,))
    with caplog.at_level(logging.WARNING, logger="stabilizer.sessions.interface"):
        response = auth.client.get("/api/wuzapi/session/status")
    assert response.status_code == 401
    assert response.get_json()["code"] == "session_corrupted"
    assert response.headers["Set-Cookie"].startswith("wuzapi.sid=;")
    assert database.stats()["rows"] == 0
    warnings = [record for record in caplog.records if "corrupt session" in record.getMessage()]
    assert len(warnings) == 1


def test_undecodable_text_row_sqlite(make_app, fake, backend):
    if backend != "sqlite":
        pytest.skip("PostgreSQL's json column rejects invalid JSON on write")
    app = make_app()
    client = app.test_client()
    database = app.extensions["stabilizer"].database
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    _sql(database, "UPDATE {table} SET sess = %s", ("\x80not json{",))
    assert client.get("/api/auth/status").get_json() == {"authenticated": False}
    assert database.stats()["rows"] == 0


def test_status_after_corruption_is_anonymous(auth, database):
    auth.login()
    _sql(database, "UPDATE {table} SET sess = %s" + ("::json" if database.backend == "postgresql" else ""),
         ("[]",))
    assert auth.client.get("/api/auth/status").get_json() == {"authenticated": False}


def test_non_json_value_fails_before_database(app, auth, database, count_statements):
    @app.get("/test/tuple")
    def store_tuple():
        session["pair"] = (1, 2)
        return jsonify(ok=True)

    auth.login()
    before = _rows(database)
    with count_statements() as counter:
        response = auth.client.get("/test/tuple")
    assert response.status_code == 500
    assert response.get_json()["code"] == "session_not_serializable"
    assert counter.writes == []
    assert _rows(database) == before


def test_size_limit_has_clear_error(app, auth, database):
    @app.get("/test/big")
    def store_big():
        session["blob"] = "x" * 70000
        return jsonify(ok=True)

    auth.login()
    before = _rows(database)
    response = auth.client.get("/test/big")
    assert response.status_code == 500
    assert response.get_json()["code"] == "session_too_large"
    assert _rows(database) == before


@pytest.mark.parametrize("value, message", [
    ((1, 2), "'v' holds a builtins.tuple"),
    ({"a": {1: "x"}}, "non-string key 1"),
    ([float("nan")], "non-finite float"),
    ({"when": time}, "'v.when' holds"),
])
def test_codec_rejects_non_json(value, message):
    with pytest.raises(codec.SessionDataError, match=message.replace("(", r"\(").replace(".", r"\.")):
        codec.encode({"v": value}, 65536)


def test_codec_rejects_markup_and_lazy_strings():
    from flask_babel import lazy_gettext
    from markupsafe import Markup

    with pytest.raises(codec.SessionDataError, match="Markup"):
        codec.encode({"v": Markup("<b>x</b>")}, 65536)
    with pytest.raises(codec.SessionDataError, match="LazyString"):
        codec.encode({"v": lazy_gettext("x")}, 65536)


def test_codec_round_trip_keeps_text_exact():
    data = {"s": "ação \u0000 \U0001F600", "n": [1, 2.5, None, True], "d": {"k": "v"}}
    assert codec.decode(codec.encode(data, 65536)) == data


def test_codec_size_limit_boundaries():
    overhead = len(codec.encode({"v": ""}, 65536))
    codec.encode({"v": "x" * (1024 - overhead)}, 1024)
    with pytest.raises(codec.SessionTooLarge):
        codec.encode({"v": "x" * (1025 - overhead)}, 1024)


def test_unicode_and_nul_survive_store(app, auth, database):
    @app.get("/test/unicode")
    def store_unicode():
        session["text"] = "ação \u0000 \U0001F600"
        return jsonify(ok=True)

    @app.get("/test/read")
    def read_unicode():
        return jsonify(text=session.get("text"))

    auth.login()
    auth.client.get("/test/unicode")
    assert auth.client.get("/test/read").get_json()["text"] == "ação \u0000 \U0001F600"


def test_secret_rotation_keeps_sessions(make_app, fake):
    old_secret = "old-secret-" + "o" * 40
    app = make_app(SESSION_SECRET=old_secret)
    client = app.test_client()
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    cookie = _cookie(client)
    table = app.extensions["stabilizer"].database.table

    rotated = make_app(SESSION_SECRET="new-secret-" + "n" * 40, SESSION_SECRET_FALLBACKS=old_secret,
                       SESSION_TABLE=table)
    replay = rotated.test_client()
    replay.set_cookie("wuzapi.sid", cookie)
    assert replay.get("/api/auth/status").get_json()["authenticated"] is True
    assert replay.get("/api/wuzapi/session/status").status_code == 200


def test_pruning_in_batches(app, database, runner):
    for index in range(25):
        database.session_insert(f"expired-{index}", "{}", None, 60)
    database.session_insert("live", "{}", None, 60)
    _sql(database, "UPDATE {table} SET expire = created_at WHERE sid <> %s", ("live",))
    result = database.prune(batch_size=10)
    assert (result.deleted, result.batches) == (25, 3)
    assert [row[0] for row in _rows(database)] == ["live"]


def test_prune_gives_up_at_max_batches(database):
    for index in range(5):
        database.session_insert(f"expired-{index}", "{}", None, 60)
    _sql(database, "UPDATE {table} SET expire = created_at")
    result = database.prune(batch_size=2, max_batches=2)
    assert (result.deleted, result.batches) == (4, 2)


def test_prune_skips_while_another_pruner_holds_lock(database, backend):
    if backend != "postgresql":
        pytest.skip("the cluster-wide prune lock is PostgreSQL's advisory lock")
    import psycopg

    from stabilizer.db import lock_key

    database.session_insert("expired", "{}", None, 60)
    _sql(database, "UPDATE {table} SET expire = created_at")
    with psycopg.connect(database.pool.conninfo) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(f"stabilizer.prune.{database.table}"),))
        result = database.prune()
    assert result.skipped
    assert database.stats()["rows"] == 1
    assert database.prune().deleted == 1


def test_pruner_thread_runs_and_survives_errors(make_app, fake, caplog):
    from stabilizer.sessions import Pruner

    app = make_app()
    database = app.extensions["stabilizer"].database
    database.session_insert("expired", "{}", None, 60)
    _sql(database, "UPDATE {table} SET expire = created_at")

    calls = []
    real_prune = database.prune

    def flaky_prune(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnavailable("simulated outage")
        return real_prune(*args, **kwargs)

    database.prune = flaky_prune
    pruner = Pruner(database, interval=0.05)
    import stabilizer.sessions as sessions_module

    original_pause = sessions_module.ERROR_PAUSE_SECONDS
    sessions_module.ERROR_PAUSE_SECONDS = 0.01
    try:
        with caplog.at_level(logging.ERROR):
            pruner.start()
            deadline = time.monotonic() + 5
            while database.stats()["rows"] and time.monotonic() < deadline:
                time.sleep(0.02)
            pruner.stop()
    finally:
        sessions_module.ERROR_PAUSE_SECONDS = original_pause
    assert database.stats()["rows"] == 0
    assert any("session pruning failed" in record.getMessage() for record in caplog.records)


def test_cli_init_db_stats_prune_revoke(app, runner, auth, database):
    assert runner.invoke(args=["sessions", "init-db"]).exit_code == 0
    assert runner.invoke(args=["sessions", "init-db"]).exit_code == 0  # idempotent
    auth.login()
    user_id = auth.client.get("/api/auth/status").get_json()["user"]["id"]
    other = app.test_client()
    other.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})

    result = runner.invoke(args=["sessions", "stats"])
    assert result.exit_code == 0
    assert '"live": 2' in result.output

    database.session_insert("expired", "{}", None, 60)
    _sql(database, "UPDATE {table} SET expire = created_at WHERE sid = %s", ("expired",))
    result = runner.invoke(args=["sessions", "prune"])
    assert result.exit_code == 0
    assert "deleted 1 expired sessions" in result.output

    result = runner.invoke(args=["sessions", "revoke", "--user", user_id])
    assert "revoked 2 sessions" in result.output
    assert auth.client.get("/api/auth/status").get_json() == {"authenticated": False}

    other.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    result = runner.invoke(args=["sessions", "revoke", "--all"])
    assert "revoked 1 sessions" in result.output

    result = runner.invoke(args=["sessions", "revoke"])
    assert result.exit_code == 1
    assert "exactly one of --user ID or --all" in result.output


def test_database_timezone_does_not_expire_sessions(make_app, backend, request):
    """Connections in time zones 25 hours apart agree on a session's expiry."""
    if backend != "postgresql":
        pytest.skip("time zones apply to PostgreSQL connections")
    import psycopg

    url = request.getfixturevalue("pg_url")
    name = url.rsplit("/", 1)[1]

    def set_zone(zone: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE \"{name}\" SET timezone = '{zone}'")

    try:
        set_zone("Pacific/Kiritimati")  # UTC+14
        far_east = make_app()
        writer = far_east.test_client()
        writer.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
        set_zone("Pacific/Pago_Pago")  # UTC-11
        far_west = make_app(SESSION_TABLE=far_east.extensions["stabilizer"].database.table)
        database = far_west.extensions["stabilizer"].database
        zone = database._run(lambda conn: conn.execute("SHOW timezone").fetchone()[0])
        assert zone == "Pacific/Pago_Pago"

        reader = far_west.test_client()
        reader.set_cookie("wuzapi.sid", _cookie(writer))
        assert reader.get("/api/auth/status").get_json()["authenticated"] is True
        database.prune()
        assert database.stats()["live"] == 1
        [row] = _rows(database)
        assert database.session_get(row[0]).seconds_left > 86000
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE \"{name}\" RESET timezone")


def test_sqlite_close_waits_for_running_statement(tmp_path):
    """Closing the store while another thread runs a statement must not close it underneath."""
    import threading

    from stabilizer.db import SqliteDatabase

    database = SqliteDatabase(tmp_path / "close.sqlite3", "s_close", busy_timeout_ms=1000)
    database.migrate()
    slow_sql = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)"
                " SELECT count(*) FROM n")
    results = []
    started = threading.Event()

    def slow_query():
        def work(conn):
            started.set()
            return conn.execute(slow_sql).fetchone()[0]

        results.append(database._run(work))

    worker = threading.Thread(target=slow_query)
    worker.start()
    assert started.wait(5)
    database.close()
    assert results == [3000000]  # close() returned only after the statement finished
    worker.join(10)
    with pytest.raises(StoreUnavailable, match="closed"):
        database.ping()


_OPEN_NEW_FILE = """
import sys, time
from stabilizer.db import SqliteDatabase
path, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
database = SqliteDatabase(path, "s_race", busy_timeout_ms=5000)
database.migrate()
database.ping()
database.close()
"""


def test_sqlite_new_file_concurrent_open(tmp_path):
    """gunicorn workers booting together on a new SQLite file must all open it.

    Switching a new file to WAL needs it to itself, and SQLite answers the losers
    "database is locked" without waiting; each worker has to retry rather than die.
    """
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for attempt in range(5):
        path = tmp_path / f"race{attempt}.sqlite3"
        start = time.time() + 1.0
        children = [subprocess.Popen([sys.executable, "-c", _OPEN_NEW_FILE, str(path), str(start)],
                                     cwd=root, stderr=subprocess.PIPE, text=True)
                    for _ in range(6)]
        for child in children:
            _, stderr = child.communicate(timeout=30)
            assert child.returncode == 0, stderr


def test_sqlite_files_readable_by_owner_only(tmp_path):
    import os
    import stat

    from stabilizer.db import SqliteDatabase

    database = SqliteDatabase(tmp_path / "private.sqlite3", "s_private", busy_timeout_ms=1000)
    database.migrate()
    database.session_insert("sid", "{}", None, 60)
    try:
        for path in tmp_path.glob("private.sqlite3*"):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    finally:
        database.close()


def test_stats_keep_anonymous_sessions_apart(app, auth, database):
    """A login-form visit leaves an anonymous row; it counts as live, not as a login."""
    import json

    from flask import session as flask_session

    @app.get("/test/anonymous")
    def anonymous():
        flask_session["csrf_token"] = "x" * 40
        return jsonify(ok=True)

    from datetime import datetime, timedelta, timezone

    app.test_client().get("/test/anonymous")
    time.sleep(0.3)
    before_login = datetime.now(timezone.utc)
    auth.login()
    stats = json.loads(app.test_cli_runner().invoke(args=["sessions", "stats"]).output)
    assert (stats["live"], stats["anonymous"], stats["users"]) == (2, 1, 1)
    # the login's time, not the earlier anonymous visit's (both clocks are this machine's)
    assert datetime.fromisoformat(stats["oldest_login"]) > before_login - timedelta(seconds=0.1)


def test_sqlite_memory_database_opens_quickly(tmp_path, monkeypatch):
    """SQLite keeps an in-memory database out of WAL mode; asking again would only waste the busy timeout."""
    from stabilizer.db import SqliteDatabase

    monkeypatch.chdir(tmp_path)
    database = SqliteDatabase(":memory:", "s_memory", busy_timeout_ms=3000)
    started = time.monotonic()
    database.ping()
    assert time.monotonic() - started < 2.5
    database.close()
    assert list(tmp_path.iterdir()) == []  # no stray file named ":memory:"
