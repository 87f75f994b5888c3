"""Health endpoints for uptime monitors and orchestrators.

``/health/live`` checks nothing but the process. ``/health/ready`` and ``/health``
probe the session store in a helper thread (see :class:`StoreProbe`), so a hung
database makes them answer "fail" quickly instead of hanging. Nothing
here calls WUZAPI: the circuit state and call counters are read from memory.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Blueprint, Response, json

from .. import __version__
from ..logs import LogStats
from ..wuzapi.metrics import instance_snapshot
from .common import runtime

logger = logging.getLogger(__name__)

bp = Blueprint("health", __name__, url_prefix="/health")

HEALTH_JSON = "application/health+json"
PROBE_WAIT = 0.3  # seconds a store probe may run before the store counts as not answering


class StoreProbe:
    """Run ``ping`` in a helper thread; at most one probe is in flight per process.

    A passing result is reused for ``PASS_TTL`` seconds, so a burst of health checks
    costs one query. Once it is older, the next request starts a new probe:

    - while the last result is recent (finished less than PASS_TTL + PROBE_WAIT ago),
      the request gives the probe ``RETRY_WAIT``, enough for a healthy store, and
      otherwise reports the last result, until the probe has run for ``PROBE_WAIT``;
    - with no recent result (a worker that just started, or health checks seconds
      apart), the request waits for the probe, ``PROBE_WAIT`` at most.

    After PROBE_WAIT the store is reported as not answering. Under steady health
    checks a hung database turns /health to "fail" within PASS_TTL + PROBE_WAIT and no
    request waits for it; a check after a quiet spell waits PROBE_WAIT at most and
    never reports an old pass. :meth:`start` begins a first probe when the worker boots.
    """

    PASS_TTL = 0.5
    RETRY_WAIT = 0.02

    def __init__(self, ping, clock=time.monotonic):
        self._ping = ping
        self._clock = clock
        self._lock = threading.Lock()
        self._done: threading.Event | None = None
        self._started = 0.0
        self._result: tuple[bool, float, str | None] = (False, 0.0, "not probed yet")
        self._finished = float("-inf")

    def _run(self, done: threading.Event) -> None:
        started = self._clock()
        try:
            self._ping()
            result = (True, self._clock() - started, None)
        except Exception as exc:  # noqa: BLE001 - any failure is reported as the store's status
            result = (False, self._clock() - started, str(exc) or exc.__class__.__name__)
        with self._lock:
            self._result = result
            self._finished = self._clock()
            self._done = None
        done.set()

    def _probe(self, now: float) -> threading.Event:
        """Return the in-flight probe's end event, starting a probe if none runs; hold the lock."""
        if self._done is None:
            self._done = threading.Event()
            self._started = now
            threading.Thread(target=self._run, args=(self._done,), name="health-probe", daemon=True).start()
        return self._done

    def start(self) -> None:
        """Begin a probe without waiting for it, so the first health request has a result."""
        with self._lock:
            self._probe(self._clock())

    def check(self, wait: float = PROBE_WAIT) -> tuple[bool, float, str | None]:
        """Return (ok, seconds, error) of the latest probe; ``wait`` is how long a probe may run."""
        with self._lock:
            now = self._clock()
            if self._result[0] and now - self._finished < self.PASS_TTL:
                return self._result
            done = self._probe(now)
            started = self._started  # of the probe this request waits for, whatever starts later
            previous = self._result
            # The last result stands in for the probe in flight only while it is recent:
            # an old pass must not hide a database that hung since.
            recent = now - self._finished < self.PASS_TTL + wait
            limit = min(wait, self.RETRY_WAIT) if recent else wait
            remaining = limit - (now - started)
        if remaining > 0 and done.wait(remaining):
            with self._lock:
                return self._result
        running = self._clock() - started
        if recent and running < wait:
            return previous  # the probe in flight is not overdue yet
        return False, running, f"no answer for {int(running * 1000)} ms"


def _json(body: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(body), status=status, mimetype=HEALTH_JSON,
                    headers={"Cache-Control": "no-store"})


def store_check() -> dict[str, Any]:
    ok, seconds, error = runtime().store_probe.check()
    check: dict[str, Any] = {
        "status": "pass" if ok else "fail",
        "backend": runtime().database.backend,
        "observedValue": round(seconds * 1000, 1),
        "observedUnit": "ms",
    }
    if error:
        check["output"] = error
    return check


def circuit_check() -> dict[str, Any]:
    breaker = runtime().breaker
    if breaker is None:
        return {"status": "pass", "state": "disabled"}
    snapshot = breaker.snapshot()
    # An open circuit is a warning: WUZAPI is an optional dependency of this instance's health.
    status = "pass" if snapshot["state"] == "closed" and snapshot.get("shared", True) else "warn"
    return {"status": status, **snapshot}


@bp.get("")
def health() -> Response:
    store = store_check()
    circuit = circuit_check()
    logs = LogStats.snapshot()
    checks = {
        "sessionStore": [store],
        "wuzapi:circuit": [circuit],
        "wuzapi:calls": [{"status": "pass", **instance_snapshot(runtime().metrics)}],
        "logs:dropped": [{"status": "pass", "observedValue": logs["dropped"], "observedUnit": "records",
                          "scope": "process", "pid": logs["pid"], "suppressed": logs["suppressed"],
                          "deadStreams": logs["dead_streams"]}],
    }
    statuses = {check["status"] for entries in checks.values() for check in entries}
    status = "pass"
    if "fail" in statuses:
        status = "fail"
    elif "warn" in statuses:
        status = "warn"
    body = {
        "status": status,
        "version": __version__,
        "serviceId": "stabilizer",
        "description": "Stabilizer, a gateway in front of WUZAPI",
        "checks": checks,
    }
    return _json(body, 503 if status == "fail" else 200)


@bp.get("/live")
def live() -> Response:
    return _json({"status": "pass"}, 200)


@bp.get("/ready")
def ready() -> Response:
    store = store_check()
    status = "pass" if store["status"] == "pass" else "fail"
    return _json({"status": status, "checks": {"sessionStore": [store]}}, 200 if status == "pass" else 503)
