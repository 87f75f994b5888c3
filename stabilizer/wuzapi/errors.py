"""What a WUZAPI call can end in, as exception types that say what the caller should do.

Only :class:`UpstreamFailure` counts against the circuit breaker. Its ``sent`` flag is
the retry-safety fact: ``False`` means the request provably never reached WUZAPI
(connection refused, DNS failure, connect timeout), so even a call with side effects
may be repeated; ``True`` means WUZAPI may have acted on it.
"""

from __future__ import annotations


class WuzapiError(Exception):
    """Base of every error of the WUZAPI client."""

    attempts = 0


class UpstreamFailure(WuzapiError):
    """WUZAPI did not give a usable answer: a transport failure or a failing 5xx.

    ``kind`` is one of ``refused``, ``dns``, ``connect_timeout``, ``read_timeout``,
    ``reset``, ``bad_status``.
    """

    def __init__(self, kind: str, message: str, *, sent: bool, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.sent = sent
        self.status = status

    @property
    def timed_out(self) -> bool:
        return self.kind in {"connect_timeout", "read_timeout"}


class Throttled(WuzapiError):
    """WUZAPI answered 429; never processed, so safe to repeat after ``retry_after`` seconds."""

    def __init__(self, retry_after: float | None):
        super().__init__(f"WUZAPI answered 429, Retry-After {retry_after}")
        self.retry_after = retry_after


class CircuitOpen(WuzapiError):
    """The circuit is open (or its one trial call is in flight); nothing was sent."""

    def __init__(self, retry_after: float):
        super().__init__(f"circuit open, next trial call in {retry_after:.1f} s")
        self.retry_after = retry_after


class DeadlineExceeded(WuzapiError):
    """``WUZAPI_DEADLINE`` ran out; ``last`` is the failure that preceded it, if any."""

    def __init__(self, message: str, last: UpstreamFailure | None = None):
        super().__init__(message)
        self.last = last

    @property
    def sent(self) -> bool:
        return self.last.sent if self.last is not None else False
