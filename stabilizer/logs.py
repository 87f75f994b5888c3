"""Logging that never crashes, floods or blocks the server.

- :class:`SafeStream` wraps stdout/stderr: a write to a closed pipe (EPIPE), a closed
  stream or any other ``OSError`` marks the stream dead, points its file descriptor at
  ``/dev/null`` (so a final flush at exit cannot fail either) and counts the record
  as dropped.
- :class:`NonBlockingHandler` puts records on a bounded queue that one writer thread
  per process drains; when the reader of the pipe stalls, the queue fills and further
  records are dropped and counted, and request threads never wait.
- :class:`JsonFormatter` writes one JSON object per line; :class:`TextFormatter` is for
  people at a terminal. Both pass everything through :func:`redact`.
- Request ids: taken from a well-formed ``X-Request-ID`` or generated, attached to every
  record of the request and echoed in the response.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import sys
import threading
import time
import traceback
import uuid
from datetime import datetime, timezone
from typing import Any, TextIO

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")
QUEUE_SIZE = 10000

_SECRET_PATTERNS = [
    # Header-style pairs: "Token: abc", "Authorization: xyz", "Cookie: a=b".
    (re.compile(r"(?i)\b(token|authorization|cookie|set-cookie|password|secret|x-api-key)(\"?\s*[:=]\s*\"?)"
                r"([^\s\",;&]+)"), r"\1\2***"),
    # Query strings: ?token=abc&...
    (re.compile(r"(?i)([?&](?:token|password|secret|sid)=)[^&\s\"']+"), r"\1***"),
    # URL credentials: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+@"), r"\1***@"),
]
_extra_secrets: set[str] = set()
_extra_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in a log record (configured tokens, secrets)."""
    if value and len(value) >= 6:
        with _extra_lock:
            _extra_secrets.add(value)


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in _extra_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


class LogStats:
    """Process-wide counters of records the logging system could not write."""

    lock = threading.Lock()
    dropped = 0
    dead_streams: set[str] = set()

    @classmethod
    def drop(cls, count: int = 1) -> None:
        with cls.lock:
            cls.dropped += count

    @classmethod
    def snapshot(cls) -> dict[str, Any]:
        with cls.lock:
            return {"dropped": cls.dropped, "dead_streams": sorted(cls.dead_streams)}


class SafeStream:
    """A text stream wrapper whose writes never raise. Thread-safe.

    After the first failed write the stream is dead: its descriptor is redirected to
    ``/dev/null`` and later writes are counted as dropped.
    """

    def __init__(self, stream: TextIO, name: str):
        self._stream = stream
        self.name = name
        self.dead = False
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def _kill(self) -> None:
        self.dead = True
        with LogStats.lock:
            LogStats.dead_streams.add(self.name)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> int:
        if self.dead:
            LogStats.drop()
            return len(text)
        with self._lock:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):
                # BrokenPipeError (EPIPE), a closed file, or any other I/O failure.
                self._kill()
                LogStats.drop()
        return len(text)

    def flush(self) -> None:
        if self.dead:
            return
        with self._lock:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._kill()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install_safe_stdio() -> tuple[SafeStream, SafeStream]:
    """Wrap sys.stdout and sys.stderr once per process; ``print()`` can then never raise."""
    if not isinstance(sys.stdout, SafeStream):
        sys.stdout = SafeStream(sys.stdout, "stdout")  # type: ignore[assignment]
    if not isinstance(sys.stderr, SafeStream):
        sys.stderr = SafeStream(sys.stderr, "stderr")  # type: ignore[assignment]
    return sys.stdout, sys.stderr  # type: ignore[return-value]


class NonBlockingHandler(logging.Handler):
    """Format in the caller's thread, write in a writer thread; drop when the queue is full."""

    def __init__(self, stream: SafeStream, maxsize: int = QUEUE_SIZE):
        super().__init__()
        self.stream = stream
        self.maxsize = maxsize
        self._after_fork()
        # The writer thread and any lock it held do not survive fork: start afresh in the child.
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue(self.maxsize)
        self._thread: threading.Thread | None = None
        self._thread_pid: int | None = None
        self._start_lock = threading.Lock()

    def _ensure_writer(self) -> None:
        # A thread does not survive fork: each process (gunicorn worker) starts its own.
        if self._thread is not None and self._thread_pid == os.getpid() and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is not None and self._thread_pid == os.getpid() and self._thread.is_alive():
                return
            self._thread_pid = os.getpid()
            self._thread = threading.Thread(target=self._drain, name="log-writer", daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                line = self.queue.get()
                if line is None:
                    return
                self.stream.write(line)
            except Exception:  # noqa: BLE001 - the writer must outlive any single bad record
                LogStats.drop()
                time.sleep(0.05)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is dropped, not raised
            LogStats.drop()
            return
        self._ensure_writer()
        try:
            self.queue.put_nowait(line)
        except queue.Full:
            LogStats.drop()

    def flush(self, timeout: float = 2.0) -> None:
        """Wait up to ``timeout`` seconds for queued records to be written."""
        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.stream.flush()

    def close(self) -> None:
        self.flush()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        super().close()


def current_request_id() -> str | None:
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover
        return None
    if has_request_context():
        return getattr(g, "request_id", None)
    return None


class RequestIdFilter(logging.Filter):
    """Attach the current request's id to every record made while it runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = None
        return redact(super().format(record))


_configured_lock = threading.Lock()
_handler: NonBlockingHandler | None = None


def configure(level: str = "info", fmt: str = "json") -> NonBlockingHandler:
    """Route the root logger through one non-blocking handler on a safe stderr.

    Idempotent: a second call (a second app in the same process) only updates the
    level and format.
    """
    global _handler
    with _configured_lock:
        install_safe_stdio()
        if _handler is None:
            _handler = NonBlockingHandler(sys.stderr)  # type: ignore[arg-type]
            _handler.addFilter(RequestIdFilter())
            logging.getLogger().addHandler(_handler)
            logging.raiseExceptions = False  # never print "--- Logging error ---" tracebacks
        _handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        logging.getLogger().setLevel(level.upper())
        return _handler


def flush() -> None:
    if _handler is not None:
        _handler.flush()


def new_request_id(header_value: str | None) -> str:
    """Return the caller's X-Request-ID when well formed, else a new random id."""
    if header_value and REQUEST_ID.match(header_value):
        return header_value
    return uuid.uuid4().hex


try:
    from gunicorn import glogging
except ImportError:  # pragma: no cover - gunicorn is only needed to serve
    glogging = None

if glogging is not None:

    class GunicornLogger(glogging.Logger):
        """gunicorn's error and access logs, written through Stabilizer's safe, non-blocking handler."""

        def setup(self, cfg):  # noqa: ANN001 - gunicorn's signature
            super().setup(cfg)
            from .config import ConfigError, load_settings

            try:
                settings = load_settings()
                level, fmt = settings.log_level, settings.log_format
            except ConfigError:
                level, fmt = "info", "json"
            handler = configure(level, fmt)
            for log in (self.error_log, self.access_log):
                for existing in list(log.handlers):
                    log.removeHandler(existing)
                log.addHandler(handler)
                log.propagate = False
