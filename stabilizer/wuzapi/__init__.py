"""The WUZAPI client and its resilience policy: retry(breaker(one attempt))."""

from __future__ import annotations

from typing import Any

from .breaker import ConcurrentCircuitBreaker
from .budget import RetryBudget
from .client import RetryPolicy, UpstreamResponse, WuzapiClient
from .metrics import CallMetrics
from .shared import SharedCircuitBreaker

__all__ = ["ConcurrentCircuitBreaker", "SharedCircuitBreaker", "RetryBudget", "RetryPolicy", "UpstreamResponse",
           "WuzapiClient", "CallMetrics", "build_client"]


def build_client(settings: Any, database: Any) -> tuple[WuzapiClient, Any, CallMetrics]:
    """Build this process's client, circuit breaker and metrics.

    The breaker is shared through ``database`` by every worker, with a per-process
    breaker as its fallback; it is None when WUZAPI_CIRCUIT_ENABLED=false.
    """
    policy = RetryPolicy.from_settings(settings)
    breaker = None
    if settings.wuzapi_circuit_enabled:
        local = ConcurrentCircuitBreaker(
            fail_max=settings.wuzapi_circuit_failure_threshold,
            reset_timeout=settings.wuzapi_circuit_reset_timeout_ms / 1000,
            success_threshold=settings.wuzapi_circuit_success_threshold,
        )
        breaker = SharedCircuitBreaker(
            database, fail_max=local.fail_max, reset_timeout=local.reset_timeout,
            success_threshold=local.success_threshold, lease=max(policy.deadline, 60.0) + 5.0, fallback=local,
        )
    metrics = CallMetrics()
    budget = RetryBudget(ratio=settings.wuzapi_retry_budget_percent / 100,
                         min_per_second=settings.wuzapi_retry_budget_min_per_second)
    client = WuzapiClient(settings.wuzapi_base_url, policy, breaker=breaker, metrics=metrics, budget=budget,
                          pool_size=settings.gunicorn_threads + 2)
    return client, breaker, metrics
