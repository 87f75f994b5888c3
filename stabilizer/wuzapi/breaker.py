"""A pybreaker circuit breaker whose guarded calls run concurrently.

pybreaker 1.4.1's ``CircuitBreaker.call`` holds the breaker's lock for the whole guarded
call, which serialises every WUZAPI call of a worker's threads and makes callers queue
behind a half-open trial. This subclass keeps pybreaker's state storage, listeners and
transitions, but takes the lock only to admit a call and to record its result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable, TypeVar

import pybreaker

from .errors import CircuitOpen, UpstreamFailure

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRANSITIONS_KEPT = 50


def guarded_call(breaker: Any, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``func`` if ``breaker.admit()`` lets it; its own exception propagates, even on the call that trips.

    ``breaker`` is any circuit with ``admit()`` and ``record(trial, exception)``; no lock is
    held while ``func`` runs.
    """
    trial = breaker.admit()
    try:
        result = func(*args, **kwargs)
    except BaseException as exc:
        breaker.record(trial, exc)
        raise
    breaker.record(trial, None)
    return result


class ConcurrentCircuitBreaker(pybreaker.CircuitBreaker):
    """Consecutive-failure breaker: closed → open → half-open (one trial at a time) → closed.

    Stateful and thread-safe. A failure is an :class:`UpstreamFailure` only. An answer
    from WUZAPI that is not a failure (any 4xx, an enveloped 500) counts as a success:
    it resets the failure count and, as a half-open trial, proves WUZAPI is answering.
    Any other exception (429, a bug in the caller) leaves the counters as they were.

    The open period is timed with ``clock`` (monotonic by default), so a wall-clock
    step cannot shorten or lengthen it; ``opened_at`` is kept as wall time for display.
    """

    def __init__(self, *, fail_max: int, reset_timeout: float, success_threshold: int,
                 name: str = "wuzapi", clock: Callable[[], float] = time.monotonic):
        super().__init__(fail_max=fail_max, reset_timeout=reset_timeout, success_threshold=success_threshold,
                         name=name, throw_new_error_on_trip=False)
        self._clock = clock
        self._opened_clock: float | None = None
        self._trial_in_flight = False
        self._guard = threading.Lock()
        self.transitions: deque[dict[str, Any]] = deque(maxlen=TRANSITIONS_KEPT)

    def is_system_error(self, exception: BaseException) -> bool:
        return isinstance(exception, UpstreamFailure)

    def seconds_until_trial(self) -> float | None:
        """Return the seconds left in the open period, 0 once a trial may go, None unless open."""
        with self._guard:
            return self._remaining_locked()

    def _remaining_locked(self) -> float | None:
        if self.current_state != pybreaker.STATE_OPEN or self._opened_clock is None:
            return None
        return max(0.0, self._opened_clock + self.reset_timeout - self._clock())

    def _move(self, new_state: str) -> None:
        old_state = self.current_state
        if new_state == pybreaker.STATE_OPEN:
            self._opened_clock = self._clock()
            self.open()
        elif new_state == pybreaker.STATE_HALF_OPEN:
            self.half_open()
        else:
            self._opened_clock = None
            self.close()
        self.transitions.append({"from": old_state, "to": new_state,
                                 "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds")})
        log = logger.warning if new_state == pybreaker.STATE_OPEN else logger.info
        log("WUZAPI circuit %s -> %s", old_state, new_state)
        from .metrics import record_transition

        record_transition(new_state)

    def admit(self) -> bool:
        """Admit one call or raise CircuitOpen; return True when the call is the half-open trial."""
        with self._guard:
            state = self.current_state
            if state == pybreaker.STATE_OPEN:
                remaining = self._remaining_locked()
                if remaining:
                    raise CircuitOpen(remaining)
                self._move(pybreaker.STATE_HALF_OPEN)
                state = pybreaker.STATE_HALF_OPEN
            if state == pybreaker.STATE_HALF_OPEN:
                if self._trial_in_flight:
                    raise CircuitOpen(0.0)
                self._trial_in_flight = True
                return True
            return False

    def record(self, trial: bool, exception: BaseException | None) -> None:
        """Record the outcome of an admitted call: None for an answer, else what it raised."""
        with self._guard:
            if trial:
                self._trial_in_flight = False
            if exception is not None and not self.is_system_error(exception):
                return
            if exception is None:
                self._state_storage.reset_counter()
                if trial or self.current_state == pybreaker.STATE_HALF_OPEN:
                    self._state_storage.increment_success_counter()
                    if self._state_storage.success_counter >= self.success_threshold:
                        self._move(pybreaker.STATE_CLOSED)
                return
            self._state_storage.increment_counter()
            if trial or self.current_state == pybreaker.STATE_HALF_OPEN:
                self._move(pybreaker.STATE_OPEN)
            elif self.current_state == pybreaker.STATE_CLOSED and self.fail_counter >= self.fail_max:
                self._move(pybreaker.STATE_OPEN)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return guarded_call(self, func, *args, **kwargs)

    def reset(self) -> None:
        """Close the circuit and clear its counters (operator action)."""
        with self._guard:
            self._trial_in_flight = False
            self._state_storage.reset_counter()
            if self.current_state != pybreaker.STATE_CLOSED:
                self._move(pybreaker.STATE_CLOSED)

    def snapshot(self) -> dict[str, Any]:
        with self._guard:
            opened_at = self._state_storage.opened_at if self.current_state != pybreaker.STATE_CLOSED else None
            remaining = self._remaining_locked()
            return {
                "state": self.current_state,
                "failures": self.fail_counter,
                "failure_threshold": self.fail_max,
                "opened_at": opened_at.isoformat(timespec="milliseconds") if opened_at else None,
                "seconds_until_trial": round(remaining, 3) if remaining is not None else None,
                "trial_in_flight": self._trial_in_flight,
                "transitions": list(self.transitions),
            }
