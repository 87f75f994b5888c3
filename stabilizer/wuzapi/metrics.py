"""Counters of WUZAPI calls, for /health and Prometheus.

Each count goes to two places: this object's own counters (one process) and the
module's Prometheus metrics. Under gunicorn, prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set in gunicorn.conf.py) sums the Prometheus metrics over
every worker of the instance, and :func:`instance_snapshot` reads those sums for
/health. Counting happens in the client's own callbacks rather than through tenacity's
``statistics``, which concurrent calls share and reset.
"""

from __future__ import annotations

import glob
import os
import threading
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

OUTCOMES = (
    "succeeded",               # answered on the first attempt
    "succeeded_after_retry",   # answered after one or more retries
    "failed",                  # failed without a retry (unsafe to repeat, no budget or no time left)
    "failed_after_retry",      # failed after one or more retries
    "rejected_by_circuit",     # never sent: the circuit was open
)

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)

CALLS = Counter("stabilizer_wuzapi_calls", "WUZAPI calls by outcome.", ["outcome"])
ATTEMPTS = Counter("stabilizer_wuzapi_attempts", "HTTP attempts sent to WUZAPI, retries included.")
RETRIES = Counter("stabilizer_wuzapi_retries", "Retries sent after a failed attempt.")
RETRY_WAIT = Counter("stabilizer_wuzapi_retry_wait_seconds", "Seconds spent waiting before retries.")
BUDGET_EXHAUSTED = Counter("stabilizer_wuzapi_retry_budget_exhausted",
                           "Retries skipped because the retry budget was spent.")
BUDGET_REMAINING = Gauge("stabilizer_wuzapi_retry_budget_remaining", "Retry tokens left, summed over workers.",
                         multiprocess_mode="livesum")
TRANSITIONS = Counter("stabilizer_wuzapi_circuit_transitions", "Circuit state changes made by this instance.",
                      ["to"])
LATENCY = Histogram("stabilizer_wuzapi_call_duration_seconds", "Duration of whole WUZAPI calls, retries included.",
                    buckets=[bound / 1000 for bound in LATENCY_BUCKETS_MS])


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def record_transition(to_state: str) -> None:
    TRANSITIONS.labels(to=to_state).inc()


class CallMetrics:
    """Thread-safe counters and a latency histogram of one process. Stateful."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.attempts = 0
        self.retries = 0
        self.retry_wait_seconds = 0.0
        self.budget_exhausted = 0
        self.budget_remaining: float | None = None
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)

    def attempt(self, retry: bool = False) -> None:
        """Count one attempt sent to WUZAPI; ``retry`` when an earlier attempt of the call failed."""
        with self._lock:
            self.attempts += 1
            if retry:
                self.retries += 1
        ATTEMPTS.inc()
        if retry:
            RETRIES.inc()

    def retry_wait(self, wait_seconds: float) -> None:
        with self._lock:
            self.retry_wait_seconds += wait_seconds
        RETRY_WAIT.inc(wait_seconds)

    def no_budget(self) -> None:
        with self._lock:
            self.budget_exhausted += 1
        BUDGET_EXHAUSTED.inc()

    def budget(self, remaining: float) -> None:
        with self._lock:
            self.budget_remaining = remaining
        BUDGET_REMAINING.set(remaining)

    def call_finished(self, outcome: str, seconds: float) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            self.latency_counts[bisect_left(LATENCY_BUCKETS_MS, seconds * 1000)] += 1
        CALLS.labels(outcome=outcome).inc()
        LATENCY.observe(seconds)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            bounded = zip(LATENCY_BUCKETS_MS, self.latency_counts[:-1], strict=True)
            buckets = {f"le_{bound}ms": count for bound, count in bounded}
            buckets["above"] = self.latency_counts[-1]
            return {
                "scope": "process",
                "calls": dict(self.outcomes),
                "attempts": self.attempts,
                "retries": self.retries,
                "retry_wait_seconds": round(self.retry_wait_seconds, 3),
                "retry_budget_exhausted": self.budget_exhausted,
                "retry_budget_remaining": self.budget_remaining,
                "latency": buckets,
            }


class _SettledFilesCollector(multiprocess.MultiProcessCollector):
    """Sum the workers' metric files, skipping one that a starting worker has created but not sized.

    prometheus_client 0.26 raises ``struct.error`` on such an empty file, which would turn
    /health and /metrics into 500s while gunicorn replaces a worker.
    """

    def collect(self):
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path) >= 8:
                    files.append(path)
            except OSError:  # removed by child_exit meanwhile
                pass
        return self.merge(files, accumulate=True)


def instance_registry() -> CollectorRegistry | None:
    """Return a registry that sums every worker's metrics, or None outside multiprocess mode."""
    if not multiprocess_mode():
        return None
    registry = CollectorRegistry()
    _SettledFilesCollector(registry)
    return registry


def instance_snapshot(local: CallMetrics) -> dict[str, Any]:
    """Return the call counters summed over the instance's workers, else this process's own."""
    registry = instance_registry()
    if registry is None:
        return local.snapshot()

    calls = dict.fromkeys(OUTCOMES, 0)
    totals: dict[str, float] = {}
    buckets: dict[str, int] = {}
    transitions: dict[str, int] = {}
    budget = None
    for family in registry.collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "stabilizer_wuzapi_calls_total":
                calls[labels["outcome"]] = int(value)
            elif name == "stabilizer_wuzapi_call_duration_seconds_bucket":
                buckets[labels["le"]] = int(value)
            elif name == "stabilizer_wuzapi_circuit_transitions_total":
                transitions[labels["to"]] = int(value)
            elif name == "stabilizer_wuzapi_retry_budget_remaining":
                budget = round(value, 2)
            elif name.endswith("_total"):
                totals[name] = value

    latency: dict[str, int] = {}
    previous = 0
    for bound in LATENCY_BUCKETS_MS:
        cumulative = buckets.get(str(float(bound / 1000)), previous)
        latency[f"le_{bound}ms"] = cumulative - previous
        previous = cumulative
    latency["above"] = buckets.get("+Inf", previous) - previous
    return {
        "scope": "instance",
        "calls": calls,
        "attempts": int(totals.get("stabilizer_wuzapi_attempts_total", 0)),
        "retries": int(totals.get("stabilizer_wuzapi_retries_total", 0)),
        "retry_wait_seconds": round(totals.get("stabilizer_wuzapi_retry_wait_seconds_total", 0.0), 3),
        "retry_budget_exhausted": int(totals.get("stabilizer_wuzapi_retry_budget_exhausted_total", 0)),
        "retry_budget_remaining": budget,
        "circuit_transitions": transitions,
        "latency": latency,
    }
