"""Session-store databases: a psycopg pool for PostgreSQL, per-thread connections for SQLite.

Both stores run every statement through ``_execute`` so the statement count is exact,
and both translate every driver failure into :class:`StoreUnavailable`. Expiry times
come from the database's clock (``now()`` in PostgreSQL, ``julianday('now')`` in
SQLite), never from the Python process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


class StoreUnavailable(Exception):
    """The session database could not be reached or did not answer in time."""


@dataclass(frozen=True)
class SessionRow:
    """One live session row as read from the store."""

    data: str
    seconds_left: float
    user_id: str | None


@dataclass(frozen=True)
class CircuitRow:
    """The shared circuit as stored; ages are seconds measured by the database's clock."""

    state: str
    failures: int
    successes: int
    opened_at: str | None      # ISO 8601, UTC
    open_for: float | None     # seconds since it opened
    trial_owner: str | None
    trial_left: float | None   # seconds until the half-open trial lease runs out


@dataclass(frozen=True)
class CircuitChange:
    """New values for the circuit row; ``reopen`` stamps ``opened_at`` with the database's now."""

    state: str
    failures: int
    successes: int
    reopen: bool = False
    trial_owner: str | None = None
    trial_lease: float | None = None  # seconds from now, or None for no lease


CircuitDecision = Callable[[CircuitRow], "tuple[CircuitChange | None, Any]"]


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    batches: int
    skipped: bool  # another pruner held the lock


