"""Counters of WUZAPI calls for /health, kept per worker process.

Counted in the client's own callbacks rather than read from tenacity's ``statistics``,
which concurrent calls share and reset.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any

OUTCOMES = (
    "succeeded",               # answered on the first attempt
    "succeeded_after_retry",   # answered after one or more retries
    "failed",                  # failed without a retry (unsafe to repeat, or no time left)
    "failed_after_retry",      # retries exhausted
    "rejected_by_circuit",     # never sent: the circuit was open
)

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class CallMetrics:
    """Thread-safe counters and a latency histogram. Stateful; one per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.attempts = 0
        self.retries = 0
        self.retry_wait_seconds = 0.0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)

    def attempt(self) -> None:
        with self._lock:
            self.attempts += 1

    def retry(self, wait_seconds: float) -> None:
        with self._lock:
            self.retries += 1
            self.retry_wait_seconds += wait_seconds

    def call_finished(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            self.latency_counts[bisect_left(LATENCY_BUCKETS_MS, seconds * 1000)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            buckets = {f"le_{bound}ms": count for bound, count in zip(LATENCY_BUCKETS_MS, self.latency_counts)}
            buckets["above"] = self.latency_counts[-1]
            return {
                "calls": dict(self.outcomes),
                "attempts": self.attempts,
                "retries": self.retries,
                "retry_wait_seconds": round(self.retry_wait_seconds, 3),
                "latency": buckets,
            }
