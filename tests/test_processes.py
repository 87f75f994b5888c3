"""Logging, errors and shutdown in real processes: gunicorn and the fake WUZAPI as subprocesses.

Each test starts its own gunicorn (2 gthread-based workers, 4 threads each, SQLite sessions)
in front of the fake WUZAPI and talks HTTP to it on 127.0.0.1. Standard output and error
go to files, to pipes whose read ends are closed, or to pipes that are never read. Every wait is
bounded and every process is stopped through its Popen object at teardown.

gunicorn loads ``app_with_test_routes()`` from this module: wsgi's app plus three routes
that only tests use (print to stdout and stderr, fail with a secret in the error
message, return the worker's pid).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import requests

from tests.processes import FakeWuzapiProcess, free_port, stop_process, wait_ready

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
APP_SPEC = "tests.test_processes:app_with_test_routes()"
ADMIN_TOKEN = "proc-admin-token-0123456789"
USER_TOKEN = "proc-user-token-0123456789"
SESSION_SECRET = "proc-session-secret-" + "k" * 40
WORKERS = 2
THREADS = 4
GRACEFUL_TIMEOUT = 30  # seconds, as gunicorn.conf.py sets it

READY_TIMEOUT = 20.0  # seconds for GET /health/ready to return 200
EXIT_TIMEOUT = GRACEFUL_TIMEOUT + 5.0  # seconds a SIGTERM'd gunicorn gets before the test fails
KILL_TIMEOUT = 5.0  # seconds to wait after SIGKILL in teardown
HTTP_TIMEOUT = 10.0  # seconds for one request
WORKERS_TIMEOUT = 15.0  # seconds for gunicorn to reach an expected set of workers
LOAD_THREADS = 8  # client threads of a load, each with its own kept-alive connection

# Every variable stabilizer/config.py reads, removed from the inherited environment so a
# developer's shell or .env cannot change what a test runs against.
CONFIG_VARIABLES = (
    "STABILIZER_ENV", "SESSION_SECRET", "SECRET_KEY", "SESSION_SECRET_FALLBACKS", "DATABASE_URL",
    "SUPABASE_URL", "SUPABASE_DB_PASSWORD", "SUPABASE_REGION", "SUPABASE_POOLER_HOST", "SQLITE_PATH",
    "SESSION_TABLE", "SESSION_COOKIE_NAME", "SESSION_LIFETIME", "SESSION_ABSOLUTE_LIFETIME",
    "SESSION_TOUCH_INTERVAL", "SESSION_PRUNE_INTERVAL", "SESSION_MAX_BYTES", "COOKIE_SECURE",
    "COOKIE_SAMESITE", "COOKIE_DOMAIN", "DB_POOL_MIN", "DB_POOL_MAX", "DB_POOL_TIMEOUT",
    "DB_STATEMENT_TIMEOUT", "WUZAPI_BASE_URL", "WUZAPI_ADMIN_TOKEN", "WUZAPI_CONNECT_TIMEOUT",
    "WUZAPI_TIMEOUT", "WUZAPI_DEADLINE", "WUZAPI_MAX_RETRIES", "WUZAPI_RETRY_INITIAL_DELAY",
    "WUZAPI_RETRY_MAX_DELAY", "WUZAPI_CIRCUIT_ENABLED", "WUZAPI_CIRCUIT_FAILURE_THRESHOLD",
    "WUZAPI_CIRCUIT_RESET_TIMEOUT", "WUZAPI_CIRCUIT_SUCCESS_THRESHOLD", "LOG_LEVEL", "LOG_FORMAT",
    "GUNICORN_THREADS", "WEB_CONCURRENCY", "BIND", "LOGIN_RATE_LIMIT", "RATELIMIT_STORAGE_URI",
    "PROMETHEUS_MULTIPROC_DIR",
)

# What a log must never contain, whatever went wrong.
LOGGING_FAILURES = ("--- Logging error ---", "Exception ignored", "BrokenPipeError", "Fatal Python error")


# --- the app gunicorn loads ----------------------------------------------------------------

def app_with_test_routes():
    """Return wsgi's app with the test-only routes; gunicorn calls this in each worker."""
    from flask import request

    import wsgi

    app = wsgi.app

    def print_lines():
        print("printed to stdout by a view")
        print(PRINTED_TO_STDERR, file=sys.stderr)
        return {"printed": True}

    def fail():
        raise RuntimeError(f"view failed with Token: {request.headers.get('Token', '')} in hand")

    def pid():
        return {"pid": os.getpid()}

    app.add_url_rule("/__test/print", "test_print", print_lines)
    app.add_url_rule("/__test/fail", "test_fail", fail)
    app.add_url_rule("/__test/pid", "test_pid", pid)
    return app


