"""Real processes for tests and benchmarks: gunicorn on a free loopback port, bounded load loops.

Every load loop is bounded by a request count and a time limit, and every target is a
server started here on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import requests

ROOT = Path(__file__).resolve().parent.parent
SECRET = "process-secret-" + "p" * 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn:
    """A gunicorn process serving wsgi:app (or ``app_path``) on a free loopback port.

    The constructor returns once /health/live answers; its output goes to ``log_path``.
    """

    def __init__(self, environ: dict[str, str], log_path: Path, app_path: str = "wsgi:app"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
        env.update({"BIND": f"127.0.0.1:{self.port}", "SESSION_SECRET": SECRET, "STABILIZER_ENV": "test",
                    "LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)})
        env.update(environ)
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app_path],
                                        cwd=ROOT, env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}; see {log_path}")
            try:
                if requests.get(self.url + "/health/live", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not become ready; see {log_path}")

    def stop(self) -> int | None:
        """Send SIGTERM, wait up to 30 s (then SIGKILL) and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()
        return self.process.returncode


def run_load(call: Callable[[requests.Session], None], *, requests_total: int, concurrency: int,
             time_limit: float) -> tuple[list[float], float, int]:
    """Run ``call`` ``requests_total`` times over ``concurrency`` threads, each with its own session.

    Return (latencies in seconds, wall-clock seconds, errors). Stops early at ``time_limit``.
    """
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    remaining = [requests_total]
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        nonlocal errors
        with requests.Session() as session:
            while time.monotonic() < deadline:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter()
                try:
                    call(session)
                except Exception:  # noqa: BLE001 - counted; the benchmark reports it
                    with lock:
                        errors += 1
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)
    return latencies, time.monotonic() - started, errors
