"""A circuit breaker whose state lives in the session database, shared by every worker.

pybreaker 1.4.1's storage interface (increment, then read, then set state) has no
atomic compare-and-set, and its Redis storage reports "closed" when Redis fails. So the
shared state machine is written here against the database: every change is one
transaction that locks the circuit row, decides, and updates it. The per-process
:class:`ConcurrentCircuitBreaker` (a pybreaker subclass) takes over while the database
is unreachable.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, TypeVar

from ..db import CircuitChange, CircuitRow, Database, StoreUnavailable
from .breaker import ConcurrentCircuitBreaker, guarded_call
from .errors import CircuitOpen, UpstreamFailure

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
EVENTS_EVERY = 10  # refreshes between two reads of the transition log
FIRST_READ_WAIT = 0.1  # seconds /health waits for the very first read of the shared state


class SharedCircuitBreaker:
    """Closed → open → half-open → closed, agreed on by every worker through one table row.

    Stateful and thread-safe. Workers read the row through a cache that a background
    thread refreshes every ``refresh_interval`` seconds. Without that thread (CLI,
    tests), a cache older than ``max_age`` is refreshed inline. So once any worker opens
    the circuit, all workers fail fast within about a second. Calls admitted while the
    circuit is closed cost no query; opening, trial calls and transitions each cost one
    transaction.

    Each worker counts its own consecutive failures, and the worker that reaches
    ``fail_max`` opens the circuit for everyone. A cluster-wide count would need a
    database write on every success to stay consecutive. Without that write, a success
    seen by a worker with a stale cache would leave other workers' failures counted, so
    scattered transient faults would open the circuit. Exactly one trial call at a time holds the
    half-open lease; the lease expires after ``lease`` seconds if its holder dies.

    What counts: an :class:`UpstreamFailure` is a failure; a returned answer (any 4xx,
    an enveloped 500) is a success; any other exception (429, a bug) changes nothing.
    """

    def __init__(self, database: Database, *, fail_max: int, reset_timeout: float, success_threshold: int,
                 lease: float, fallback: ConcurrentCircuitBreaker, name: str = "wuzapi",
                 refresh_interval: float = 0.5, max_age: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.database = database
        self.name = name
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self.success_threshold = success_threshold
        self.lease = lease
        self.fallback = fallback
        self.refresh_interval = refresh_interval
        self.max_age = max_age
        self._clock = clock
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.Lock()
        self._row: CircuitRow | None = None
        self._read_at = 0.0
        self._events: list[dict[str, Any]] = []
        self._refreshes = 0
        self._events_stale = False
        self._pending_refresh: threading.Event | None = None
        self._consecutive_failures = 0  # this worker's, reset by any success
        self.fallback_active = False
        self.fallback_reason: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Cache

    def _store(self, row: CircuitRow) -> None:
        with self._lock:
            self._row = row
            self._read_at = self._clock()
        if self.fallback_active:
            logger.warning("circuit state database reachable again; using the shared circuit")
            self.fallback_active = False
            self.fallback_reason = None

    def _lost_database(self, error: Exception) -> None:
        if not self.fallback_active:
            logger.warning("circuit state database unreachable, using this worker's own circuit: %s", error)
        self.fallback_active = True
        self.fallback_reason = str(error)

    def refresh(self) -> None:
        """Read the row into the cache, and the transition log now and then or when the state changed."""
        try:
            with self._lock:
                previous = self._row.state if self._row is not None else None
            row = self.database.circuit_get(self.name)
            self._store(row)
            if self._refreshes % EVENTS_EVERY == 0 or row.state != previous or self._events_stale:
                events = self.database.circuit_events(self.name, limit=20)
                with self._lock:
                    self._events = events
                self._events_stale = False
            self._refreshes += 1
        except StoreUnavailable as exc:
            self._lost_database(exc)

    def _cached(self, inline: bool = True) -> tuple[CircuitRow | None, float]:
        """Return the cached row and its age; refresh a stale cache when no refresher thread runs.

        ``inline`` False never waits for the database: a stale cache is refreshed in a
        one-off thread and the current (possibly stale) row is returned at once.
        """
        with self._lock:
            row, read_at = self._row, self._read_at
        age = self._clock() - read_at
        if (row is None or age > self.max_age) and self._thread is None:
            if not inline:
                self._refresh_soon()
                return row, age
            self.refresh()
            with self._lock:
                row, read_at = self._row, self._read_at
            age = self._clock() - read_at
        return row, age

    def _refresh_soon(self) -> tuple[threading.Event, bool]:
        """Start a one-off refresh thread unless one runs; return its end event and whether it is new."""
        with self._lock:
            if self._pending_refresh is not None:
                return self._pending_refresh, False
            done = self._pending_refresh = threading.Event()

        def run() -> None:
            try:
                self.refresh()
            finally:
                with self._lock:
                    self._pending_refresh = None
                done.set()

        threading.Thread(target=run, name="circuit-refresh-once", daemon=True).start()
        return done, True

    def _remaining(self, row: CircuitRow | None, age: float) -> float | None:
        if row is None or row.state != OPEN or row.open_for is None:
            return None
        return max(0.0, self.reset_timeout - row.open_for - age)

    # Background refresh, one thread per worker process

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="circuit-refresh", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - logged; the next refresh may succeed
                logger.exception("circuit refresh failed")
                self._stop.wait(2.0)
            self._stop.wait(self.refresh_interval)

    # Transactions

    def _update(self, decide) -> Any:
        before, after, result = self.database.circuit_update(self.name, decide, self.worker)
        self._store(after)
        if after.state != before.state:
            self._events_stale = True  # the next refresh reads the transition log
            log = logger.warning if after.state == OPEN else logger.info
            log("WUZAPI circuit %s -> %s (shared)", before.state, after.state)
            from .metrics import record_transition

            record_transition(after.state)
        return result

    def admit(self) -> str | None:
        """Admit one call or raise CircuitOpen. Return the trial lease owner, or None for a normal call."""
        if self.fallback_active:
            return "local-trial" if self.fallback.admit() else None
        row, age = self._cached()
        if self.fallback_active or row is None:
            return "local-trial" if self.fallback.admit() else None
        if row.state == CLOSED:
            return None
        remaining = self._remaining(row, age)
        if row.state == OPEN and remaining:
            raise CircuitOpen(remaining)

        owner = uuid.uuid4().hex
        reset_timeout, lease = self.reset_timeout, self.lease

        def acquire(current: CircuitRow) -> tuple[CircuitChange | None, bool]:
            if current.state == CLOSED:
                return None, False
            if current.state == OPEN and (current.open_for or 0.0) < reset_timeout:
                return None, False
            if current.state == HALF_OPEN and current.trial_owner and (current.trial_left or 0.0) > 0:
                return None, False
            successes = current.successes if current.state == HALF_OPEN else 0
            return CircuitChange(HALF_OPEN, current.failures, successes, trial_owner=owner, trial_lease=lease), True

        try:
            acquired = self._update(acquire)
        except StoreUnavailable as exc:
            self._lost_database(exc)
            return "local-trial" if self.fallback.admit() else None
        if acquired:
            return owner
        row, age = self._cached()
        if row is not None and row.state == CLOSED:
            return None
        raise CircuitOpen(self._remaining(row, age) or 0.0)

    def record(self, trial: str | None, exception: BaseException | None) -> None:
        """Record the outcome of an admitted call: None for an answer, else what it raised."""
        if trial == "local-trial" or (trial is None and self.fallback_active):
            self.fallback.record(trial is not None, exception)
            return
        failed = isinstance(exception, UpstreamFailure)
        neutral = exception is not None and not failed
        try:
            if trial is not None:
                self._record_trial(trial, failed, neutral)
            elif failed:
                self._record_failure()
            elif not neutral:
                with self._lock:
                    self._consecutive_failures = 0
        except StoreUnavailable as exc:
            self._lost_database(exc)
            self.fallback.record(False, exception)

    def _record_failure(self) -> None:
        with self._lock:
            self._consecutive_failures += 1
            failures = self._consecutive_failures
        if failures < self.fail_max:
            return

        def decide(current: CircuitRow) -> tuple[CircuitChange | None, None]:
            if current.state != CLOSED:
                return None, None  # already opened, by this worker or another
            return CircuitChange(OPEN, failures, 0, reopen=True), None

        self._update(decide)
        with self._lock:
            self._consecutive_failures = 0

    def _record_trial(self, owner: str, failed: bool, neutral: bool) -> None:
        threshold = self.success_threshold

        def decide(current: CircuitRow) -> tuple[CircuitChange | None, None]:
            if current.state != HALF_OPEN or current.trial_owner != owner:
                return None, None  # the lease expired and someone else took over
            if neutral:
                return CircuitChange(HALF_OPEN, current.failures, current.successes), None
            if failed:
                return CircuitChange(OPEN, current.failures + 1, 0, reopen=True), None
            successes = current.successes + 1
            if successes >= threshold:
                return CircuitChange(CLOSED, 0, 0), None
            return CircuitChange(HALF_OPEN, current.failures, successes), None

        self._update(decide)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return guarded_call(self, func, *args, **kwargs)

    # Operators and /health

    def reset(self) -> None:
        """Close the circuit for every worker and clear its counters."""
        self._update(lambda current: (CircuitChange(CLOSED, 0, 0), None))
        with self._lock:
            self._consecutive_failures = 0
        self.fallback.reset()

    def seconds_until_trial(self) -> float | None:
        """Return the seconds the circuit stays open, from the cache as it is; never queries.

        The client asks this before every call, so it must cost nothing. A stale cache
        errs towards admitting the call, and :meth:`admit` then reads the row.
        """
        if self.fallback_active:
            return self.fallback.seconds_until_trial()
        with self._lock:
            row, read_at = self._row, self._read_at
        return self._remaining(row, self._clock() - read_at)

    def snapshot(self) -> dict[str, Any]:
        if self.fallback_active:
            local = self.fallback.snapshot()
            return {**local, "scope": "process", "shared": False,
                    "note": f"circuit database unreachable: {self.fallback_reason}"}
        with self._lock:
            never_read = self._row is None
        if never_read:
            # The request that starts the first read gives it a moment; others do not wait,
            # so a hung database cannot slow every /health answer.
            done, started = self._refresh_soon()
            if started:
                done.wait(FIRST_READ_WAIT)
        row, age = self._cached(inline=False)
        if self.fallback_active:
            return self.snapshot()
        if row is None:
            return {"state": "unknown", "scope": "cluster", "shared": True,
                    "note": "the shared circuit state has not been read yet"}
        remaining = self._remaining(row, age)
        with self._lock:
            events = list(self._events)
        return {
            "state": row.state,
            "failures": row.failures if row.state != CLOSED else self._consecutive_failures,
            "failures_scope": "at opening" if row.state != CLOSED else "this worker",
            "failure_threshold": self.fail_max,
            "successes": row.successes,
            "success_threshold": self.success_threshold,
            "opened_at": row.opened_at if row.state != CLOSED else None,
            "seconds_until_trial": round(remaining, 3) if remaining is not None else None,
            "trial_in_flight": bool(row.trial_owner and (row.trial_left or 0) > 0),
            "cache_age_seconds": round(age, 3),
            "scope": "cluster",
            "shared": True,
            "transitions": events,
        }