# --- processes -----------------------------------------------------------------------------

def clean_environ() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in CONFIG_VARIABLES}


class PipeReader:
    """Reads the read ends of pipes in a thread until stopped; keeps what it read."""

    def __init__(self, fds: list[int]):
        self.fds = fds
        self.data = {fd: b"" for fd in fds}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        open_fds = list(self.fds)
        while open_fds and not self._stop.is_set():
            ready, _, _ = select.select(open_fds, [], [], 0.05)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    self.data[fd] += chunk
                else:
                    open_fds.remove(fd)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(KILL_TIMEOUT)


class Gunicorn:
    """gunicorn serving ``APP_SPEC``, with stdout and stderr each sent to a ``Target``.

    A target is one of:

    - "file": a file in the test's directory;
    - "closed": a pipe read until the server is ready, then closed, so the next write gets EPIPE;
    - "stalled": a pipe kept open and never read, so writes block once its 64 KiB buffer is full.
    """

    def __init__(self, tmp_path: Path, fake_url: str, *, stdout: str = "file", stderr: str = "file", **environ: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp_path = tmp_path
        self.targets = {"stdout": stdout, "stderr": stderr}
        metrics_dir = tmp_path / f"metrics-{self.port}"
        metrics_dir.mkdir()

        self.environ = clean_environ()
        self.environ.update({
            "STABILIZER_ENV": "test",
            "SESSION_SECRET": SESSION_SECRET,
            "SESSION_TABLE": "proc_" + secrets.token_hex(4),
            "SQLITE_PATH": str(tmp_path / f"sessions-{self.port}.sqlite3"),
            "DATABASE_URL": "",  # empty counts as unset, and a .env file cannot override it
            "SUPABASE_URL": "",
            "WUZAPI_BASE_URL": fake_url,
            "WUZAPI_ADMIN_TOKEN": ADMIN_TOKEN,
            "WUZAPI_RETRY_INITIAL_DELAY": "10",
            "WUZAPI_RETRY_MAX_DELAY": "50",
            "LOGIN_RATE_LIMIT": "0",
            "BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(WORKERS),
            "GUNICORN_THREADS": str(THREADS),
            "LOG_LEVEL": "info",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        })
        self.environ.update(environ)

        self.process: subprocess.Popen | None = None
        self.read_fds: dict[str, int] = {}
        self.reader: PipeReader | None = None
        self.started_output: dict[str, bytes] = {}

    def path(self, name: str) -> Path:
        return self.tmp_path / f"gunicorn-{self.port}.{name}.log"

    def start(self) -> None:
        files = {}
        for name, target in self.targets.items():
            if target == "file":
                files[name] = self.path(name).open("wb")
            else:
                read_fd, write_fd = os.pipe()
                self.read_fds[name] = read_fd
                files[name] = write_fd
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", APP_SPEC],
                cwd=ROOT, env=self.environ, stdout=files["stdout"], stderr=files["stderr"])
        finally:
            for handle in files.values():
                if isinstance(handle, int):
                    os.close(handle)  # the child has its own copy of the pipe's write end
                else:
                    handle.close()
        readable = [fd for name, fd in self.read_fds.items() if self.targets[name] == "closed"]
        self.reader = PipeReader(readable) if readable else None
        self.wait_ready()
        self.wait_workers(WORKERS)

    def close_pipes(self) -> None:
        """Stop reading the "closed" pipes and close their read ends."""
        if self.reader is not None:
            self.reader.stop()
            for name, fd in list(self.read_fds.items()):
                if self.targets[name] == "closed":
                    self.started_output[name] = self.reader.data[fd]
                    os.close(fd)
                    del self.read_fds[name]
            self.reader = None

    def log(self, name: str = "stderr") -> str:
        return self.path(name).read_text(errors="replace") if self.path(name).exists() else ""

    def wait_ready(self) -> None:
        wait_ready(self.process, self.url + "/health/ready", self.path("stderr"), timeout=READY_TIMEOUT)

    def worker_pids(self) -> set[int]:
        """Return the pids of the master's children (the workers), read from /proc."""
        pids: set[int] = set()
        task_dir = Path(f"/proc/{self.process.pid}/task")
        try:
            for task in task_dir.iterdir():
                pids.update(int(pid) for pid in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
        return pids

    def wait_workers(self, count: int, exclude: set[int] = frozenset()) -> set[int]:
        """Wait until the master has ``count`` workers, none of them in ``exclude``; return their pids."""
        deadline = time.monotonic() + WORKERS_TIMEOUT
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) == count and not pids & exclude:
                return pids
            time.sleep(0.1)
        pytest.fail(f"gunicorn did not reach {count} workers (now {self.worker_pids()}, excluded {exclude})")

    def health_checks(self, attempts: int = 20) -> dict[int, dict]:
        """Return the logs:dropped check of /health per pid of the worker that served it.

        /health and /__test/pid go over one kept-alive connection, so one worker serves both.
        """
        checks = {}
        for _ in range(attempts):
            with requests.Session() as session:
                health = session.get(self.url + "/health", timeout=HTTP_TIMEOUT)
                pid = session.get(self.url + "/__test/pid", timeout=HTTP_TIMEOUT).json()["pid"]
            checks[pid] = health.json()["checks"]["logs:dropped"][0]
        return checks

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        return stop_process(self.process, sig, timeout=EXIT_TIMEOUT)

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            try:
                self.process.wait(KILL_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        if self.reader is not None:
            self.reader.stop()
        for fd in self.read_fds.values():
            os.close(fd)
        self.read_fds.clear()


@pytest.fixture
def fake(tmp_path):
    server = FakeWuzapiProcess(tmp_path, admin_token=ADMIN_TOKEN, user_token=USER_TOKEN, env=clean_environ())
    try:
        server.start()
        yield server
    finally:
        server.stop(timeout=KILL_TIMEOUT)


@pytest.fixture
def gunicorn(tmp_path, fake):
    """A function that starts a gunicorn with the given targets and environment; all are stopped at teardown."""
    started: list[Gunicorn] = []

    def start(**options: str) -> Gunicorn:
        server = Gunicorn(tmp_path, fake.url, **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.cleanup()


# --- load ----------------------------------------------------------------------------------

class Load:
    """``total`` GET requests from ``threads`` threads, each with its own requests.Session.

    ``url_for(i)`` returns the URL and headers of request ``i``. Results are (status or
    exception name, seconds) per request; nothing runs past ``time_limit`` seconds.
    """

    def __init__(self, url_for: Callable[[int], tuple[str, dict[str, str]]], total: int,
                 threads: int = LOAD_THREADS, time_limit: float = 60.0):
        self.url_for = url_for
        self.total = total
        self.time_limit = time_limit
        self.results: list[tuple[int | str, float] | None] = [None] * total
        self.done = 0
        self._next = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> "Load":
        self.deadline = time.monotonic() + self.time_limit
        for thread in self._threads:
            thread.start()
        return self

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self.total or time.monotonic() > self.deadline:
                return None
            self._next += 1
            return self._next - 1

    def _run(self) -> None:
        session = requests.Session()
        while (index := self._take()) is not None:
            url, headers = self.url_for(index)
            started = time.monotonic()
            try:
                response = session.get(url, headers=headers, timeout=HTTP_TIMEOUT)
                outcome: int | str = response.status_code
            except requests.RequestException as exc:
                outcome = exc.__class__.__name__
                session = requests.Session()
            self.results[index] = (outcome, time.monotonic() - started)
            with self._lock:
                self.done += 1
        session.close()

    def wait(self) -> "Load":
        for thread in self._threads:
            thread.join(max(0.0, self.deadline - time.monotonic()) + HTTP_TIMEOUT)
        return self

    def outcomes(self) -> dict[int | str, int]:
        counts: dict[int | str, int] = {}
        for result in self.results:
            key = result[0] if result is not None else "not sent"
            counts[key] = counts.get(key, 0) + 1
        return counts


def run(url_for, total: int, threads: int = LOAD_THREADS, time_limit: float = 60.0) -> Load:
    return Load(url_for, total, threads, time_limit).start().wait()


PRINTED_TO_STDERR = "printed to stderr by a view"


def json_lines(text: str) -> list[dict]:
    """Parse every line of a JSON log; fail on a line that is not JSON (a raw traceback, say).

    The only other lines allowed are the test view's own print() to stderr.
    """
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if line == PRINTED_TO_STDERR:
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"log line {number} is not JSON: {line[:300]!r}")
    return entries


def assert_no_logging_failures(text: str, where: str) -> None:
    for marker in LOGGING_FAILURES:
        assert marker not in text, f"{marker!r} in {where}:\n{text[-3000:]}"


# --- tests ---------------------------------------------------------------------------------

def test_closed_pipes_ten_thousand_requests(gunicorn):
    server = gunicorn(stdout="closed", stderr="closed")
    workers = server.worker_pids()
    server.close_pipes()
    for name, output in server.started_output.items():
        assert_no_logging_failures(output.decode(errors="replace"), f"{name} before the pipes closed")
        assert b"Traceback" not in output

    paths = ["/api/auth/status", "/__test/print", "/api/wuzapi/session/status", "/health"]
    token = {"Token": USER_TOKEN}

    def url_for(index: int) -> tuple[str, dict[str, str]]:
        return server.url + paths[index % len(paths)], token

    # The master writes its own lines to the dead pipes too: a new worker makes it log.
    first = run(url_for, 5000, time_limit=50)
    server.process.send_signal(signal.SIGTTIN)
    added = server.wait_workers(WORKERS + 1)
    second = run(url_for, 5000, time_limit=50)

    assert first.outcomes() == {200: 5000}
    assert second.outcomes() == {200: 5000}
    assert workers <= added, "a worker died while its stdout and stderr were closed"
    assert server.process.poll() is None
    checks = server.health_checks()
    assert any(check["observedValue"] > 0 for check in checks.values()), checks
    # Every worker found stderr dead (or inherited it dead from the master); stdout dies on a print().
    assert all("stderr" in check["deadStreams"] for check in checks.values()), checks
    assert any(set(check["deadStreams"]) == {"stdout", "stderr"} for check in checks.values()), checks

    status = server.stop()
    assert status == 0, f"gunicorn exit status {status} after SIGTERM with closed stdout and stderr"


def test_closed_stdout_control_run(gunicorn):
    """stdout is a closed pipe and stderr a file: whatever goes wrong with stdout would show on stderr."""
    server = gunicorn(stdout="closed", stderr="file")
    server.close_pipes()
    paths = ["/__test/print", "/api/auth/status", "/__test/fail"]
    load = run(lambda index: (server.url + paths[index % len(paths)], {}), 900)
    assert load.outcomes() == {200: 600, 500: 300}
    status = server.stop()
    assert status == 0

    text = server.log("stderr")
    assert_no_logging_failures(text, "stderr")
    entries = json_lines(text)  # a raw traceback line would not parse
    assert text.splitlines().count(PRINTED_TO_STDERR) == 300
    assert not any(entry["level"] == "debug" for entry in entries)
    # the failing view: logged with its traceback, at most 10 times per worker, then counted
    failures = [entry for entry in entries if entry["message"] == "unhandled error in GET /__test/fail"]
    assert 1 <= len(failures) <= 10 * WORKERS
    assert all("RuntimeError: view failed" in entry["exception"] for entry in failures)
    repeats = [entry["repeated"] for entry in entries if entry.get("repeated")]
    assert len(failures) + sum(repeats) == 300
    access = [entry for entry in entries if entry["logger"] == "stabilizer.access" and entry["path"] in paths]
    assert len(access) == 900
    assert len({entry["request_id"] for entry in access}) == 900


def test_stalled_pipe_keeps_latency(gunicorn):
    long_path = "/api/nothing-here/" + "x" * 3500  # about 7 KiB per access line

    def flood_then_measure(server: Gunicorn) -> list[float]:
        flood = run(lambda index: (server.url + long_path, {}), 600, threads=4, time_limit=40)
        assert flood.outcomes() == {404: 600}
        measured = run(lambda index: (server.url + "/api/auth/status", {}), 400, threads=2, time_limit=40)
        assert measured.outcomes() == {200: 400}
        return [seconds for _, seconds in measured.results]

    to_file = gunicorn(stdout="file", stderr="file")
    file_latencies = flood_then_measure(to_file)
    stopped_at = time.monotonic()
    assert to_file.stop() == 0
    file_stop_seconds = time.monotonic() - stopped_at

    stalled = gunicorn(stdout="stalled", stderr="stalled")
    stalled_latencies = flood_then_measure(stalled)
    checks = stalled.health_checks()
    stopped_at = time.monotonic()
    status = stalled.stop()
    stop_seconds = time.monotonic() - stopped_at

    file_median = statistics.median(file_latencies)
    stalled_median = statistics.median(stalled_latencies)
    print(f"median latency: {file_median * 1000:.2f} ms to a file, {stalled_median * 1000:.2f} ms to a "
          f"stalled pipe; dropped per worker: {[check['observedValue'] for check in checks.values()]}; "
          f"SIGTERM to exit: {file_stop_seconds:.2f} s logging to a file, {stop_seconds:.2f} s to a stalled pipe")
    assert stalled_median <= 3 * file_median + 0.005
    assert any(check["observedValue"] > 0 for check in checks.values()), checks
    assert status == 0
    assert stop_seconds < 10


def test_log_flood_survives_killed_worker(gunicorn):
    server = gunicorn(LOG_LEVEL="debug")
    paths = ["/api/wuzapi/session/status", "/api/auth/status", "/__test/print", "/health"]
    load = Load(lambda index: (server.url + paths[index % len(paths)], {"Token": USER_TOKEN}), 4000,
                time_limit=40).start()
    deadline = time.monotonic() + 20
    while load.done < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = sorted(server.worker_pids())[0]
    os.kill(victim, signal.SIGKILL)
    replacement = server.wait_workers(WORKERS, exclude={victim})
    load.wait()

    outcomes = load.outcomes()
    # A client thread whose connection was on the killed worker loses one request; every other one gets a response.
    assert outcomes.get(200, 0) >= 4000 - LOAD_THREADS, outcomes
    assert set(outcomes) <= {200, "ConnectionError", "ChunkedEncodingError"}, outcomes
    after = run(lambda index: (server.url + paths[index % len(paths)], {"Token": USER_TOKEN}), 400)
    assert after.outcomes() == {200: 400}
    assert server.stop() == 0

    entries = json_lines(server.log("stderr"))
    assert_no_logging_failures(server.log("stderr"), "stderr")
    assert any(entry["level"] == "debug" and entry["logger"] == "urllib3.connectionpool" for entry in entries)
    assert any(f"pid:{victim}" in entry["message"] and entry["logger"] == "gunicorn.error" for entry in entries)
    assert {entry["pid"] for entry in entries if entry["logger"] == "stabilizer.access"} >= replacement


def test_text_format_lines(gunicorn):
    server = gunicorn(LOG_FORMAT="text")
    response = requests.get(server.url + "/api/auth/status", headers={"X-Request-ID": "text-format-check-1"},
                            timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    assert server.stop() == 0

    lines = server.log("stderr").splitlines()
    line_format = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+ \[\S+\] ")
    assert lines
    assert all(line_format.match(line) for line in lines), lines
    access = [line for line in lines if " stabilizer.access " in line and "/health/ready" not in line]
    assert len(access) == 1
    assert "[text-format-check-1] GET /api/auth/status 200 " in access[0]


def test_secrets_never_logged(gunicorn, fake):
    server = gunicorn(LOG_LEVEL="debug")
    wrong_token = "wrong-token-" + secrets.token_hex(8)
    password = "password-" + secrets.token_hex(8)
    query_token = "query-token-" + secrets.token_hex(8)
    other_cookie = "cookie-" + secrets.token_hex(8)
    bearer = "bearer-" + secrets.token_hex(8)

    client = requests.Session()
    login = client.post(server.url + "/api/auth/login", json={"token": USER_TOKEN, "role": "user"},
                        timeout=HTTP_TIMEOUT)
    assert login.status_code == 200, login.text
    session_id = client.cookies["wuzapi.sid"]
    client.cookies.set("tracking", other_cookie)
    calls = [
        client.get(server.url + "/api/auth/status", timeout=HTTP_TIMEOUT),
        client.get(server.url + "/api/wuzapi/session/status", timeout=HTTP_TIMEOUT),
        requests.post(server.url + "/api/auth/login", json={"token": wrong_token, "role": "user",
                                                             "password": password}, timeout=HTTP_TIMEOUT),
        requests.get(server.url + f"/api/wuzapi/session/status?token={query_token}",
                     headers={"Token": USER_TOKEN}, timeout=HTTP_TIMEOUT),
        requests.get(server.url + "/api/wuzapi/admin/users", headers={"Authorization": ADMIN_TOKEN},
                     timeout=HTTP_TIMEOUT),
        requests.get(server.url + "/api/wuzapi/session/status", headers={"Authorization": f"Bearer {bearer}"},
                     timeout=HTTP_TIMEOUT),
        requests.get(server.url + "/__test/fail", headers={"Token": USER_TOKEN}, timeout=HTTP_TIMEOUT),
    ]
    assert [call.status_code for call in calls] == [200, 200, 401, 200, 200, 401, 500]

    # the upstream fails: retries and errors are logged with the same credentials in hand
    for mode in ("reset", "proxy_502"):
        fake.set_fault(mode=mode)
        failed = requests.get(server.url + f"/api/wuzapi/session/status?token={query_token}",
                              headers={"Token": USER_TOKEN}, timeout=HTTP_TIMEOUT)
        assert failed.status_code in (502, 503, 504), failed.text
        failed = client.get(server.url + "/api/wuzapi/session/status", timeout=HTTP_TIMEOUT)
        assert failed.status_code in (502, 503, 504), failed.text
    fake.set_fault(mode="ok")
    assert server.stop() == 0

    text = server.log("stderr") + server.log("stdout")
    entries = json_lines(server.log("stderr"))
    assert any("retrying WUZAPI" in entry["message"] for entry in entries), "the upstream failure was not logged"
    assert any(entry.get("exception", "").startswith("Traceback") for entry in entries)
    for name, value in [("user token", USER_TOKEN), ("admin token", ADMIN_TOKEN), ("wrong token", wrong_token),
                        ("password", password), ("query token", query_token), ("session id", session_id),
                        ("cookie", other_cookie), ("bearer token", bearer), ("session secret", SESSION_SECRET)]:
        assert value not in text, f"the {name} appears in the log"


def test_sigterm_finishes_slow_requests(gunicorn, fake):
    server = gunicorn()
    fake.set_fault(mode="latency", latency_ms=1500)
    in_flight = 2 * WORKERS * THREADS  # twice what the workers' threads can serve at once
    results: list[tuple[int, dict] | str] = [""] * in_flight

    def call(index: int) -> None:
        try:
            response = requests.get(server.url + "/api/wuzapi/session/status", headers={"Token": USER_TOKEN},
                                    timeout=HTTP_TIMEOUT)
            results[index] = (response.status_code, response.json())
        except (requests.RequestException, ValueError) as exc:
            results[index] = exc.__class__.__name__

    callers = [threading.Thread(target=call, args=(index,), daemon=True) for index in range(in_flight)]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 10
    while fake.received("/session/status") < WORKERS * THREADS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.received("/session/status") >= WORKERS * THREADS
    time.sleep(0.3)  # the workers accept the other connections and queue them for their threads

    stopped_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for caller in callers:
        caller.join(HTTP_TIMEOUT)
    status = server.process.wait(EXIT_TIMEOUT)
    stop_seconds = time.monotonic() - stopped_at

    assert [result[0] if isinstance(result, tuple) else result for result in results] == [200] * in_flight
    assert all(result[1]["success"] is True for result in results)
    assert status == 0
    assert stop_seconds < GRACEFUL_TIMEOUT
    entries = json_lines(server.log("stderr"))
    assert_no_logging_failures(server.log("stderr"), "stderr")
    stopped = [entry for entry in entries if entry["message"].endswith("stopped its background threads and closed "
                                                                       "its pools")]
    assert len(stopped) == WORKERS
    assert not any("Traceback" in entry["message"] or "exception" in entry for entry in entries)


def test_new_connections_refused_once_sigterm_received(gunicorn, fake):
    """While slow requests finish, a new connection is refused at once instead of reset later."""
    import socket

    server = gunicorn()
    fake.set_fault(mode="latency", latency_ms=2000)
    results: list[int | str] = []

    def slow_call() -> None:
        try:
            results.append(requests.get(server.url + "/api/wuzapi/session/status", headers={"Token": USER_TOKEN},
                                        timeout=HTTP_TIMEOUT).status_code)
        except requests.RequestException as exc:
            results.append(exc.__class__.__name__)

    callers = [threading.Thread(target=slow_call, daemon=True) for _ in range(WORKERS)]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 10
    while fake.received("/session/status") < WORKERS and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # the master and the workers handle the signal

    refused = False
    with socket.socket() as probe:
        probe.settimeout(HTTP_TIMEOUT)
        try:
            probe.connect(("127.0.0.1", server.port))
        except ConnectionRefusedError:
            refused = True
    assert refused, "a connection made after SIGTERM was accepted into a listen queue nobody serves"
    assert server.process.poll() is None  # the slow requests are still running
    for caller in callers:
        caller.join(HTTP_TIMEOUT)
    assert results == [200] * WORKERS
    assert server.process.wait(EXIT_TIMEOUT) == 0


def test_sighup_reload_drops_nothing(gunicorn):
    server = gunicorn()
    old_workers = server.worker_pids()
    load = Load(lambda index: (server.url + "/api/auth/status", {}), 3000, time_limit=40).start()
    deadline = time.monotonic() + 20
    while load.done < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.send_signal(signal.SIGHUP)
    new_workers = server.wait_workers(WORKERS, exclude=old_workers)
    load.wait()

    assert load.outcomes() == {200: 3000}
    assert not new_workers & old_workers
    assert server.stop() == 0
    entries = json_lines(server.log("stderr"))
    assert any(entry["message"] == "Handling signal: hup" for entry in entries)
