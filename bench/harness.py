"""Latency summaries for the benchmarks; processes and load loops come from tests/processes.py."""

from __future__ import annotations

import re
import shutil
import subprocess
from statistics import median

from tests.processes import ROOT, SECRET, Gunicorn, free_port, run_load

__all__ = ["ROOT", "SECRET", "Gunicorn", "free_port", "run_load", "percentile", "summary_ms", "wrk_available",
           "wrk_load"]

WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


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


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return round(float(match.group(1)) * WRK_UNITS[match.group(2)], 3)


def wrk_load(url: str, *, headers: dict[str, str] | None = None, connections: int = 4, threads: int = 1,
             seconds: int = 5) -> dict[str, float]:
    """Run wrk (a C load generator, lighter than a Python client) and parse its latency report.

    Return p50, p99 and max in milliseconds, requests per second, requests and the
    number of non-2xx/3xx answers.
    """
    command = ["wrk", "--latency", f"-c{connections}", f"-t{threads}", f"-d{seconds}s", "--timeout", "10s"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(command + [url], capture_output=True, text=True, timeout=seconds + 30,
                            check=True).stdout
    result: dict[str, float] = {"non_2xx": 0}
    for line in output.splitlines():
        fields = line.split()
        if line.strip().startswith("50%"):
            result["p50"] = _wrk_ms(fields[1])
        elif line.strip().startswith("99%"):
            result["p99"] = _wrk_ms(fields[1])
        elif fields[:1] == ["Latency"] and len(fields) >= 4:
            result["max"] = _wrk_ms(fields[3])
        elif line.startswith("Requests/sec:"):
            result["rps"] = round(float(fields[1]))
        elif "requests in" in line:
            result["n"] = int(fields[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            result["non_2xx"] = int(fields[-1])
    return result
