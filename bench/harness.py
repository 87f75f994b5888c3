"""Latency summaries for the benchmarks; processes and load loops come from tests/processes.py."""

from __future__ import annotations

from statistics import median

from tests.processes import ROOT, SECRET, Gunicorn, free_port, run_load

__all__ = ["ROOT", "SECRET", "Gunicorn", "free_port", "run_load", "percentile", "summary_ms"]


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: list[float]) -> dict[str, float]:
    """Return count, p50, p99 and max of latencies given in seconds, in milliseconds."""
    return {
        "n": len(samples),
        "p50": round(median(samples) * 1000, 2) if samples else float("nan"),
        "p99": round(percentile(samples, 0.99) * 1000, 2),
        "max": round(max(samples) * 1000, 2) if samples else float("nan"),
    }
