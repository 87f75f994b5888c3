"""Logging that keeps the server serving when stdout or stderr is closed, full or stalled.

Everything a process writes to stdout or stderr passes through one bounded outbox that
one daemon thread drains. gunicorn's master and each worker have their own outbox and
thread, and a forked child starts with an empty outbox.

- :class:`SafeStream` replaces ``sys.stdout`` and ``sys.stderr``. ``write()`` queues
  whole lines in the outbox and returns at once; when the outbox is full the line is
  dropped and counted. The writer thread writes with ``os.write`` on the file descriptor, so a
  reader that stops reading blocks only that thread, and it holds no lock that a request
  or interpreter shutdown needs. A failed write (EPIPE, a closed descriptor, any other
  ``OSError``) marks the stream dead and points its descriptor at ``/dev/null``.
- :class:`NonBlockingHandler` formats a record in the caller's thread and hands the
  line to a :class:`SafeStream`. It rate-limits repeated warnings and errors
  (:class:`RepeatLimiter`).
- :class:`JsonFormatter` writes one JSON object per line; :class:`TextFormatter` is for
  people at a terminal. Both mask secrets (:func:`redact`).
- :func:`init_app` gives every request an id (a well-formed ``X-Request-ID`` or a new
  one), attaches it to every record made during the request, echoes it in the
  response, and writes one access line per request.
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import re
import select
import sys
import threading
import time
import traceback
import uuid
import weakref
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")

QUEUE_RECORDS = 10000  # writes queued in one process's outbox before further ones are dropped
QUEUE_BYTES = 1 << 20  # bytes queued in one process's outbox before further writes are dropped (1 MiB)
DRAIN_TIMEOUT = 2.0  # seconds flush() waits at most for the outbox to be written
DRAIN_STALL = 0.5  # seconds without progress after which flush() stops waiting (a stalled reader)
WRITER_ERROR_PAUSE = 0.5  # seconds the writer thread pauses after an unexpected error
IDLE_INTERVAL = 1.0  # seconds between the writer thread's housekeeping runs (repeat summaries)
REPEAT_WINDOW = 60.0  # seconds of one rate-limiting window
REPEAT_BURST = 10  # identical warnings or errors written per window; later ones are counted
REPEAT_MAX_KEYS = 1000  # distinct (logger, level, template) keys tracked at once
PARTIAL_LINE_MAX = 65536  # characters of an unfinished line kept per thread before it is queued as is
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")
SHORT_SECRET = 8  # shorter values are masked only next to their key, never by value alone
MAX_BODY_SCAN = 65536  # bytes: larger JSON request bodies are not searched for secrets

# Every instance that owns locks or threads, so the fork hook can reset them in the child.
_instances: weakref.WeakSet[Any] = weakref.WeakSet()


# --- redaction -------------------------------------------------------------------------

_KEYS = r"token|authorization|passw(?:or)?d|secret|api[-_]?key|\bsid|session[-_]?id"
_SEPARATOR = r"[\"']?[ \t]*[:=][ \t]*"
_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'"
_SECRET_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    # Cookie and Set-Cookie values run to the end of the line or the closing quote.
    (re.compile(rf"(?i)(cookie)({_SEPARATOR})({_QUOTED}|[^\r\n]+)"),
     lambda match: match[1] + match[2] + _mask_value(match[3])),
    # key: value, key=value, "key": "value", 'key': 'value', with an optional auth scheme.
    (re.compile(rf"(?i)({_KEYS})({_SEPARATOR})({_QUOTED}|(?:(?:bearer|basic|token|digest)[ \t]+)?"
                r"[^\s\"',;&)}\]]+)"),
     lambda match: match[1] + match[2] + _mask_value(match[3])),
    # A bearer token on its own, as in an exception message that quotes a header value.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), lambda match: match[1] + " ***"),
    # Credentials in a URL: scheme://user:password@host. The lookbehind and the possessive
    # quantifiers keep this linear: a long run like "a.a.a…" is scanned once, not from every dot.
    (re.compile(r"(?i)(?<![a-z0-9+.\-])([a-z][a-z0-9+.\-]*+://[^/\s:@]*+:)[^@\s/]++@"),
     lambda match: match[1] + "***@"),
]
_SECRET_KEY = re.compile(rf"(?i)(?:{_KEYS}|cookie)")
_AUTH_SCHEME = re.compile(r"(?i)^(bearer|basic|token|digest)([ \t]+)")

_registered: tuple[str, ...] = ()
_registered_lock = threading.Lock()


def _mask_value(value: str) -> str:
    """Return ``value`` masked, keeping its quotes and an auth scheme word, if any."""
    if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2:
        return value[0] + "***" + value[0]
    scheme = _AUTH_SCHEME.match(value)
    if scheme:
        return scheme[1] + scheme[2] + "***"
    return "***"


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears in any log record of this process.

    Meant for configured secrets (the admin token, the session secret). Values shorter
    than ``SHORT_SECRET`` characters are ignored: masking them everywhere would garble
    ordinary words.
    """
    global _registered
    if not value or len(value) < SHORT_SECRET:
        return
    with _registered_lock:
        if value not in _registered:
            # Replaced, never mutated, so redact() can read it without the lock.
            _registered = tuple(sorted({*_registered, value}, key=len, reverse=True))


