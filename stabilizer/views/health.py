"""Health endpoints for uptime monitors and orchestrators.

``/health/live`` checks nothing but the process. ``/health/ready`` and ``/health``
probe the session store in a helper thread and wait at most ``PROBE_WAIT`` seconds for
it, so a hung database makes them answer "fail" quickly instead of hanging. Nothing
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
PROBE_WAIT = 0.3  # seconds a health request waits for the store probe


class StoreProbe:
    """Run ``ping`` in a helper thread; at most one probe is in flight per process.

    A probe that outlives the wait keeps running. Later requests do not wait for it
    again: only the request that starts a probe waits up to ``PROBE_WAIT``, requests that
    arrive while it runs wait at most ``RETRY_WAIT``, and after a failure a new probe gets
    only ``RETRY_WAIT`` too. So a hung database costs one slow health answer per worker,
    not one per request. A passing result is reused for
    ``PASS_TTL`` seconds, so a burst of health checks costs one query.
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

    def check(self, wait: float = PROBE_WAIT) -> tuple[bool, float, str | None]:
        """Return (ok, seconds, error) of a probe that finished within ``wait`` seconds."""
        with self._lock:
            now = self._clock()
            if self._result[0] and now - self._finished < self.PASS_TTL:
                return self._result
            # After a failed probe, wait only briefly for the next one: a store that is back
            # answers within RETRY_WAIT, and a store still hung costs no request 300 ms again.
            if not self._result[0] and self._finished != float("-inf"):
                wait = min(wait, self.RETRY_WAIT)
            done = self._done
            if done is None:
                done = self._done = threading.Event()
                self._started = now
                threading.Thread(target=self._run, args=(done,), name="health-probe", daemon=True).start()
            else:
                # Another request started this probe and waits the full time; the others
                # only give a healthy store the moment it needs to answer.
                wait = min(wait, self.RETRY_WAIT)
            remaining = wait - (now - self._started)
        if remaining <= 0 or not done.wait(remaining):
            running = self._clock() - self._started
            return False, running, f"no answer for {int(running * 1000)} ms"
        with self._lock:
            return self._result


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
