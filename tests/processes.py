"""Real processes for tests and benchmarks: gunicorn on a free loopback port, bounded load loops.

Every load loop is bounded by a request count and a time limit, and every target is a
server started here on 127.0.0.1.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
SECRET = "process-secret-" + "p" * 40
FAKE_READY_PREFIX = "fake WUZAPI listening on "
FAKE_READY_TIMEOUT = 10.0  # seconds to wait for the fake's ready line
EXIT_TIMEOUT = 20.0  # seconds a process gets to exit after a signal before it is killed
KILL_TIMEOUT = 5.0  # seconds to wait after SIGKILL
HTTP_TIMEOUT = 10.0  # seconds for one control request to the fake WUZAPI


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    """Return the last lines of a log file, for assertion messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} was never written)"


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = EXIT_TIMEOUT) -> int | None:
    """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL; return the exit status (None if killed)."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        try:
            process.wait(KILL_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        return None


READY_TIMEOUT = 20.0  # seconds for a started gunicorn to answer 200 on its readiness path
READY_POLL_INTERVAL = 0.1  # seconds between readiness polls


def wait_ready(process: subprocess.Popen, url: str, log_path: Path, *, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200; fail the test if ``process`` exits first or ``timeout`` passes.

    The kernel accepts a connection before a booting worker can read it, so a read
    timeout means "not ready yet", like a refused connection. The failure message ends
    with the tail of ``log_path``.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with status {process.returncode} before it was ready\n{tail(log_path)}")
        try:
            # Connection: close, so no idle keep-alive connection slows a later stop.
            response = requests.get(url, headers={"Connection": "close"}, timeout=2)
        except requests.RequestException as exc:
            last = exc.__class__.__name__
        else:
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        time.sleep(READY_POLL_INTERVAL)
    pytest.fail(f"gunicorn was not ready within {timeout:g} s (last: {last})\n{tail(log_path)}")


class FakeWuzapiProcess:
    """``python -m tests.fake_wuzapi`` in its own process, with one user ``alice`` and an admin token.

    ``env`` is the whole environment of the process, so a test decides what it inherits.
    """

    def __init__(self, log_dir: Path, *, admin_token: str, user_token: str, env: dict[str, str]):
        self.stderr_path = log_dir / "fake_wuzapi.stderr.log"
        self.admin_token = admin_token
        self.user_token = user_token
        self.env = env
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> str:
        command = [sys.executable, "-m", "tests.fake_wuzapi", "--port", "0", "--admin-token", self.admin_token,
                   "--user", f"alice:{self.user_token}"]
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                            stderr=stderr, text=True)
        self.url = self._read_ready_line()
        return self.url

    def _read_ready_line(self) -> str:
        """Return the URL from the ready line, and fail if none arrives within FAKE_READY_TIMEOUT seconds."""
        lines: queue.Queue[str] = queue.Queue()
        # readline() blocks, so it runs in a thread and the wait on the queue is bounded.
        reader = threading.Thread(target=lambda: lines.put(self.process.stdout.readline()), daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=FAKE_READY_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"fake WUZAPI printed no ready line within {FAKE_READY_TIMEOUT:g} s\n"
                        f"{tail(self.stderr_path)}")
        if not line.startswith(FAKE_READY_PREFIX):
            pytest.fail(f"unexpected first line from fake WUZAPI: {line!r}\n{tail(self.stderr_path)}")
        return line[len(FAKE_READY_PREFIX):].strip()

    def set_fault(self, **rule) -> None:
        response = requests.post(self.url + "/__fake__/faults", json=rule, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text

    def received(self, path: str) -> int:
        """Return how many requests for ``path`` the fake has logged."""
        entries = requests.get(self.url + "/__fake__/requests", timeout=HTTP_TIMEOUT).json()
        return sum(1 for entry in entries if entry["path"] == path)

    def stop(self, timeout: float = EXIT_TIMEOUT) -> None:
        if self.process is None:
            return
        stop_process(self.process, timeout=timeout)
        self.process.stdout.close()


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