def redact(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with tokens, credentials, cookies and passwords replaced by ``***``.

    Values next to a known key are masked whatever their length; registered secrets
    and ``extra_secrets`` (the current request's credentials) are masked wherever they
    appear.
    """
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    for secret in (*_registered, *extra_secrets):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def redact_value(value: Any, extra_secrets: Iterable[str] = ()) -> Any:
    """Return a copy of a log field with secrets masked; dict values under secret keys become ``***``."""
    if isinstance(value, str):
        return redact(value, extra_secrets)
    if isinstance(value, dict):
        return {key: "***" if isinstance(key, str) and _SECRET_KEY.search(key)
                else redact_value(item, extra_secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(item, extra_secrets) for item in value]
    return value


# --- counters ----------------------------------------------------------------------------

class LogStats:
    """This process's counters of records that were not written.

    ``dropped`` counts records and writes lost to a full outbox, a dead stream or a
    formatting failure. ``suppressed`` counts repeats held back by rate limiting, and each
    window's count is also written in a summary line. A forked child starts from zero, so
    in gunicorn every worker reports only its own counts.
    """

    lock = threading.RLock()  # reentrant: a signal handler that logs may interrupt a thread holding it
    dropped = 0
    suppressed = 0
    dead_streams: set[str] = set()

    @classmethod
    def drop(cls, count: int = 1) -> None:
        with cls.lock:
            cls.dropped += count

    @classmethod
    def suppress(cls, count: int = 1) -> None:
        with cls.lock:
            cls.suppressed += count

    @classmethod
    def mark_dead(cls, name: str) -> None:
        with cls.lock:
            cls.dead_streams.add(name)

    @classmethod
    def snapshot(cls) -> dict[str, Any]:
        with cls.lock:
            return {"dropped": cls.dropped, "suppressed": cls.suppressed,
                    "dead_streams": sorted(cls.dead_streams), "pid": os.getpid()}

    @classmethod
    def reset_after_fork(cls) -> None:
        # Dead streams stay dead in the child, which inherited the same descriptor.
        cls.lock = threading.RLock()
        cls.dropped = 0
        cls.suppressed = 0


# --- the outbox and its writer thread ----------------------------------------------------

class LogWriter:
    """A bounded outbox of pending writes, drained by one daemon thread.

    ``put()`` does not wait for the writer: when the outbox already contains
    ``max_records`` writes or ``max_bytes`` bytes, the write is rejected and the caller
    counts it as dropped. The thread starts on the first ``put()`` in each process, so it
    also exists in every forked gunicorn worker. Callables in ``idle_callbacks`` run in
    the thread about every ``IDLE_INTERVAL`` seconds. Thread-safe.
    """

    def __init__(self, max_records: int = QUEUE_RECORDS, max_bytes: int = QUEUE_BYTES, name: str = "log-writer"):
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.name = name
        self.idle_callbacks: list[Callable[[], None]] = []
        self._reset()
        _instances.add(self)

    def _reset(self) -> None:
        # Reentrant: a signal handler that logs may interrupt a thread inside put().
        self._cond = threading.Condition(threading.RLock())
        self._items: deque[tuple[SafeStream, bytes]] = deque()
        self._bytes = 0
        self._busy = False
        self._written = 0
        self._stalled_at: int | None = None  # the write count when a drain last gave up on a stalled reader
        self._stopping = False
        self._thread: threading.Thread | None = None

    def after_fork(self) -> None:
        # The parent's pending writes are the parent's to write; its thread is gone here.
        self._reset()

    def put(self, stream: SafeStream, data: bytes) -> bool:
        """Queue ``data`` for ``stream``; return False when the outbox is full."""
        with self._cond:
            # An outbox with nothing pending takes a write of any size, so one big record
            # (a long traceback) is not lost while the reader keeps up.
            full = len(self._items) >= self.max_records or self._bytes + len(data) > self.max_bytes
            if self._items and full:
                return False
            if not self._start_thread():
                return False
            self._items.append((stream, data))
            self._bytes += len(data)
            self._cond.notify()
        return True

    def _start_thread(self) -> bool:
        """Start the writer thread unless it runs; called with the lock held."""
        if self._thread is not None and self._thread.is_alive():
            return True
        self._stopping = False
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new threads during interpreter shutdown
            return False
        self._thread = thread
        return True

    def _run(self) -> None:
        next_idle = time.monotonic() + IDLE_INTERVAL
        while True:
            with self._cond:
                while not self._items and not self._stopping and time.monotonic() < next_idle:
                    self._cond.wait(max(0.0, next_idle - time.monotonic()))
                if self._stopping and not self._items:
                    return
                item = self._items.popleft() if self._items else None
                if item is not None:
                    self._bytes -= len(item[1])
                    self._busy = True

            if time.monotonic() >= next_idle:
                self._run_idle_callbacks()
                next_idle = time.monotonic() + IDLE_INTERVAL
            if item is not None:
                self._write(*item)

    def _write(self, stream: SafeStream, data: bytes) -> None:
        try:
            stream.write_now(data)
        except Exception:  # noqa: BLE001 - the writer must outlive any single bad write
            LogStats.drop()
            logging.getLogger(__name__).exception(
                "log writer failed to write to %s; continuing after %.1f s", stream.name, WRITER_ERROR_PAUSE)
            time.sleep(WRITER_ERROR_PAUSE)
        finally:
            with self._cond:
                self._busy = False
                self._written += 1
                self._cond.notify_all()

    def _run_idle_callbacks(self) -> None:
        for callback in list(self.idle_callbacks):
            try:
                callback()
            except Exception:  # noqa: BLE001 - housekeeping must not stop the writer
                LogStats.drop()

    def pending(self) -> int:
        """Return how many writes wait in the outbox or are being written."""
        with self._cond:
            return len(self._items) + (1 if self._busy else 0)

    def drain(self, timeout: float = DRAIN_TIMEOUT, stall: float = DRAIN_STALL) -> bool:
        """Wait until every queued write is done; return False when giving up.

        Gives up after ``timeout`` seconds, or after ``stall`` seconds in which no write
        completed, which is what a reader that stopped reading looks like. When an earlier
        drain gave up on a stall and no write has completed since, it gives up at once, so
        the several flushes of a process's exit do not each wait.
        """
        if threading.current_thread() is self._thread:
            return False
        now = time.monotonic()
        deadline = now + timeout
        with self._cond:
            progress, progress_at = self._written, now
            while self._items or self._busy:
                if self._thread is None or not self._thread.is_alive() or self._stalled_at == self._written:
                    return False
                now = time.monotonic()
                if self._written != progress:
                    progress, progress_at = self._written, now
                if now - progress_at >= stall:
                    self._stalled_at = self._written
                    return False
                if now >= deadline:
                    return False
                self._cond.wait(min(0.05, deadline - now))
        return True

    def stop(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Write what is queued (within ``timeout``), then end the thread; a later put() restarts it."""
        self.drain(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(DRAIN_STALL)


_default_writer: LogWriter | None = None
_default_writer_lock = threading.Lock()


def default_writer() -> LogWriter:
    """Return the process's shared writer, creating it on first use."""
    global _default_writer
    if _default_writer is not None:
        return _default_writer
    with _default_writer_lock:
        if _default_writer is None:
            _default_writer = LogWriter()
        return _default_writer


# --- safe streams ------------------------------------------------------------------------

class SafeStream:
    """A text stream on a file descriptor whose ``write()`` neither raises ``OSError`` nor waits for the reader.

    ``write()`` queues whole lines on a :class:`LogWriter`, and the writer thread calls
    :meth:`write_now`. Text without a newline waits in a buffer of the calling thread
    until its line is complete or the thread calls ``flush()``, so ``print()``, which
    writes the text and the newline separately, never has another thread's line spliced
    into its own. After the first failed write the stream is dead: its descriptor is
    pointed at ``/dev/null``, so no later write or flush (the one at interpreter exit
    included) can fail on it, and every later write counts as dropped. ``flush()`` does
    not wait for the writer: use :meth:`drain` to wait, with a bound. Thread-safe.
    """

    mode = "w"
    line_buffering = False

    def __init__(self, fd: int, name: str, *, writer: LogWriter | None = None, encoding: str = "utf-8",
                 errors: str = "backslashreplace"):
        self.fd = fd
        self.name = name
        self.encoding = encoding
        self.errors = errors
        self.writer = writer
        self.dead = False
        self._lock = threading.Lock()
        self._partial = threading.local()
        _instances.add(self)

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def _writer(self) -> LogWriter:
        return self.writer or default_writer()

    # The file API used by print(), logging and libraries.

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        pending = getattr(self._partial, "text", "")
        if not pending and text.endswith("\n"):
            self.write_bytes(text.encode(self.encoding, self.errors))  # a whole line: the common case
            return len(text)
        pending += text
        complete, newline, rest = pending.rpartition("\n")
        if len(rest) > PARTIAL_LINE_MAX:
            complete, newline, rest = pending, "", ""
        self._partial.text = rest
        if complete or newline:
            self.write_bytes((complete + newline).encode(self.encoding, self.errors))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def write_bytes(self, data: bytes) -> None:
        """Queue ``data``; count it as dropped when the stream is dead or the outbox is full."""
        if not data:
            return
        if self.dead or not self._writer().put(self, data):
            LogStats.drop()

    def flush(self) -> None:
        """Queue this thread's unfinished line, without waiting: waiting for the writer here
        could block a request on a stalled reader."""
        pending = getattr(self._partial, "text", "")
        if pending:
            self._partial.text = ""
            self.write_bytes(pending.encode(self.encoding, self.errors))

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Wait up to ``timeout`` seconds for queued writes; return False when some may remain."""
        return self._writer().drain(timeout)

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        try:
            return os.isatty(self.fd)
        except OSError:
            return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return False

    def close(self) -> None:
        """Do nothing: the process's standard streams stay open until it exits."""

    @property
    def buffer(self) -> _SafeBinaryStream:
        return _SafeBinaryStream(self)

    # The writer thread's side.

    def write_now(self, data: bytes) -> None:
        """Write ``data`` to the descriptor, blocking while the reader is slow; never raises ``OSError``."""
        if self.dead:
            LogStats.drop()
            return
        with self._lock:
            view = memoryview(data)
            try:
                while view:
                    try:
                        written = os.write(self.fd, view)
                    except BlockingIOError:
                        # A descriptor someone made non-blocking: a full pipe, not a dead one.
                        select.select([], [self.fd], [], 1.0)
                        continue
                    view = view[written:]
            except OSError as exc:
                # EPIPE when the reader closed its end; EBADF, EIO, ENOSPC and the rest too.
                self._kill(exc)
                LogStats.drop()

    def _kill(self, exc: OSError) -> None:
        self.dead = True
        LogStats.mark_dead(self.name)
        if exc.errno == errno.EBADF:
            return  # the number may already belong to another file: leave it alone
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        try:
            os.dup2(devnull, self.fd)
        except OSError:
            pass
        finally:
            os.close(devnull)


class _SafeBinaryStream:
    """``SafeStream.buffer``: the same stream for code that writes bytes."""

    def __init__(self, stream: SafeStream):
        self._stream = stream

    def write(self, data: bytes) -> int:
        self._stream.flush()  # this thread's unfinished text line goes first
        self._stream.write_bytes(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self._stream.fd


def install_safe_stdio() -> tuple[SafeStream, SafeStream]:
    """Replace sys.stdout and sys.stderr by safe streams, once per process.

    ``print()`` then no longer fails or waits when a stream is closed, full or stalled.

    Whatever the old streams still buffer is flushed first. At exit the outbox is
    written, for at most ``DRAIN_TIMEOUT`` seconds.
    """
    for name, default_fd in (("stdout", 1), ("stderr", 2)):
        current = getattr(sys, name)
        if isinstance(current, SafeStream):
            continue
        fd = default_fd
        if current is not None:
            try:
                current.flush()
            except (OSError, ValueError):
                pass
            try:
                fd = current.fileno()
            except (OSError, ValueError, AttributeError):
                pass  # not a real file (a test's capture): fall back to the process's descriptor
        setattr(sys, name, SafeStream(fd, name))
    return sys.stdout, sys.stderr  # type: ignore[return-value]


def _drain_at_exit() -> None:
    if _default_writer is not None:
        _default_writer.drain()


atexit.register(_drain_at_exit)


# --- rate limiting of repeats ------------------------------------------------------------

class _Window:
    __slots__ = ("started", "written", "suppressed")

    def __init__(self, started: float):
        self.started = started
        self.written = 0
        self.suppressed = 0


class RepeatLimiter:
    """Lets at most ``burst`` records per (logger, level, message template) through per ``window`` seconds.

    Only records at ``level`` or above are limited. A window starts with the first
    record of its key. The records held back in it are counted, and when the window has
    ended one summary record gives their number. Thread-safe.
    """

    SUMMARY = "'%s' repeated %d more times in %.0f s"

    def __init__(self, burst: int = REPEAT_BURST, window: float = REPEAT_WINDOW, level: int = logging.WARNING,
                 max_keys: int = REPEAT_MAX_KEYS, clock: Callable[[], float] = time.monotonic):
        self.burst = burst
        self.window = window
        self.level = level
        self.max_keys = max_keys
        self.clock = clock
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._lock = threading.RLock()
        _instances.add(self)

    def after_fork(self) -> None:
        self._lock = threading.RLock()
        self._windows = {}

    def check(self, record: logging.LogRecord) -> tuple[bool, list[logging.LogRecord]]:
        """Return whether to write ``record``, and the summary records due before it."""
        if record.levelno < self.level:
            return True, []
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        summaries: list[logging.LogRecord] = []
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.started >= self.window:
                if window.suppressed:
                    summaries.append(self._summary(key, window))
                window = None
            if window is None:
                if len(self._windows) >= self.max_keys:
                    summaries.extend(self._evict(now, force=True))
                window = self._windows[key] = _Window(now)
            if window.written < self.burst:
                window.written += 1
                return True, summaries
            window.suppressed += 1
        LogStats.suppress()
        return False, summaries

    def expired(self, all_windows: bool = False) -> list[logging.LogRecord]:
        """Forget ended windows (every window with ``all_windows``) and return the summaries
        of those that held records back."""
        with self._lock:
            return self._evict(self.clock(), force=all_windows)

    def _evict(self, now: float, force: bool) -> list[logging.LogRecord]:
        """Drop ended windows (all of them when ``force``); called with the lock held."""
        summaries = []
        for key, window in list(self._windows.items()):
            if force or now - window.started >= self.window:
                if window.suppressed:
                    summaries.append(self._summary(key, window))
                del self._windows[key]
        return summaries

    def _summary(self, key: tuple[str, int, str], window: _Window) -> logging.LogRecord:
        name, level, template = key
        record = logging.LogRecord(name, level, __file__, 0, self.SUMMARY,
                                   (template, window.suppressed, self.window), None)
        record.repeated = window.suppressed
        return record


# --- handler -----------------------------------------------------------------------------

class NonBlockingHandler(logging.Handler):
    """Formats records in the caller's thread and queues the lines on a :class:`SafeStream`.

    ``emit()`` neither waits for the writer nor raises: a line that does not fit in the
    outbox, or a record that cannot be formatted, is counted as dropped. Repeated warnings
    and errors are rate-limited by ``repeats``, when given.
    """

    def __init__(self, stream: SafeStream, *, repeats: RepeatLimiter | None = None):
        super().__init__()
        self.stream = stream
        self.repeats = repeats
        # Summaries of windows that end while nothing else is logged are written by the writer thread.
        stream._writer().idle_callbacks.append(self.write_expired_summaries)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            allowed, summaries = self.repeats.check(record) if self.repeats else (True, [])
        except Exception:  # noqa: BLE001 - a message that cannot be read as a key is written anyway
            allowed, summaries = True, []
        for summary in summaries:
            self._write(summary)
        if allowed:
            self._write(record)

    def _write(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is dropped, not raised
            LogStats.drop()
            return
        self.stream.write(line)

    def write_expired_summaries(self, all_windows: bool = False) -> None:
        if self.repeats:
            for summary in self.repeats.expired(all_windows):
                self._write(summary)

    def flush(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Write the counts of every held-back repeat, then wait up to ``timeout`` seconds
        for queued lines to be written."""
        self.write_expired_summaries(all_windows=True)
        self.stream.drain(timeout)

    def close(self) -> None:
        callbacks = self.stream._writer().idle_callbacks
        if self.write_expired_summaries in callbacks:
            callbacks.remove(self.write_expired_summaries)
        self.flush()
        super().close()


# --- request ids and formatters ----------------------------------------------------------

def current_request_id() -> str | None:
    try:
        from flask import g, has_request_context
    except ImportError:  # pragma: no cover
        return None
    if has_request_context():
        return g.get("request_id")
    return None


class RequestIdFilter(logging.Filter):
    """Attach the current request's id to a record that the record factory did not label."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id()
        return True


_factory_installed = False


def install_record_factory() -> None:
    """Label every record made during a request with its id, for every handler, once per process.

    The id is set when the record is created, so ``extra={"request_id": ...}`` raises
    KeyError inside a request: the id comes from the request, never from the caller.
    """
    global _factory_installed
    with _configured_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            request_id = current_request_id()
            if request_id:
                record.request_id = request_id
            return record

        logging.setLogRecordFactory(make_record)
        _factory_installed = True


def request_secrets() -> tuple[str, ...]:
    """Return the current request's credentials, to mask by value in its records.

    Collected once per request from the Token, Authorization and Cookie headers, query
    parameters with secret names, and, for a JSON body of at most ``MAX_BODY_SCAN``
    bytes, top-level string fields with secret names. Outside a request: nothing.
    """
    try:
        from flask import g, has_request_context, request
    except ImportError:  # pragma: no cover
        return ()
    if not has_request_context():
        return ()
    cached = g.get("_log_secrets")
    if cached is None:
        cached = g._log_secrets = _collect_request_secrets(request)
    return cached


def _collect_request_secrets(request: Any) -> tuple[str, ...]:
    values: set[str] = set()
    for header in ("Token", "Authorization", "Cookie"):
        value = request.headers.get(header)
        if value:
            values.add(value)
            values.add(_AUTH_SCHEME.sub("", value))
    values.update(value for value in request.cookies.values())
    for name, value in request.args.items(multi=True):
        if _SECRET_KEY.search(name):
            values.add(value)
    length = request.content_length
    if request.is_json and length is not None and length <= MAX_BODY_SCAN:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            values.update(value for key, value in body.items()
                          if isinstance(value, str) and _SECRET_KEY.search(str(key)))
    # Longest first, so a whole header is masked before a part of it.
    return tuple(sorted((value for value in values if len(value) >= SHORT_SECRET), key=len, reverse=True))


_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        secrets = request_secrets()
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": redact(record.getMessage(), secrets),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = "***" if _SECRET_KEY.search(key) else redact_value(value, secrets)
        if record.exc_info:
            entry["exception"] = redact("".join(traceback.format_exception(*record.exc_info)).rstrip(), secrets)
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text, secrets)
        if record.stack_info:
            entry["stack"] = redact(record.stack_info, secrets)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message`` lines, tracebacks below; for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or "-"
        text = f"{self.formatTime(record)} {record.levelname:<7} {record.name} [{request_id}] {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return redact(text, request_secrets())


# --- configuration -----------------------------------------------------------------------

_configured_lock = threading.Lock()
_handler: NonBlockingHandler | None = None
_RAW_STDIO = tuple(stream for stream in (sys.__stdout__, sys.__stderr__) if stream is not None)


def configure(level: str = "info", fmt: str = "json") -> NonBlockingHandler:
    """Route the root logger through one non-blocking handler on a safe stderr.

    Idempotent: a later call (a second app in the same process, gunicorn's logger and
    then the app in a worker) only updates the level and the format.
    """
    global _handler
    with _configured_lock:
        install_safe_stdio()
        if _handler is None:
            _handler = NonBlockingHandler(sys.stderr, repeats=RepeatLimiter())  # type: ignore[arg-type]
            _handler.addFilter(RequestIdFilter())
            root = logging.getLogger()
            for existing in list(root.handlers):
                # A handler someone attached to the raw standard streams would bypass the safe ones.
                if isinstance(existing, logging.StreamHandler) and existing.stream in _RAW_STDIO:
                    root.removeHandler(existing)
            root.addHandler(_handler)
            logging.raiseExceptions = False  # never print "--- Logging error ---" tracebacks
            logging.captureWarnings(True)
        _handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        logging.getLogger().setLevel(level.upper())
        return _handler


def configure_early(environ: Mapping[str, str] | None = None) -> NonBlockingHandler:
    """Configure logging from LOG_LEVEL and LOG_FORMAT before the settings are validated.

    Loading the settings may already log (a generated development secret); this makes
    those lines come out in the chosen format. Invalid values fall back to the defaults
    here, and the settings report them.
    """
    environ = os.environ if environ is None else environ
    level = environ.get("LOG_LEVEL", "").strip().lower()
    fmt = environ.get("LOG_FORMAT", "").strip().lower()
    return configure(level if level in LOG_LEVELS else "info", fmt if fmt in LOG_FORMATS else "json")


def flush(timeout: float = DRAIN_TIMEOUT) -> None:
    """Write queued records, waiting at most ``timeout`` seconds (less when the reader stalls)."""
    if _handler is not None:
        _handler.flush(timeout)
    elif _default_writer is not None:
        _default_writer.drain(timeout)


def new_request_id(header_value: str | None) -> str:
    """Return the caller's X-Request-ID when well formed, else a new random id."""
    if header_value and REQUEST_ID.match(header_value):
        return header_value
    return uuid.uuid4().hex


def _after_fork_in_child() -> None:
    global _configured_lock, _default_writer_lock, _registered_lock
    _configured_lock = threading.Lock()
    _default_writer_lock = threading.Lock()
    _registered_lock = threading.Lock()
    LogStats.reset_after_fork()
    for instance in list(_instances):
        instance.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


# --- per-request hooks -------------------------------------------------------------------

ACCESS = logging.getLogger("stabilizer.access")
QUIET_PATHS = frozenset({"/health/live"})  # probed every few seconds: access lines at debug level


def init_app(app: Any) -> None:
    """Give every request an id and write one access line when it ends.

    The access line is written at teardown, which runs once per request even when
    saving the session fails after the view and Flask responds with an error instead.
    """
    install_record_factory()
    app.before_request(_start_request)
    app.after_request(_remember_response)
    app.teardown_request(_log_access)


def _start_request() -> None:
    from flask import g, request

    g.request_id = new_request_id(request.headers.get("X-Request-ID"))
    g.log_started = time.monotonic()


def _remember_response(response: Any) -> Any:
    from flask import g

    request_id = g.get("request_id")
    if request_id:
        response.headers["X-Request-ID"] = request_id
    g.log_status = response.status_code
    return response


def _log_access(error: BaseException | None) -> None:
    from flask import g, request

    started = g.get("log_started")
    status = g.get("log_status") or 500
    duration_ms = round((time.monotonic() - started) * 1000, 1) if started is not None else None
    fields: dict[str, Any] = {"method": request.method, "path": request.path, "status": status,
                              "duration_ms": duration_ms}
    user = _loaded_user_id()
    if user:
        fields["user"] = user[:12]
    level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
    ACCESS.log(level, "%s %s %d %s ms", request.method, request.path, status, duration_ms, extra=fields)


def _loaded_user_id() -> str | None:
    """Return the user id of a session the request already read; never read one just to log it."""
    from flask import session

    try:
        current = session._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:
        return None
    loaded = getattr(current, "loaded", None)
    if loaded is None:
        loaded = getattr(current, "accessed", False)
    if not loaded:
        return None
    user = dict.get(current, "user")
    user_id = user.get("id") if isinstance(user, dict) else None
    return user_id if isinstance(user_id, str) else None


# --- gunicorn ----------------------------------------------------------------------------

try:
    from gunicorn import glogging
except ImportError:  # pragma: no cover - gunicorn is only needed to serve
    glogging = None

if glogging is not None:

    class GunicornLogger(glogging.Logger):
        """gunicorn's error log, written through the same safe, non-blocking handler as the app.

        gunicorn's own access log stays off whatever ``accesslog`` sets, because the app
        writes one access line per request and a second one would duplicate it.
        """

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

        @property
        def access_log_enabled(self) -> bool:
            return False

        def access(self, resp, req, environ, request_time):  # noqa: ANN001 - gunicorn's signature
            """Write nothing: the app's access line already covers the request."""
