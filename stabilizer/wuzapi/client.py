"""The WUZAPI client: one ``requests.Session`` per process, retry(breaker(one attempt)).

Every attempt has connect and read timeouts taken from what is left of the call's
deadline, and the response body is read with the deadline checked between reads, so
a server that trickles bytes cannot hold a call past it. urllib3 makes no retries of
its own; every retry is tenacity's, visible to the breaker and to the metrics.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

import requests
import tenacity
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from . import routes
from .budget import RetryBudget
from .errors import CircuitOpen, DeadlineExceeded, Throttled, UpstreamFailure, WuzapiError
from .metrics import CallMetrics

logger = logging.getLogger(__name__)

READ_CHUNK = 65536
FAILING_STATUSES = {502, 503, 504}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "trailers", "transfer-encoding", "upgrade", "content-length", "content-encoding"}


@dataclass(frozen=True)
class RetryPolicy:
    """How one WUZAPI call is timed and retried. Immutable; all times in seconds.

    ``max_retries`` counts retries after the first attempt (0 disables retrying).
    Waits are full-jitter exponential: uniform(0, min(max_delay, initial_delay × 2ⁿ)).
    ``deadline`` bounds the whole call, attempts and waits included; no wait starts
    that would end past it.
    """

    max_retries: int = 3
    initial_delay: float = 1.0
    max_delay: float = 10.0
    deadline: float = 20.0
    connect_timeout: float = 3.0
    read_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any) -> "RetryPolicy":
        return cls(
            max_retries=settings.wuzapi_max_retries,
            initial_delay=settings.wuzapi_retry_initial_delay_ms / 1000,
            max_delay=settings.wuzapi_retry_max_delay_ms / 1000,
            deadline=settings.wuzapi_deadline_ms / 1000,
            connect_timeout=settings.wuzapi_connect_timeout_ms / 1000,
            read_timeout=settings.wuzapi_timeout_ms / 1000,
        )


@dataclass
class UpstreamResponse:
    """A WUZAPI answer (including 4xx and enveloped 500s), passed through unchanged."""

    status: int
    headers: dict[str, str]
    body: bytes
    attempts: int = 1

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Call:
    method: str
    path: str
    url: str
    query: Mapping[str, Any] | None
    body: bytes | None
    headers: dict[str, str]
    read_timeout: float
    deadline_at: float
    safety: routes.Safety
    attempts: int = 0
    retries: int = 0
    withdrawn: int = 0  # retry-budget tokens taken; more than ``retries`` when a retry was never sent
    last_failure: UpstreamFailure | None = field(default=None)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a Retry-After header asks for (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def is_wuzapi_envelope(body: bytes) -> bool:
    """Return whether ``body`` is WUZAPI's JSON envelope ({"code": …, "success": …})."""
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("code"), int) and "success" in payload


def _find_cause(exc: BaseException, types: tuple[type, ...]) -> BaseException | None:
    """Walk the wrapped errors of a requests/urllib3 exception for one of ``types``."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, types):
            return current
        stack.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
        stack.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return None


def classify_transport_error(exc: BaseException) -> UpstreamFailure:
    """Translate a requests/urllib3 failure into an UpstreamFailure that says whether it was sent.

    A stall after the response headers surfaces from requests as ``ConnectionError``
    wrapping urllib3's ``ReadTimeoutError``, so the wrapped error decides, not the outer type.
    """
    u3 = urllib3.exceptions
    if _find_cause(exc, (u3.NameResolutionError,)):
        return UpstreamFailure("dns", "WUZAPI host name could not be resolved", sent=False)
    # urllib3's NewConnectionError subclasses ConnectTimeoutError, so it is tested first.
    if _find_cause(exc, (u3.NewConnectionError, ConnectionRefusedError)):
        return UpstreamFailure("refused", "WUZAPI refused the connection", sent=False)
    if isinstance(exc, requests.exceptions.ConnectTimeout) or _find_cause(exc, (u3.ConnectTimeoutError,)):
        return UpstreamFailure("connect_timeout", "connecting to WUZAPI timed out", sent=False)
    if isinstance(exc, requests.exceptions.ReadTimeout) or _find_cause(exc, (u3.ReadTimeoutError, TimeoutError)):
        return UpstreamFailure("read_timeout", "WUZAPI did not answer in time", sent=True)
    return UpstreamFailure("reset", f"connection to WUZAPI failed: {exc.__class__.__name__}", sent=True)


def _already_connected_is_success(response: UpstreamResponse) -> UpstreamResponse:
    """Turn WUZAPI's 500 "already connected" on a retried connect into the success it means.

    The earlier attempt may have connected before its answer was lost; the retry then
    finds the link up, which is what the caller asked for.
    """
    if response.status != 500:
        return response
    try:
        payload = json.loads(response.body)
    except ValueError:
        return response
    if not isinstance(payload, dict) or payload.get("error") != "already connected":
        return response
    body = json.dumps({"code": 200, "data": {"details": "already connected"}, "success": True},
                      separators=(",", ":")).encode() + b"\n"
    return UpstreamResponse(200, {**response.headers, "Content-Type": "application/json"}, body, response.attempts)


class _StopBeforeDeadline(tenacity.stop.stop_base):
    """Stop when the upcoming wait would end at or past the call's deadline."""

    def __init__(self, call: _Call):
        self.call = call

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self.call.deadline_at


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Wait what a 429's Retry-After asks for; otherwise defer to ``fallback``."""

    def __init__(self, fallback: tenacity.wait.wait_base):
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, Throttled) and exc.retry_after is not None:
            return exc.retry_after
        return self.fallback(retry_state)