def lock_key(name: str) -> int:
    """Return a signed 64-bit advisory-lock key derived from ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def schema_files(backend: str) -> list[Path]:
    return sorted((SQL_DIR / backend).glob("*.sql"))


class Database:
    """Base of the two stores. Thread-safe: each call takes its own connection.

    ``statement_listeners`` are called with each SQL text before it runs; tests use
    them to count the statements of a request.
    """

    backend = "abstract"

    def __init__(self, table: str):
        self.table = table
        self.statement_listeners: list[Callable[[str], None]] = []

    def _notify(self, sql: str) -> None:
        for listener in self.statement_listeners:
            listener(sql)

    def _sql(self, template: str) -> str:
        # The table name was validated as an identifier by the configuration.
        return template.format(table=self.table)

    def migrate(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def check_connections(self) -> None:
        """Detect and replace dead idle connections (no-op where there is no pool)."""


class PostgresDatabase(Database):
    """PostgreSQL through a ``psycopg_pool.ConnectionPool`` created in the calling process.

    Connections are in autocommit mode, so a single read is one round trip. Writes
    that need several statements open an explicit transaction. When a pooled
    connection turns out to be dead (the server restarted), the pool is checked and
    the statement runs once more on a fresh connection. Every statement here is safe
    to repeat.
    """

    backend = "postgresql"

    def __init__(self, url: str, table: str, *, min_size: int, max_size: int, timeout: float,
                 statement_timeout_ms: int, via_pooler: bool):
        super().__init__(table)
        import psycopg
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        self.via_pooler = via_pooler
        self.timeout = timeout
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, int(timeout))}
        if via_pooler:
            # Transaction-mode poolers cannot keep prepared statements or startup options.
            kwargs["prepare_threshold"] = None
        elif statement_timeout_ms:
            kwargs["options"] = f"-c statement_timeout={statement_timeout_ms}"
        self.statement_timeout_ms = statement_timeout_ms
        # Why the pool's last attempt to connect failed ("database does not exist"), so a
        # pool timeout can say more than "no connection".
        self.last_connect_error: str | None = None
        database = self

        class Connection(psycopg.Connection):  # type: ignore[type-arg]
            @classmethod
            def connect(cls, *args: Any, **options: Any) -> Any:
                try:
                    connection = super().connect(*args, **options)
                except psycopg.Error as exc:
                    database.last_connect_error = str(exc).strip() or exc.__class__.__name__
                    raise
                database.last_connect_error = None
                return connection

        self.pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=timeout, kwargs=kwargs,
            open=False, name="stabilizer-sessions", reconnect_timeout=0, connection_class=Connection,
        )
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close(timeout=5)

    def check_connections(self) -> None:
        self.pool.check()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                yield conn
        except PoolTimeout as exc:
            reason = self.last_connect_error
            message = f"no database connection within {self.timeout:g} s"
            raise StoreUnavailable(f"{message}: {reason}" if reason else message) from exc
        except self._psycopg.OperationalError as exc:
            raise StoreUnavailable(str(exc).strip() or exc.__class__.__name__) from exc

    def _run(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(conn)``; retry once when the pooled connection turned out to be dead."""
        for attempt in (1, 2):
            broken = False
            try:
                with self._connection() as conn:
                    try:
                        return work(conn)
                    except self._psycopg.OperationalError:
                        broken = conn.broken
                        raise
            except StoreUnavailable:
                if attempt == 1 and broken:
                    # The server dropped its connections (a restart): discard every dead idle one.
                    logger.info("session store connection was dead; checking the pool and retrying once")
                    self.pool.check()
                    continue
                raise
            except self._psycopg.Error as exc:
                raise StoreUnavailable(str(exc).strip() or exc.__class__.__name__) from exc
        raise AssertionError("unreachable")

    def _execute(self, conn: Any, template: str, params: tuple = ()) -> Any:
        sql = self._sql(template)
        self._notify(sql)
        return conn.execute(sql, params)

    def migrate(self) -> None:
        def work(conn: Any) -> None:
            with conn.transaction():
                # DDL from several workers at once can collide in the catalog; serialise it.
                self._execute(conn, "SELECT pg_advisory_xact_lock(%s)", (lock_key("stabilizer.migrate"),))
                for path in schema_files(self.backend):
                    self._execute(conn, path.read_text())
        self._run(work)

    def ping(self) -> None:
        self._run(lambda conn: self._execute(conn, "SELECT 1").fetchone())

    # Sessions

    def session_get(self, sid: str) -> SessionRow | None:
        row = self._run(lambda conn: self._execute(
            conn,
            "SELECT sess::text, extract(epoch FROM expire - now())::float8, user_id"
            " FROM {table} WHERE sid = %s AND expire > now()",
            (sid,),
        ).fetchone())
        return SessionRow(row[0], row[1], row[2]) if row else None

    def session_insert(self, sid: str, data: str, user_id: str | None, lifetime: int) -> None:
        self._run(lambda conn: self._execute(
            conn,
            "INSERT INTO {table} (sid, sess, expire, created_at, user_id)"
            " VALUES (%s, %s::json, now() + make_interval(secs => %s), now(), %s)",
            (sid, data, lifetime, user_id),
        ))

    def session_update(self, sid: str, data: str, user_id: str | None, lifetime: int, absolute: int) -> bool:
        cursor = self._run(lambda conn: self._execute(
            conn,
            "UPDATE {table} SET sess = %s::json, user_id = %s,"
            " expire = least(now() + make_interval(secs => %s), created_at + make_interval(secs => %s))"
            " WHERE sid = %s AND expire > now()",
            (data, user_id, lifetime, absolute, sid),
        ))
        return cursor.rowcount > 0

    def session_delete(self, sid: str) -> None:
        self._run(lambda conn: self._execute(conn, "DELETE FROM {table} WHERE sid = %s", (sid,)))

    def session_rotate(self, old_sid: str | None, sid: str, data: str, user_id: str | None, lifetime: int) -> None:
        def work(conn: Any) -> None:
            with conn.transaction():
                if old_sid:
                    self._execute(conn, "DELETE FROM {table} WHERE sid = %s", (old_sid,))
                self._execute(
                    conn,
                    "INSERT INTO {table} (sid, sess, expire, created_at, user_id)"
                    " VALUES (%s, %s::json, now() + make_interval(secs => %s), now(), %s)",
                    (sid, data, lifetime, user_id),
                )
        self._run(work)

    def prune(self, batch_size: int = 1000, max_batches: int = 1000, pause: float = 0.0) -> PruneResult:
        """Delete expired rows in batches; each batch holds a cluster-wide transaction lock.

        ``pause`` seconds pass between batches, outside any transaction, so a long prune
        leaves room for the requests' own writes.
        """
        key = lock_key(f"stabilizer.prune.{self.table}")
        deleted = batches = 0
        while batches < max_batches:
            if batches and pause:
                time.sleep(pause)
            def batch(conn: Any) -> int | None:
                with conn.transaction():
                    locked = self._execute(conn, "SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]
                    if not locked:
                        return None
                    if self.statement_timeout_ms:
                        self._execute(conn, f"SET LOCAL statement_timeout = {int(self.statement_timeout_ms)}")
                    return self._execute(
                        conn,
                        "DELETE FROM {table} WHERE sid IN (SELECT sid FROM {table}"
                        " WHERE expire <= now() LIMIT %s FOR UPDATE SKIP LOCKED)",
                        (batch_size,),
                    ).rowcount
            count = self._run(batch)
            if count is None:
                return PruneResult(deleted, batches, skipped=batches == 0)
            batches += 1
            deleted += count
            if count < batch_size:
                break
        return PruneResult(deleted, batches, skipped=False)

    def stats(self) -> dict[str, Any]:
        row = self._run(lambda conn: self._execute(
            conn,
            "SELECT count(*), count(*) FILTER (WHERE expire > now()),"
            " count(*) FILTER (WHERE expire > now() AND user_id IS NULL),"
            " count(DISTINCT user_id) FILTER (WHERE expire > now()),"
            " min(created_at) FILTER (WHERE expire > now() AND user_id IS NOT NULL),"
            " pg_total_relation_size(%s::regclass)"
            " FROM {table}",
            (self.table,),
        ).fetchone())
        return {"rows": row[0], "live": row[1], "anonymous": row[2], "expired": row[0] - row[1], "users": row[3],
                "oldest_login": row[4].isoformat() if row[4] else None, "bytes": row[5]}

    def revoke_user(self, user_id: str) -> int:
        return self._run(lambda conn: self._execute(
            conn, "DELETE FROM {table} WHERE user_id = %s", (user_id,)).rowcount)

    def revoke_all(self) -> int:
        return self._run(lambda conn: self._execute(conn, "DELETE FROM {table}").rowcount)

    # Rate-limit counters

    def ratelimit_incr(self, key: str, expiry: float, amount: int) -> int:
        """Add ``amount`` hits to ``key`` and return its count; an expired window starts again.

        A dead pooled connection retries the statement once, which may count one attempt
        twice: the limit errs on the strict side.
        """
        return self._run(lambda conn: self._execute(
            conn,
            "INSERT INTO {table}_ratelimit AS r (key, hits, expire)"
            " VALUES (%s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (key) DO UPDATE SET"
            " hits = CASE WHEN r.expire > now() THEN r.hits + excluded.hits ELSE excluded.hits END,"
            " expire = CASE WHEN r.expire > now() THEN r.expire ELSE excluded.expire END"
            " RETURNING hits",
            (key, amount, expiry),
        ).fetchone()[0])

    def ratelimit_get(self, key: str) -> tuple[int, float | None]:
        """Return the hits of ``key`` and when its window ends (Unix time), or (0, None)."""
        row = self._run(lambda conn: self._execute(
            conn, "SELECT hits, extract(epoch FROM expire)::float8 FROM {table}_ratelimit"
                  " WHERE key = %s AND expire > now()", (key,)).fetchone())
        return (row[0], row[1]) if row else (0, None)

    def ratelimit_clear(self, key: str | None = None) -> int:
        """Delete the counter of ``key``, or every counter when ``key`` is None."""
        if key is None:
            return self._run(lambda conn: self._execute(conn, "DELETE FROM {table}_ratelimit").rowcount)
        return self._run(lambda conn: self._execute(
            conn, "DELETE FROM {table}_ratelimit WHERE key = %s", (key,)).rowcount)

    def ratelimit_prune(self) -> int:
        return self._run(lambda conn: self._execute(
            conn, "DELETE FROM {table}_ratelimit WHERE expire <= now()").rowcount)

    # Shared circuit state

    _CIRCUIT_COLUMNS = ("state, failures, successes, opened_at, extract(epoch FROM now() - opened_at)::float8,"
                        " trial_owner, extract(epoch FROM trial_until - now())::float8")

    @staticmethod
    def _circuit_row(row: Any) -> CircuitRow:
        if row is None:
            raise StoreUnavailable("the circuit row is missing; run `flask sessions init-db`")
        opened = row[3].isoformat(timespec="milliseconds") if row[3] else None
        return CircuitRow(row[0], row[1], row[2], opened, row[4], row[5], row[6])

    def circuit_get(self, name: str) -> CircuitRow:
        return self._circuit_row(self._run(lambda conn: self._execute(
            conn, f"SELECT {self._CIRCUIT_COLUMNS} FROM {{table}}_circuit WHERE name = %s", (name,)).fetchone()))

    def circuit_update(self, name: str, decide: CircuitDecision, worker: str) -> tuple[CircuitRow, CircuitRow, Any]:
        """Lock the row, let ``decide`` choose the change, apply it and log a transition; one transaction.

        ``decide`` may run twice when a dead connection forces a retry, so it must not have side effects.
        """
        def work(conn: Any) -> tuple[CircuitRow, CircuitRow, Any]:
            with conn.transaction():
                before = self._circuit_row(self._execute(
                    conn, f"SELECT {self._CIRCUIT_COLUMNS} FROM {{table}}_circuit WHERE name = %s FOR UPDATE",
                    (name,)).fetchone())
                change, result = decide(before)
                if change is None:
                    return before, before, result
                after = self._circuit_row(self._execute(
                    conn,
                    "UPDATE {table}_circuit SET state = %s, failures = %s, successes = %s,"
                    " opened_at = CASE WHEN %s THEN now() ELSE opened_at END, trial_owner = %s,"
                    " trial_until = CASE WHEN %s::float8 IS NULL THEN NULL"
                    " ELSE now() + make_interval(secs => %s::float8) END, updated_at = now()"
                    f" WHERE name = %s RETURNING {self._CIRCUIT_COLUMNS}",
                    (change.state, change.failures, change.successes, change.reopen, change.trial_owner,
                     change.trial_lease, change.trial_lease, name),
                ).fetchone())
                if after.state != before.state:
                    self._execute(conn, "INSERT INTO {table}_circuit_events (name, from_state, to_state, worker)"
                                        " VALUES (%s, %s, %s, %s)", (name, before.state, after.state, worker))
                return before, after, result
        return self._run(work)

    def circuit_events(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._run(lambda conn: self._execute(
            conn, "SELECT at, from_state, to_state, worker FROM {table}_circuit_events WHERE name = %s"
                  " ORDER BY id DESC LIMIT %s", (name, limit)).fetchall())
        return [{"at": at.isoformat(timespec="milliseconds"), "from": old, "to": new, "worker": worker}
                for at, old, new, worker in rows]

    def circuit_prune_events(self, name: str, keep: int = 1000) -> int:
        return self._run(lambda conn: self._execute(
            conn, "DELETE FROM {table}_circuit_events WHERE name = %s AND id <= "
                  "(SELECT max(id) - %s FROM {table}_circuit_events WHERE name = %s)", (name, keep, name)).rowcount)


SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def _epoch_iso(value: float | None) -> str | None:
    from datetime import datetime, timezone

    if value is None:
        return None
    return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="milliseconds")


class _SqliteCircuit:
    """The shared-circuit statements in SQLite's dialect (mixed into SqliteDatabase)."""

    _CIRCUIT_COLUMNS = (f"state, failures, successes, opened_at, {SQLITE_NOW} - opened_at,"
                        f" trial_owner, trial_until - {SQLITE_NOW}")

    @staticmethod
    def _circuit_row(row: Any) -> CircuitRow:
        if row is None:
            raise StoreUnavailable("the circuit row is missing; run `flask sessions init-db`")
        return CircuitRow(row[0], row[1], row[2], _epoch_iso(row[3]), row[4], row[5], row[6])

    def circuit_get(self, name: str) -> CircuitRow:
        return self._circuit_row(self._run(lambda conn: self._execute(
            conn, f"SELECT {self._CIRCUIT_COLUMNS} FROM {{table}}_circuit WHERE name = ?", (name,)).fetchone()))

    def circuit_update(self, name: str, decide: CircuitDecision, worker: str) -> tuple[CircuitRow, CircuitRow, Any]:
        """Same contract as PostgresDatabase.circuit_update; BEGIN IMMEDIATE takes the write lock."""
        def work(conn: sqlite3.Connection) -> tuple[CircuitRow, CircuitRow, Any]:
            with self._transaction(conn):
                before = self._circuit_row(self._execute(
                    conn, f"SELECT {self._CIRCUIT_COLUMNS} FROM {{table}}_circuit WHERE name = ?", (name,)).fetchone())
                change, result = decide(before)
                if change is None:
                    return before, before, result
                self._execute(
                    conn,
                    "UPDATE {table}_circuit SET state = ?, failures = ?, successes = ?,"
                    f" opened_at = CASE WHEN ? THEN {SQLITE_NOW} ELSE opened_at END, trial_owner = ?,"
                    f" trial_until = CASE WHEN ? IS NULL THEN NULL ELSE {SQLITE_NOW} + ? END,"
                    f" updated_at = {SQLITE_NOW} WHERE name = ?",
                    (change.state, change.failures, change.successes, change.reopen, change.trial_owner,
                     change.trial_lease, change.trial_lease, name),
                )
                after = self._circuit_row(self._execute(
                    conn, f"SELECT {self._CIRCUIT_COLUMNS} FROM {{table}}_circuit WHERE name = ?", (name,)).fetchone())
                if after.state != before.state:
                    self._execute(conn, "INSERT INTO {table}_circuit_events (name, at, from_state, to_state, worker)"
                                        f" VALUES (?, {SQLITE_NOW}, ?, ?, ?)",
                                  (name, before.state, after.state, worker))
                return before, after, result
        return self._run(work)

    def circuit_events(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._run(lambda conn: self._execute(
            conn, "SELECT at, from_state, to_state, worker FROM {table}_circuit_events WHERE name = ?"
                  " ORDER BY id DESC LIMIT ?", (name, limit)).fetchall())
        return [{"at": _epoch_iso(at), "from": old, "to": new, "worker": worker} for at, old, new, worker in rows]

    def circuit_prune_events(self, name: str, keep: int = 1000) -> int:
        return self._run(lambda conn: self._execute(
            conn, "DELETE FROM {table}_circuit_events WHERE name = ? AND id <= "
                  "(SELECT max(id) - ? FROM {table}_circuit_events WHERE name = ?)", (name, keep, name)).rowcount)


class SqliteDatabase(_SqliteCircuit, Database):
    """SQLite in WAL mode with a busy timeout, one connection per thread.

    Several gunicorn workers may share the file: WAL lets readers run beside the
    single writer, and the busy timeout makes a writer wait instead of failing.
    """

    backend = "sqlite"

    def __init__(self, path: Path, table: str, *, busy_timeout_ms: int):
        super().__init__(table)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The sessions are for this service's eyes only; SQLite gives its -wal and -shm
        # files the same mode as the database file.
        if str(path) != ":memory:":
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.busy_timeout_ms = busy_timeout_ms or 5000
        self._local = threading.local()
        # Each thread's connection with the lock held while it is in use: closing a
        # sqlite3 connection while another thread runs a statement on it crashes the process.
        self._connections: list[tuple[sqlite3.Connection, threading.Lock]] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> tuple[sqlite3.Connection, threading.Lock]:
        entry = getattr(self._local, "entry", None)
        if entry is not None:
            return entry
        if self._closed:
            raise StoreUnavailable("the session store is closed")
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreUnavailable(str(exc)) from exc
        entry = self._local.entry = (conn, threading.Lock())
        with self._lock:
            self._connections.append(entry)
        return entry

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode unless it already is.

        The mode is stored in the file, so only the first connection to a new file
        changes it. That change needs the file to itself. When several workers open a
        new file together, SQLite reports "database is locked" at once, without waiting
        out the busy timeout, so this retries until the busy timeout has passed.
        """
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0].lower()
            if mode == "wal":
                return
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            else:
                if mode != "wal":
                    # SQLite answered with the mode it keeps (storage without shared memory,
                    # an in-memory database): asking again would not change it.
                    logger.warning("SQLite kept journal mode %s instead of WAL for %s", mode, self.path)
                return
            time.sleep(random.uniform(0.005, 0.05))

    def close(self, timeout: float = 5.0) -> None:
        """Close every thread's connection once its current statement is done.

        A connection still busy after ``timeout`` seconds is left open rather than
        closed under the statement that uses it.
        """
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn, in_use in connections:
            if not in_use.acquire(timeout=timeout):
                logger.warning("left a busy SQLite connection open at shutdown")
                continue
            try:
                conn.close()
            except sqlite3.Error:
                pass
            finally:
                in_use.release()

    def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        conn, in_use = self._connect()
        with in_use:
            if self._closed:
                raise StoreUnavailable("the session store is closed")
            try:
                return work(conn)
            except sqlite3.Error as exc:
                raise StoreUnavailable(str(exc)) from exc

    def _execute(self, conn: sqlite3.Connection, template: str, params: tuple = ()) -> sqlite3.Cursor:
        sql = self._sql(template)
        self._notify(sql)
        return conn.execute(sql, params)

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def migrate(self) -> None:
        def work(conn: sqlite3.Connection) -> None:
            for path in schema_files(self.backend):
                self._notify(path.name)
                conn.executescript(self._sql(path.read_text()))
        self._run(work)

    def ping(self) -> None:
        self._run(lambda conn: self._execute(conn, "SELECT 1").fetchone())

    def session_get(self, sid: str) -> SessionRow | None:
        row = self._run(lambda conn: self._execute(
            conn,
            f"SELECT sess, expire - {SQLITE_NOW}, user_id FROM {{table}} WHERE sid = ? AND expire > {SQLITE_NOW}",
            (sid,),
        ).fetchone())
        return SessionRow(row[0], row[1], row[2]) if row else None

    def session_insert(self, sid: str, data: str, user_id: str | None, lifetime: int) -> None:
        self._run(lambda conn: self._execute(
            conn,
            f"INSERT INTO {{table}} (sid, sess, expire, created_at, user_id)"
            f" VALUES (?, ?, {SQLITE_NOW} + ?, {SQLITE_NOW}, ?)",
            (sid, data, lifetime, user_id),
        ))

    def session_update(self, sid: str, data: str, user_id: str | None, lifetime: int, absolute: int) -> bool:
        cursor = self._run(lambda conn: self._execute(
            conn,
            f"UPDATE {{table}} SET sess = ?, user_id = ?, expire = min({SQLITE_NOW} + ?, created_at + ?)"
            f" WHERE sid = ? AND expire > {SQLITE_NOW}",
            (data, user_id, lifetime, absolute, sid),
        ))
        return cursor.rowcount > 0

    def session_delete(self, sid: str) -> None:
        self._run(lambda conn: self._execute(conn, "DELETE FROM {table} WHERE sid = ?", (sid,)))

    def session_rotate(self, old_sid: str | None, sid: str, data: str, user_id: str | None, lifetime: int) -> None:
        def work(conn: sqlite3.Connection) -> None:
            with self._transaction(conn):
                if old_sid:
                    self._execute(conn, "DELETE FROM {table} WHERE sid = ?", (old_sid,))
                self._execute(
                    conn,
                    f"INSERT INTO {{table}} (sid, sess, expire, created_at, user_id)"
                    f" VALUES (?, ?, {SQLITE_NOW} + ?, {SQLITE_NOW}, ?)",
                    (sid, data, lifetime, user_id),
                )
        self._run(work)

    def prune(self, batch_size: int = 1000, max_batches: int = 1000, pause: float = 0.0) -> PruneResult:
        """Delete expired rows in batches; SQLite's single writer lock serialises pruners."""
        deleted = batches = 0
        while batches < max_batches:
            if batches and pause:
                time.sleep(pause)
            def batch(conn: sqlite3.Connection) -> int:
                with self._transaction(conn):
                    return self._execute(
                        conn,
                        f"DELETE FROM {{table}} WHERE sid IN (SELECT sid FROM {{table}}"
                        f" WHERE expire <= {SQLITE_NOW} LIMIT ?)",
                        (batch_size,),
                    ).rowcount
            count = self._run(batch)
            batches += 1
            deleted += count
            if count < batch_size:
                break
        return PruneResult(deleted, batches, skipped=False)

    def stats(self) -> dict[str, Any]:
        row = self._run(lambda conn: self._execute(
            conn,
            f"SELECT count(*), sum(expire > {SQLITE_NOW}),"
            f" sum(expire > {SQLITE_NOW} AND user_id IS NULL),"
            f" count(DISTINCT CASE WHEN expire > {SQLITE_NOW} THEN user_id END),"
            f" min(CASE WHEN expire > {SQLITE_NOW} AND user_id IS NOT NULL THEN created_at END)"
            " FROM {table}",
        ).fetchone())
        from datetime import datetime, timezone

        oldest = datetime.fromtimestamp(row[4], timezone.utc).isoformat() if row[4] else None
        size = self.path.stat().st_size if self.path.exists() else 0
        live = row[1] or 0
        return {"rows": row[0], "live": live, "anonymous": row[2] or 0, "expired": row[0] - live, "users": row[3],
                "oldest_login": oldest, "bytes": size}

    def revoke_user(self, user_id: str) -> int:
        return self._run(lambda conn: self._execute(
            conn, "DELETE FROM {table} WHERE user_id = ?", (user_id,)).rowcount)

    def revoke_all(self) -> int:
        return self._run(lambda conn: self._execute(conn, "DELETE FROM {table}").rowcount)

    # Rate-limit counters, same contract as PostgresDatabase's

    def ratelimit_incr(self, key: str, expiry: float, amount: int) -> int:
        return self._run(lambda conn: self._execute(
            conn,
            f"INSERT INTO {{table}}_ratelimit (key, hits, expire) VALUES (?, ?, {SQLITE_NOW} + ?)"
            " ON CONFLICT (key) DO UPDATE SET"
            f" hits = CASE WHEN expire > {SQLITE_NOW} THEN hits + excluded.hits ELSE excluded.hits END,"
            f" expire = CASE WHEN expire > {SQLITE_NOW} THEN expire ELSE excluded.expire END"
            " RETURNING hits",
            (key, amount, expiry),
        ).fetchall()[0][0])  # fetchall: the write ends only once every row is read

    def ratelimit_get(self, key: str) -> tuple[int, float | None]:
        row = self._run(lambda conn: self._execute(
            conn, f"SELECT hits, expire FROM {{table}}_ratelimit WHERE key = ? AND expire > {SQLITE_NOW}",
            (key,)).fetchone())
        return (row[0], row[1]) if row else (0, None)

    def ratelimit_clear(self, key: str | None = None) -> int:
        if key is None:
            return self._run(lambda conn: self._execute(conn, "DELETE FROM {table}_ratelimit").rowcount)
        return self._run(lambda conn: self._execute(
            conn, "DELETE FROM {table}_ratelimit WHERE key = ?", (key,)).rowcount)

    def ratelimit_prune(self) -> int:
        return self._run(lambda conn: self._execute(
            conn, f"DELETE FROM {{table}}_ratelimit WHERE expire <= {SQLITE_NOW}").rowcount)


def open_database(settings: Any) -> Database:
    """Build the store the settings select: PostgreSQL when a URL is set, SQLite otherwise."""
    if settings.database_url:
        return PostgresDatabase(
            settings.database_url, settings.session_table,
            min_size=settings.db_pool_min, max_size=settings.db_pool_max,
            timeout=settings.db_pool_timeout, statement_timeout_ms=settings.db_statement_timeout_ms,
            via_pooler=settings.database_via_pooler,
        )
    return SqliteDatabase(settings.sqlite_path, settings.session_table,
                          busy_timeout_ms=settings.db_statement_timeout_ms)
