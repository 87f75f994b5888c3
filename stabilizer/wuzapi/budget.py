"""A retry budget: retries may add at most a fixed fraction of extra load on WUZAPI."""

from __future__ import annotations

import threading
import time
from typing import Callable


class RetryBudget:
    """Token bucket shared by one process's calls. Stateful and thread-safe.

    Every call deposits ``ratio`` tokens; every retry withdraws one. ``min_per_second``
    tokens also accrue with time, so a quiet process can still retry a little. The
    balance never exceeds ``burst``. With ``ratio`` 0.2, a failing WUZAPI receives at
    most 20 % extra calls from retries, plus the floor. Each gunicorn worker has its own
    bucket, so an instance's cap is the same fraction of its calls, plus one floor per
    worker. A 20 % fault rate needs about 0.25 retries per call (0.2 + 0.2² + 0.2³), more
    than the ratio alone gives, and the floor covers the rest up to about
    ``min_per_second × 20`` calls per second.
    """

    def __init__(self, ratio: float = 0.2, min_per_second: float = 10.0, burst: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._balance = burst
        self._updated = clock()
        self.exhausted = 0

    def _refill_locked(self) -> None:
        now = self._clock()
        self._balance = min(self.burst, self._balance + (now - self._updated) * self.min_per_second)
        self._updated = now

    def deposit(self) -> None:
        """Count one call."""
        with self._lock:
            self._refill_locked()
            self._balance = min(self.burst, self._balance + self.ratio)

    def try_withdraw(self) -> bool:
        """Take one retry token; False (and counted) when the budget is spent."""
        with self._lock:
            self._refill_locked()
            if self._balance >= 1.0:
                self._balance -= 1.0
                return True
            self.exhausted += 1
            return False

    def refund(self) -> None:
        """Give back a token taken for a retry that was never sent."""
        with self._lock:
            self._refill_locked()
            self._balance = min(self.burst, self._balance + 1.0)

    def remaining(self) -> float:
        with self._lock:
            self._refill_locked()
            return round(self._balance, 2)