class WuzapiClient:
    """Calls WUZAPI for every worker thread of one process. Thread-safe.

    ``breaker`` is a ConcurrentCircuitBreaker, a SharedCircuitBreaker, or None (the
    circuit disabled: then only retries and timeouts apply). ``budget``, when given,
    caps retries at a fraction of calls.
    """

    def __init__(self, base_url: str, policy: RetryPolicy, *, breaker: Any, metrics: CallMetrics | None = None,
                 budget: RetryBudget | None = None, pool_size: int = 10, sleep=time.sleep):
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.breaker = breaker
        self.metrics = metrics or CallMetrics()
        self.budget = budget
        if budget is not None:
            self.metrics.budget(budget.remaining())
        self._sleep = sleep
        self.session = requests.Session()
        self.session.trust_env = False  # only WUZAPI_BASE_URL is contacted, never an environment proxy
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def call(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """Call WUZAPI and return its answer; raise a WuzapiError subclass when there is none.

        The raised error carries ``attempts``. Calls with side effects are retried only
        after failures that provably never reached WUZAPI.
        """
        method = method.upper()
        if self.breaker is not None:
            # An open circuit answers before any retry machinery is built: the common case
            # during an outage, and the one that must stay fast.
            remaining = self.breaker.seconds_until_trial()
            if remaining:
                rejected = CircuitOpen(remaining)
                self.metrics.call_finished("rejected_by_circuit", 0.0)
                raise rejected
        read_timeout = routes.read_timeout_ms(method, path, body, int(self.policy.read_timeout * 1000)) / 1000
        # A call whose endpoint needs a longer read timeout gets the time for one such attempt.
        deadline = max(self.policy.deadline, read_timeout + self.policy.connect_timeout) \
            if read_timeout > self.policy.read_timeout else self.policy.deadline
        started = time.monotonic()
        if self.budget is not None:
            self.budget.deposit()
        call = _Call(method, path, self.base_url + path, query, body, dict(headers or {}), read_timeout,
                     started + deadline, routes.safety(method, path, dict(query or {})))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.max_retries + 1) | _StopBeforeDeadline(call),
            wait=_WaitRetryAfter(tenacity.wait_random_exponential(multiplier=self.policy.initial_delay,
                                                                  max=self.policy.max_delay)),
            retry=tenacity.retry_if_exception(lambda exc: self._should_retry(exc, call)),
            before_sleep=lambda state: self._before_sleep(state, call),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            response = retrying(self._attempt, call)
        except CircuitOpen as exc:
            # A retry refused by the circuit: the call was sent before, so its own failure is the outcome.
            error: WuzapiError = call.last_failure if call.last_failure is not None else exc
            error.attempts = call.attempts
            self._finish(call, started, self._failure_outcome(error, call))
            if error is exc:
                raise
            raise error from exc
        except WuzapiError as exc:
            exc.attempts = call.attempts
            self._finish(call, started, self._failure_outcome(exc, call))
            raise
        response.attempts = call.attempts
        if call.retries and call.method == "POST" and call.path == "/session/connect":
            response = _already_connected_is_success(response)
        self._finish(call, started, "succeeded_after_retry" if call.retries else "succeeded")
        return response

    def _finish(self, call: _Call, started: float, outcome: str) -> None:
        self.metrics.call_finished(outcome, time.monotonic() - started)
        if self.budget is not None:
            # A retry the circuit refused, or that the deadline cut off, cost WUZAPI nothing.
            for _ in range(call.withdrawn - call.retries):
                self.budget.refund()
            self.metrics.budget(self.budget.remaining())

    @staticmethod
    def _failure_outcome(exc: WuzapiError, call: _Call) -> str:
        if isinstance(exc, CircuitOpen) and call.attempts == 0:
            return "rejected_by_circuit"
        return "failed_after_retry" if call.retries else "failed"

    def _should_retry(self, exc: BaseException, call: _Call) -> bool:
        if isinstance(exc, Throttled):
            allowed = exc.retry_after is None or exc.retry_after <= self.policy.max_delay
        elif isinstance(exc, UpstreamFailure):
            allowed = call.safety.repeatable or not exc.sent
        else:
            return False  # CircuitOpen, DeadlineExceeded, anything unexpected
        if allowed and self.budget is not None:
            if not self.budget.try_withdraw():
                self.metrics.no_budget()
                logger.warning("retry budget spent; not retrying WUZAPI %s %s", call.method, call.path)
                return False
            call.withdrawn += 1
        return allowed

    def _before_sleep(self, state: tenacity.RetryCallState, call: _Call) -> None:
        # A retry counts once it is sent (see _send): the circuit may still refuse it.
        wait = state.upcoming_sleep
        self.metrics.retry_wait(wait)
        logger.info("retrying WUZAPI %s %s after %s (attempt %d), waiting %.3f s", call.method, call.path,
                    state.outcome.exception(), call.attempts, wait)

    def _attempt(self, call: _Call) -> UpstreamResponse:
        if call.deadline_at - time.monotonic() <= 0:
            raise DeadlineExceeded("WUZAPI_DEADLINE ran out before the next attempt", call.last_failure)
        try:
            if self.breaker is None:
                return self._send(call)
            return self.breaker.call(self._send, call)
        except UpstreamFailure as failure:
            call.last_failure = failure
            raise

    def _send(self, call: _Call) -> UpstreamResponse:
        """Make one HTTP attempt and classify what came back."""
        remaining = call.deadline_at - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("WUZAPI_DEADLINE ran out before the next attempt", call.last_failure)
        timeout = (min(self.policy.connect_timeout, remaining), min(call.read_timeout, remaining))
        retry = call.attempts > 0
        call.attempts += 1
        if retry:
            call.retries += 1
        self.metrics.attempt(retry)

        try:
            response = self.session.request(call.method, call.url, params=call.query, data=call.body,
                                            headers=call.headers, timeout=timeout, stream=True,
                                            allow_redirects=False)
        except requests.exceptions.RequestException as exc:
            raise classify_transport_error(exc) from exc
        try:
            body = self._read_body(response, call.deadline_at)
        finally:
            response.close()

        headers = {name: value for name, value in response.headers.items() if name.lower() not in HOP_BY_HOP}
        result = UpstreamResponse(response.status_code, headers, body, call.attempts)
        return self._classify_status(result)

    @staticmethod
    def _read_body(response: requests.Response, deadline_at: float) -> bytes:
        """Read the whole body, one socket read at a time, and give up at the deadline."""
        chunks: list[bytes] = []
        raw = response.raw
        try:
            while True:
                if time.monotonic() >= deadline_at:
                    raise UpstreamFailure("read_timeout", "WUZAPI response body did not finish before the deadline",
                                          sent=True)
                chunk = raw.read1(READ_CHUNK, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
        except UpstreamFailure:
            raise
        except (urllib3.exceptions.HTTPError, OSError, requests.exceptions.RequestException) as exc:
            raise classify_transport_error(exc) from exc
        return b"".join(chunks)

    @staticmethod
    def _classify_status(result: UpstreamResponse) -> UpstreamResponse:
        status = result.status
        if status == 429:
            raise Throttled(parse_retry_after(result.headers.get("Retry-After")))
        if status in FAILING_STATUSES or (status >= 500 and not is_wuzapi_envelope(result.body)):
            raise UpstreamFailure("bad_status", f"WUZAPI returned HTTP {status}", sent=True, status=status)
        return result
