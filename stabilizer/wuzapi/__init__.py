"""The WUZAPI client and its resilience policy: retry(breaker(one attempt))."""

from __future__ import annotations

from typing import Any

from .breaker import ConcurrentCircuitBreaker
from .client import RetryPolicy, UpstreamResponse, WuzapiClient
from .metrics import CallMetrics

__all__ = ["ConcurrentCircuitBreaker", "RetryPolicy", "UpstreamResponse", "WuzapiClient", "CallMetrics",
           "build_client"]


def build_client(settings: Any) -> tuple[WuzapiClient, ConcurrentCircuitBreaker | None, CallMetrics]:
    """Build this process's client, breaker (None when WUZAPI_CIRCUIT_ENABLED=false) and metrics."""
    breaker = None
    if settings.wuzapi_circuit_enabled:
        breaker = ConcurrentCircuitBreaker(
            fail_max=settings.wuzapi_circuit_failure_threshold,
            reset_timeout=settings.wuzapi_circuit_reset_timeout_ms / 1000,
            success_threshold=settings.wuzapi_circuit_success_threshold,
        )
    metrics = CallMetrics()
    client = WuzapiClient(settings.wuzapi_base_url, RetryPolicy.from_settings(settings), breaker=breaker,
                          metrics=metrics, pool_size=settings.gunicorn_threads + 2)
    return client, breaker, metrics
