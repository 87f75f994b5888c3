"""Logging in one process: formatters, redaction, rate limiting, safe streams, the
non-blocking handler, request ids and access lines, and the process-wide error hooks.

Streams here are real pipes: a closed read end gives a real EPIPE, and a read end that
is kept open and never read gives a real full pipe.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import sys
import threading
import time

import pytest

from stabilizer import errors, logs
from stabilizer.db import StoreUnavailable
from stabilizer.logs import (
    JsonFormatter,
    LogStats,
    LogWriter,
    NonBlockingHandler,
    RepeatLimiter,
    SafeStream,
    TextFormatter,
    redact,
)
from tests.conftest import USER_TOKEN

WAIT = 5.0  # seconds any wait on a writer thread may take before the test fails


@pytest.fixture
def backend() -> str:
    """In-process app tests here need one store; the SQL stores are tested elsewhere."""
    return "sqlite"


@pytest.fixture
def pipe():
    """A pipe as (read fd, write fd); both are closed at teardown if still open."""
    read_fd, write_fd = os.pipe()
    fds = {read_fd, write_fd}
    yield read_fd, write_fd
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def writer():
    """A private LogWriter, stopped at teardown."""
    created = []

    def build(**kwargs) -> LogWriter:
        created.append(LogWriter(**kwargs))
        return created[-1]

    yield build
    for item in created:
        item.stop(timeout=0.5)


def read_available(fd: int, timeout: float = WAIT, until: bytes | None = None) -> bytes:
    """Read from ``fd`` until ``until`` appears (or, without it, until it stays empty for 0.2 s)."""
    import select

    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            if until is None and data:
                return data
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk
        if until is not None and until in data:
            return data
    return data


def make_record(message: str = "hello %s", args: tuple = ("world",), level: int = logging.INFO,
                name: str = "stabilizer.test", exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 10, message, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def wait_for(condition, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# --- formatters --------------------------------------------------------------------------

def test_json_formatter_fields():
    record = make_record(request_id="req-12345678", method="GET", status=200)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "stabilizer.test"
    assert entry["message"] == "hello world"
    assert entry["request_id"] == "req-12345678"
    assert entry["method"] == "GET"
    assert entry["status"] == 200
    assert entry["pid"] == os.getpid()
    assert entry["time"].endswith("+00:00")
    assert "exception" not in entry


def test_json_formatter_exception_one_line():
    try:
        raise ValueError("bad value\nsecond line")
    except ValueError:
        record = make_record("failed", (), level=logging.ERROR, exc_info=sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad value" in entry["exception"]


def test_json_formatter_unserializable_extra():
    entry = json.loads(JsonFormatter().format(make_record(when=object(), items={"a": {1, 2}})))
    assert entry["when"].startswith("<object object")
    assert entry["items"]["a"] in ("{1, 2}", "{2, 1}")


def test_text_formatter_line():
    line = TextFormatter().format(make_record(request_id="req-abcdefgh"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO    stabilizer.test \[req-abcdefgh\] hello world",
                        line)
    record = make_record()
    assert "[-]" in TextFormatter().format(record)
    assert not hasattr(record, "request_id")  # the record other handlers see is left as it was


# --- redaction ---------------------------------------------------------------------------

SECRET_VALUE = "s3cr3t-VALUE-0123"

REDACTION_CASES = [
    ("Token: {s}", "Token: ***"),
    ("token={s}", "token=***"),
    ("Authorization: Bearer {s}", "Authorization: Bearer ***"),
    ("Authorization: Basic {s}", "Authorization: Basic ***"),
    ("authorization={s}", "authorization=***"),
    ("Cookie: wuzapi.sid={s}; lang=pt_BR", "Cookie: ***"),
    ("Set-Cookie: wuzapi.sid={s}; Path=/; HttpOnly", "Set-Cookie: ***"),
    ('{{"token": "{s}", "role": "user"}}', '{"token": "***", "role": "user"}'),
    ('{{"password": "{s} with spaces"}}', '{"password": "***"}'),
    ("{{'Token': '{s}', 'Accept': 'application/json'}}", "{'Token': '***', 'Accept': 'application/json'}"),
    ("{{'Authorization': 'Bearer {s}'}}", "{'Authorization': '***'}"),
    ("GET http://127.0.0.1:8080/session/status?token={s}&x=1", "GET http://127.0.0.1:8080/session/status?token=***&x=1"),
    ("postgresql://user:{s}@db.example:5432/app", "postgresql://user:***@db.example:5432/app"),
    ("WUZAPI_ADMIN_TOKEN={s}", "WUZAPI_ADMIN_TOKEN=***"),
    ("x-api-key: {s}", "x-api-key: ***"),
    ("session_id={s}", "session_id=***"),
    ("sid={s}", "sid=***"),
    ("header value 'Bearer {s}' rejected", "header value 'Bearer ***' rejected"),
]


@pytest.mark.parametrize("template, expected", REDACTION_CASES)
def test_redact_masks_secret(template, expected):
    masked = redact(template.format(s=SECRET_VALUE))
    assert SECRET_VALUE not in masked
    assert masked == expected


@pytest.mark.parametrize("text", [
    "GET /api/auth/status 200 1.2 ms",
    "retrying WUZAPI GET /session/status after timed out (attempt 2), waiting 0.250 s",
    "session store unavailable: connection refused",
    "inside: the pruner deleted 3 rows",
])
def test_redact_keeps_ordinary_text(text):
    assert redact(text) == text


def test_redact_registered_secret_anywhere():
    value = "registered-" + "x" * 20
    logs.register_secret(value)
    assert redact(f"failed with {value} in the middle") == "failed with *** in the middle"


def test_redact_ignores_short_registered_value():
    logs.register_secret("abc")
    assert redact("abc is a word") == "abc is a word"


def test_redact_extra_secrets_by_value():
    assert redact("upstream said: bad credential qwertyuiop1", ["qwertyuiop1"]) == "upstream said: bad credential ***"


def test_redact_time_linear_on_long_input():
    text = "a." * 20000 + "token" + "-b" * 20000
    started = time.monotonic()
    redact(text)
    assert time.monotonic() - started < 1.0


def test_json_formatter_masks_exception_and_extras():
    try:
        raise RuntimeError(f"upstream refused Authorization: Bearer {SECRET_VALUE}")
    except RuntimeError:
        record = make_record("call failed for %s", (f"http://h/x?token={SECRET_VALUE}",), level=logging.ERROR,
                             exc_info=sys.exc_info(), headers={"Token": SECRET_VALUE, "Accept": "*/*"},
                             api_token=SECRET_VALUE, note=f"password={SECRET_VALUE}")
    line = JsonFormatter().format(record)
    assert SECRET_VALUE not in line
    entry = json.loads(line)
    assert entry["headers"] == {"Token": "***", "Accept": "*/*"}
    assert entry["api_token"] == "***"
    assert entry["note"] == "password=***"
    assert "RuntimeError: upstream refused Authorization: Bearer ***" in entry["exception"]


def test_text_formatter_masks_traceback():
    try:
        raise RuntimeError(f"token={SECRET_VALUE}")
    except RuntimeError:
        record = make_record("failed", (), level=logging.ERROR, exc_info=sys.exc_info())
    text = TextFormatter().format(record)
    assert "Traceback" in text
    assert SECRET_VALUE not in text


def test_request_credentials_masked_by_value(app):
    secret_cookie = "cookie-value-" + "c" * 12
    body_password = "body-password-" + "p" * 8
    with app.test_request_context("/api/wuzapi/session/status?token=query-secret-1234", method="POST",
                                  headers={"Token": "header-token-1234", "Authorization": "Bearer bearer-value-1234",
                                           "Cookie": f"wuzapi.sid={secret_cookie}"},
                                  json={"token": "body-token-12345", "password": body_password, "name": "alice"}):
        message = ("values header-token-1234 bearer-value-1234 query-secret-1234 "
                   f"{secret_cookie} body-token-12345 {body_password} alice")
        line = JsonFormatter().format(make_record("%s", (message,)))
    entry = json.loads(line)
    assert entry["message"] == "values *** *** *** *** *** *** alice"


# --- rate limiting of repeats -----------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeat_limiter_burst_then_summary():
    clock = FakeClock()
    limiter = RepeatLimiter(burst=3, window=10.0, clock=clock)
    suppressed_before = LogStats.snapshot()["suppressed"]
    decisions = [limiter.check(make_record("upstream failed: %s", (i,), level=logging.ERROR)) for i in range(8)]
    assert [allowed for allowed, _ in decisions] == [True, True, True, False, False, False, False, False]
    assert all(summaries == [] for _, summaries in decisions)
    assert LogStats.snapshot()["suppressed"] - suppressed_before == 5

    clock.now += 10.0
    allowed, summaries = limiter.check(make_record("upstream failed: %s", (9,), level=logging.ERROR))
    assert allowed
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary.getMessage() == "'upstream failed: %s' repeated 5 more times in 10 s"
    assert summary.levelno == logging.ERROR
    assert summary.name == "stabilizer.test"
    assert summary.repeated == 5


def test_repeat_limiter_keys_are_separate():
    limiter = RepeatLimiter(burst=1, window=10.0, clock=FakeClock())
    assert limiter.check(make_record("a %s", (1,), level=logging.ERROR))[0]
    assert not limiter.check(make_record("a %s", (2,), level=logging.ERROR))[0]
    assert limiter.check(make_record("a %s", (3,), level=logging.WARNING))[0]
    assert limiter.check(make_record("b %s", (4,), level=logging.ERROR))[0]
    assert limiter.check(make_record("a %s", (5,), level=logging.ERROR, name="other"))[0]


def test_repeat_limiter_ignores_info():
    limiter = RepeatLimiter(burst=1, window=10.0, clock=FakeClock())
    assert all(limiter.check(make_record())[0] for _ in range(50))


def test_repeat_limiter_expired_summaries():
    clock = FakeClock()
    limiter = RepeatLimiter(burst=1, window=10.0, clock=clock)
    for _ in range(4):
        limiter.check(make_record("x", (), level=logging.ERROR))
    limiter.check(make_record("quiet", (), level=logging.ERROR))
    assert limiter.expired() == []
    clock.now += 10.0
    summaries = limiter.expired()
    assert [summary.getMessage() for summary in summaries] == ["'x' repeated 3 more times in 10 s"]
    assert limiter.expired() == []


def test_repeat_limiter_max_keys():
    limiter = RepeatLimiter(burst=1, window=10.0, max_keys=2, clock=FakeClock())
    limiter.check(make_record("a", (), level=logging.ERROR))
    limiter.check(make_record("a", (), level=logging.ERROR))
    limiter.check(make_record("b", (), level=logging.ERROR))
    allowed, summaries = limiter.check(make_record("c", (), level=logging.ERROR))
    assert allowed
    assert [summary.getMessage() for summary in summaries] == ["'a' repeated 1 more times in 10 s"]


def test_handler_writes_repeat_summary(pipe, writer):
    read_fd, write_fd = pipe
    clock = FakeClock()
    handler = NonBlockingHandler(SafeStream(write_fd, "test", writer=writer()),
                                 repeats=RepeatLimiter(burst=2, window=5.0, clock=clock))
    handler.setFormatter(JsonFormatter())
    for i in range(20):
        handler.handle(make_record("store down: %s", (i,), level=logging.ERROR))
    clock.now += 5.0
    handler.write_expired_summaries()  # what the writer thread does about once a second
    lines = [json.loads(line) for line in read_available(read_fd, until=b"repeated").decode().splitlines()]
    assert [line["message"] for line in lines] == [
        "store down: 0", "store down: 1", "'store down: %s' repeated 18 more times in 5 s"]
    assert lines[-1]["repeated"] == 18
    assert lines[-1]["level"] == "error"
    assert "request_id" not in lines[-1]


def test_handler_flush_writes_open_window_counts(pipe, writer):
    read_fd, write_fd = pipe
    handler = NonBlockingHandler(SafeStream(write_fd, "test", writer=writer()),
                                 repeats=RepeatLimiter(burst=1, window=60.0, clock=FakeClock()))
    handler.setFormatter(JsonFormatter())
    for _ in range(4):
        handler.handle(make_record("worker failed", (), level=logging.WARNING))
    handler.flush()  # at shutdown: the window is still open, its count must not be lost
    output = read_available(read_fd, until=b"repeated").decode()
    messages = [json.loads(line)["message"] for line in output.splitlines()]
    assert messages == ["worker failed", "'worker failed' repeated 3 more times in 60 s"]


# --- safe streams ------------------------------------------------------------------------

def test_safe_stream_closed_pipe(pipe, writer):
    read_fd, write_fd = pipe
    os.close(read_fd)
    stream = SafeStream(write_fd, "test-closed", writer=writer())
    dropped = LogStats.snapshot()["dropped"]

    assert stream.write("first line\n") == len("first line\n")
    assert stream.drain()
    assert stream.dead
    assert os.readlink(f"/proc/self/fd/{write_fd}") == "/dev/null"
    stream.write("second line\n")
    print("third line", file=stream)
    stream.flush()
    assert LogStats.snapshot()["dropped"] - dropped == 3
    assert "test-closed" in LogStats.snapshot()["dead_streams"]


def test_safe_stream_keeps_print_lines_whole(pipe, writer):
    read_fd, write_fd = pipe
    stream = SafeStream(write_fd, "test-lines", writer=writer())

    def print_many(name: str) -> None:
        for i in range(300):
            print(name, i, "end", file=stream)

    threads = [threading.Thread(target=print_many, args=(f"thread{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    stream.write("unfinished")
    stream.flush()
    assert stream.drain()
    lines = read_available(read_fd, until=b"unfinished").decode().split("\n")
    assert lines[-1] == "unfinished"
    assert len(lines) == 1201
    assert all(re.fullmatch(r"thread\d \d+ end", line) for line in lines[:-1])


def test_safe_stream_closed_descriptor(writer):
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    stream = SafeStream(write_fd, "test-ebadf", writer=writer())
    stream.write("line\n")
    assert stream.drain()
    assert stream.dead
    with pytest.raises(OSError):
        os.fstat(write_fd)  # EBADF: the number was not reopened as /dev/null


def test_safe_stream_writes_in_order(pipe, writer):
    read_fd, write_fd = pipe
    stream = SafeStream(write_fd, "test-order", writer=writer())
    for i in range(100):
        print(f"line {i}", file=stream)
    stream.buffer.write(b"bytes line\n")
    stream.write("caf\u00e9 \udcff\n")
    with pytest.raises(TypeError):
        stream.write(b"bytes are not text")
    assert stream.drain()
    text = read_available(read_fd, until=b"caf").decode("utf-8")
    assert text.splitlines() == [f"line {i}" for i in range(100)] + ["bytes line", "caf\u00e9 \\udcff"]


def test_safe_stream_nonblocking_descriptor_is_not_dead(pipe, writer):
    read_fd, write_fd = pipe
    flags = fcntl.fcntl(write_fd, fcntl.F_GETFL)
    fcntl.fcntl(write_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    stream = SafeStream(write_fd, "test-nonblocking", writer=writer())
    payload = b"x" * (256 * 1024)  # four times a Linux pipe's buffer
    stream.write_bytes(payload)
    received = b""
    deadline = time.monotonic() + WAIT
    while len(received) < len(payload) and time.monotonic() < deadline:
        received += read_available(read_fd, timeout=0.5)
    assert len(received) == len(payload)
    assert not stream.dead


def test_print_to_dead_stdout_never_raises(app, pipe, writer, monkeypatch):
    read_fd, write_fd = pipe
    os.close(read_fd)
    monkeypatch.setattr(sys, "stdout", SafeStream(write_fd, "stdout-test", writer=writer()))

    @app.get("/__print")
    def printing_view():
        print("a line from a view")
        sys.stdout.flush()
        return {"printed": True}

    client = app.test_client()
    statuses = [client.get("/__print").status_code for _ in range(50)]
    assert statuses == [200] * 50
    assert sys.stdout.drain()
    assert sys.stdout.dead


# --- the outbox and its writer thread ----------------------------------------------------

def test_handler_overflow_drops_without_blocking(pipe, writer):
    read_fd, write_fd = pipe  # the read end stays open and is never read: a stalled reader
    outbox = writer(max_records=50)
    handler = NonBlockingHandler(SafeStream(write_fd, "test-stalled", writer=outbox), repeats=None)
    handler.setFormatter(JsonFormatter())
    dropped = LogStats.snapshot()["dropped"]

    started = time.monotonic()
    for i in range(5000):
        handler.handle(make_record("line %d %s", (i, "x" * 200)))
    elapsed = time.monotonic() - started

    # A pipe buffers 64 KiB (about 250 of these lines) and the outbox 50 more; the rest are dropped.
    assert LogStats.snapshot()["dropped"] - dropped >= 4000
    assert elapsed < 2.0
    assert outbox.pending() > 0
    assert not outbox.drain(timeout=WAIT, stall=0.2)
    read_available(read_fd, timeout=1.0)  # unblock the writer so teardown can stop it


def test_writer_byte_bound(pipe, writer):
    read_fd, write_fd = pipe
    outbox = writer(max_bytes=100 * 1024)
    stream = SafeStream(write_fd, "test-bytes", writer=outbox)
    dropped = LogStats.snapshot()["dropped"]
    for _ in range(100):
        stream.write_bytes(b"y" * 10 * 1024)
    # 64 KiB in the pipe, at most 100 KiB queued and one write in flight: the rest is dropped.
    assert LogStats.snapshot()["dropped"] - dropped >= 80
    read_available(read_fd, timeout=1.0)


def test_writer_survives_a_failing_write(pipe, writer, caplog, monkeypatch):
    read_fd, write_fd = pipe
    monkeypatch.setattr(logs, "WRITER_ERROR_PAUSE", 0.01)

    class FailsOnce(SafeStream):
        failures = 0

        def write_now(self, data: bytes) -> None:
            if not FailsOnce.failures:
                FailsOnce.failures += 1
                raise RuntimeError("disk controller on fire")
            super().write_now(data)

    stream = FailsOnce(write_fd, "test-fails-once", writer=writer())
    with caplog.at_level(logging.ERROR, logger="stabilizer.logs"):
        stream.write("lost line\n")
        assert wait_for(lambda: FailsOnce.failures == 1)
        stream.write("kept line\n")
        assert stream.drain()
    assert read_available(read_fd, until=b"kept") == b"kept line\n"
    failures = [record for record in caplog.records if record.name == "stabilizer.logs"]
    assert len(failures) == 1
    assert failures[0].getMessage().startswith("log writer failed to write to test-fails-once")
    assert failures[0].exc_info[0] is RuntimeError


def test_writer_restarts_in_forked_child(pipe, writer):
    read_fd, write_fd = pipe
    stream = SafeStream(write_fd, "test-fork", writer=writer())
    stream.write("from the parent\n")
    assert stream.drain()

    pid = os.fork()
    if pid == 0:  # the child: its writer thread did not survive the fork
        try:
            stream.write("from the child\n")
            os._exit(0 if stream.drain() else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert read_available(read_fd, until=b"child") == b"from the parent\nfrom the child\n"


# --- configuration -----------------------------------------------------------------------

@pytest.fixture
def isolated_logging(monkeypatch, writer):
    """Return a function that replaces sys.stdout and sys.stderr by safe streams over pipes.

    The function returns the read end of the stderr pipe. The test calls it itself,
    because pytest puts its own capture streams back between a fixture's setup and the
    test. The process's logging is restored afterwards.
    """
    stdout_read, stdout_write = os.pipe()
    stderr_read, stderr_write = os.pipe()
    outbox = writer()
    monkeypatch.setattr(logs, "_handler", None)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.raiseExceptions)
    gunicorn_saved = {name: list(logging.getLogger(name).handlers) for name in ("gunicorn.error", "gunicorn.access")}

    def use_pipes() -> int:
        monkeypatch.setattr(sys, "stdout", SafeStream(stdout_write, "stdout", writer=outbox))
        monkeypatch.setattr(sys, "stderr", SafeStream(stderr_write, "stderr", writer=outbox))
        return stderr_read

    yield use_pipes
    if logs._handler is not None:
        outbox.idle_callbacks.clear()
        root.removeHandler(logs._handler)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.raiseExceptions = saved[2]
    logging.captureWarnings(False)
    for name, handlers in gunicorn_saved.items():
        logging.getLogger(name).handlers[:] = handlers
    for fd in (stdout_read, stdout_write, stderr_read, stderr_write):
        os.close(fd)


def test_configure_is_idempotent(isolated_logging):
    stderr_read = isolated_logging()
    first = logs.configure("info", "json")
    second = logs.configure("debug", "text")
    assert first is second
    assert logging.getLogger().handlers.count(first) == 1
    assert logging.getLogger().level == logging.DEBUG
    assert isinstance(first.formatter, TextFormatter)
    assert isinstance(first.repeats, RepeatLimiter)
    assert logging.raiseExceptions is False

    logging.getLogger("stabilizer.test").debug("debug record shown")
    logs.flush()
    assert b"DEBUG   stabilizer.test [-] debug record shown" in read_available(stderr_read, until=b"shown")


def test_configure_info_hides_debug(isolated_logging):
    stderr_read = isolated_logging()
    logs.configure("info", "json")
    logging.getLogger("stabilizer.test").debug("hidden debug record")
    logging.getLogger("stabilizer.test").info("visible info record")
    logs.flush()
    output = read_available(stderr_read, until=b"visible")
    assert b"visible info record" in output
    assert b"hidden debug record" not in output


def test_gunicorn_logger_uses_safe_handler(isolated_logging, monkeypatch):
    from gunicorn.config import Config

    # GunicornLogger reads the settings; without a secret it would create instance/secret_key here.
    monkeypatch.setenv("SESSION_SECRET", "logger-test-" + "l" * 40)
    stderr_read = isolated_logging()
    gunicorn_logger = logs.GunicornLogger(Config())
    handler = logs._handler
    assert logging.getLogger("gunicorn.error").handlers == [handler]
    assert logging.getLogger("gunicorn.access").handlers == [handler]
    assert gunicorn_logger.access_log_enabled is False
    gunicorn_logger.info("Booting worker with pid: %s", 123)
    logs.flush()
    entry = json.loads(read_available(stderr_read, until=b"Booting").decode().splitlines()[-1])
    assert entry["logger"] == "gunicorn.error"
    assert entry["message"] == "Booting worker with pid: 123"


# --- request ids and access lines --------------------------------------------------------

def access_records(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "stabilizer.access"]


def test_access_line_one_per_request(client, caplog):
    with caplog.at_level(logging.DEBUG):
        response = client.get("/api/auth/status", headers={"X-Request-ID": "client-chosen-id-1"})
    assert response.headers["X-Request-ID"] == "client-chosen-id-1"
    records = access_records(caplog)
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.INFO
    assert (record.method, record.path, record.status) == ("GET", "/api/auth/status", 200)
    assert record.duration_ms >= 0
    assert record.request_id == "client-chosen-id-1"
    assert not hasattr(record, "user")


def test_request_id_malformed_is_replaced(client):
    response = client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    generated = response.headers["X-Request-ID"]
    assert generated != "bad id with spaces"
    assert logs.REQUEST_ID.match(generated)


def test_access_line_user_only_when_session_read(client, auth, caplog):
    login = auth.login()
    user_id = login.get_json()["user"]["id"]
    with caplog.at_level(logging.INFO):
        client.get("/api/auth/status")   # reads the session
        client.get("/health")            # never touches the session
    status_line, health_line = access_records(caplog)
    assert status_line.user == user_id[:12]
    assert not hasattr(health_line, "user")
    for record in caplog.records:
        assert USER_TOKEN not in record.getMessage()


def test_liveness_access_line_is_debug(client, caplog):
    with caplog.at_level(logging.DEBUG):
        client.get("/health/live")
    records = access_records(caplog)
    assert [record.levelno for record in records] == [logging.DEBUG]


def test_access_line_once_when_session_save_fails(app, caplog, monkeypatch):
    @app.post("/__touch")
    def touch_session():
        from flask import session

        session["touched"] = True
        return {"ok": True}

    def failing_save(*args, **kwargs):
        raise StoreUnavailable("database went away")

    monkeypatch.setattr(app.session_interface, "save_session", failing_save)
    with caplog.at_level(logging.INFO):
        response = app.test_client().post("/__touch", json={})
    assert response.status_code == 503
    records = access_records(caplog)
    assert len(records) == 1
    assert records[0].status == 503


def test_records_of_a_request_carry_its_id(app, caplog):
    @app.get("/__chatty")
    def chatty():
        logging.getLogger("stabilizer.test").warning("inside the view")
        return {"ok": True}

    with caplog.at_level(logging.INFO):
        response = app.test_client().get("/__chatty")
        logging.getLogger("stabilizer.test").warning("after the request")
    request_id = response.headers["X-Request-ID"]
    records = [record for record in caplog.records if record.name in ("stabilizer.test", "stabilizer.access")]
    assert len(records) == 3
    assert [record.request_id for record in records[:2]] == [request_id, request_id]
    assert getattr(records[2], "request_id", None) is None


# --- one error path ----------------------------------------------------------------------

def test_unhandled_view_error_logged_once(app, caplog):
    @app.get("/__boom")
    def boom():
        raise RuntimeError(f"exploded with token={SECRET_VALUE}")

    with caplog.at_level(logging.INFO):
        response = app.test_client().get("/__boom", headers={"X-Request-ID": "boom-request-01"})
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.get_json()
    assert body["code"] == "internal_error"
    assert body["request_id"] == "boom-request-01"
    assert "exploded" not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)

    errors_logged = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors_logged) == 1
    record = errors_logged[0]
    assert record.exc_info[0] is RuntimeError
    line = JsonFormatter().format(record)
    assert SECRET_VALUE not in line
    assert json.loads(line)["request_id"] == "boom-request-01"
    assert [record.status for record in access_records(caplog)] == [500]


@pytest.fixture
def default_hooks(monkeypatch):
    """Python's default process hooks, as in a server process; pytest's own are restored afterwards."""
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    monkeypatch.setattr(errors, "_hooks_installed", False)


def current_hooks() -> tuple:
    return sys.excepthook, threading.excepthook, sys.unraisablehook


def test_process_hooks_installed_once(default_hooks, make_app, monkeypatch):
    make_app()
    assert current_hooks() == (errors._log_uncaught, errors._log_thread_exception, errors._log_unraisable)
    # a hook replaced later (a debugger, say) is not taken back by the next app
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    second = make_app()
    errors.install_process_hooks()
    assert current_hooks() == (sys.__excepthook__, errors._log_thread_exception, errors._log_unraisable)
    # the Flask handlers are registered once per app
    assert len(second.error_handler_spec[None][500]) == 1


def test_process_hooks_leave_other_hooks(make_app, monkeypatch):
    def tool_hook(args):
        pass

    monkeypatch.setattr(threading, "excepthook", tool_hook)
    monkeypatch.setattr(errors, "_hooks_installed", False)
    make_app()
    assert threading.excepthook is tool_hook


def test_thread_exception_logged(default_hooks, make_app, caplog):
    make_app()

    def fails():
        raise ValueError("thread blew up")

    with caplog.at_level(logging.ERROR):
        thread = threading.Thread(target=fails, name="test-thread")
        thread.start()
        thread.join(WAIT)
    records = [record for record in caplog.records if record.name == "stabilizer.errors"]
    assert len(records) == 1
    assert records[0].getMessage() == "uncaught exception in thread test-thread"
    assert records[0].exc_info[0] is ValueError


def test_uncaught_exception_logged(default_hooks, make_app, caplog):
    make_app()
    try:
        raise KeyError("main thread")
    except KeyError:
        exc_info = sys.exc_info()
    with caplog.at_level(logging.ERROR):
        sys.excepthook(*exc_info)
    records = [record for record in caplog.records if record.name == "stabilizer.errors"]
    assert [record.levelno for record in records] == [logging.CRITICAL]
    assert records[0].exc_info[0] is KeyError


def test_unraisable_exception_logged(default_hooks, make_app, caplog):
    make_app()

    class BrokenClose:
        def __del__(self):
            raise OSError("close failed")

    with caplog.at_level(logging.ERROR):
        BrokenClose()
    records = [record for record in caplog.records if record.name == "stabilizer.errors"]
    assert len(records) == 1
    assert records[0].getMessage().startswith("Exception ignored in: <function")
    assert records[0].exc_info[0] is OSError


def test_pruner_continues_after_failure(monkeypatch, caplog):
    from stabilizer import sessions
    from stabilizer.db import PruneResult

    class FlakyDatabase:
        calls = 0

        def check_connections(self) -> None:
            pass

        def prune(self, **options) -> PruneResult:
            FlakyDatabase.calls += 1
            if FlakyDatabase.calls == 1:
                raise StoreUnavailable("connection refused")
            return PruneResult(deleted=0, batches=0, skipped=False)

        def ratelimit_prune(self) -> int:
            return 0

    monkeypatch.setattr(sessions, "ERROR_PAUSE_SECONDS", 0.01)
    pruner = sessions.Pruner(FlakyDatabase(), interval=0.01)
    with caplog.at_level(logging.ERROR, logger="stabilizer.sessions"):
        pruner.start()
        try:
            assert wait_for(lambda: pruner.runs >= 2)
        finally:
            pruner.stop()
    failures = [record for record in caplog.records if record.name == "stabilizer.sessions"]
    assert len(failures) == 1
    assert failures[0].exc_info[0] is StoreUnavailable


def test_generated_secret_warning_uses_the_log_format(tmp_path):
    """The first start logs the generated development secret in the configured format."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    script = ("from stabilizer import create_app; "
              f"create_app(instance_path={str(tmp_path / 'instance')!r})")
    environ = {"PATH": os.environ["PATH"], "PYTHONPATH": str(root), "WUZAPI_BASE_URL": "http://127.0.0.1:9",
               "SQLITE_PATH": str(tmp_path / "s.sqlite3")}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=environ,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert any("generated a development secret" in line["message"] for line in lines), result.stderr
