"""/health, /health/live and /health/ready."""

from __future__ import annotations

import threading
import time

from tests.conftest import ADMIN_TOKEN, SECRET, USER_TOKEN


def test_health_pass(client, fake):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/health+json"
    body = response.get_json()
    assert body["status"] == "pass"
    assert body["version"]
    assert body["checks"]["sessionStore"][0]["status"] == "pass"
    assert body["checks"]["wuzapi:circuit"][0]["state"] == "closed"
    assert set(body["checks"]["wuzapi:calls"][0]["calls"]) == {
        "succeeded", "succeeded_after_retry", "failed", "failed_after_retry", "rejected_by_circuit"}
    assert "observedValue" in body["checks"]["logs:dropped"][0]
    assert fake.requests() == []  # /health never calls WUZAPI


def test_health_exposes_no_secrets(auth, client):
    auth.login()
    text = client.get("/health").get_data(as_text=True)
    for secret in (SECRET, ADMIN_TOKEN, USER_TOKEN):
        assert secret not in text


def test_open_circuit_is_warn_not_fail(make_app, fake):
    app = make_app(WUZAPI_MAX_RETRIES="0", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="1")
    client = app.test_client()
    fake.set_fault(mode="proxy_502")
    client.get("/api/wuzapi/session/status", headers={"Token": USER_TOKEN})
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "warn"
    circuit = body["checks"]["wuzapi:circuit"][0]
    assert circuit["status"] == "warn"
    assert circuit["state"] == "open"
    assert circuit["opened_at"]
    assert 0 < circuit["seconds_until_trial"] <= 30
    time.sleep(0.2)
    later = client.get("/health").get_json()["checks"]["wuzapi:circuit"][0]["seconds_until_trial"]
    assert later < circuit["seconds_until_trial"]  # counts down without traffic
    assert client.get("/health/ready").status_code == 200


def test_circuit_disabled_reported(make_app):
    client = make_app(WUZAPI_CIRCUIT_ENABLED="false").test_client()
    assert client.get("/health").get_json()["checks"]["wuzapi:circuit"][0]["state"] == "disabled"


def test_health_fast_when_wuzapi_blackholed(client, fake):
    fake.set_fault(mode="blackhole")
    timings = []
    for _ in range(20):
        started = time.monotonic()
        assert client.get("/health").status_code == 200
        timings.append(time.monotonic() - started)
    assert max(timings) < 0.5


def test_live_and_ready(client):
    assert client.get("/health/live").get_json() == {"status": "pass"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.get_json()["status"] == "pass"


# --- the store probe, with a ping the test controls -------------------------------------------


class _Ping:
    """A ping that answers when the test says so; ``error`` makes it raise."""

    def __init__(self):
        self.calls = 0
        self.release = threading.Event()
        self.release.set()
        self.error: Exception | None = None

    def __call__(self):
        self.calls += 1
        assert self.release.wait(10)
        if self.error:
            raise self.error


def _probe(ping, wait=0.2):
    from stabilizer.views.health import StoreProbe

    probe = StoreProbe(ping)
    probe.PASS_TTL = 0.1
    return probe, wait


def test_probe_reuses_a_pass_within_ttl():
    ping = _Ping()
    probe, wait = _probe(ping)
    assert probe.check(wait)[0] is True
    assert probe.check(wait)[0] is True
    assert ping.calls == 1


def test_first_probe_waits_at_most_the_probe_wait():
    ping = _Ping()
    ping.release.clear()
    probe, wait = _probe(ping)
    started = time.monotonic()
    ok, seconds, error = probe.check(wait)
    assert time.monotonic() - started >= wait * 0.9
    assert (ok, error.startswith("no answer for")) == (False, True)
    ping.release.set()


def test_probe_stale_pass_then_fail():
    ping = _Ping()
    probe, wait = _probe(ping)
    assert probe.check(wait)[0] is True
    time.sleep(0.12)  # past PASS_TTL
    ping.release.clear()
    started = time.monotonic()
    assert probe.check(wait)[0] is True  # the last pass; the new probe is still young
    assert time.monotonic() - started < wait
    time.sleep(wait)
    ok, _, error = probe.check(wait)
    assert ok is False
    assert error.startswith("no answer for")
    assert ping.calls == 2  # one probe in flight, not one per request
    ping.release.set()
    deadline = time.monotonic() + 2
    while not probe.check(wait)[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert probe.check(wait)[0] is True


def test_probe_after_quiet_spell():
    """Health checks seconds apart: a pass from the last check must not hide a store hung since."""
    ping = _Ping()
    probe, wait = _probe(ping)
    assert probe.check(wait)[0] is True
    time.sleep(probe.PASS_TTL + wait + 0.05)
    ping.release.clear()
    started = time.monotonic()
    ok, _, error = probe.check(wait)
    assert (ok, error.startswith("no answer for")) == (False, True)
    assert time.monotonic() - started >= wait * 0.9  # it waited for the new probe instead
    ping.release.set()


def test_failed_probe_reported_with_its_error():
    ping = _Ping()
    ping.error = RuntimeError("connection refused")
    probe, wait = _probe(ping)
    assert probe.check(wait)[::2] == (False, "connection refused")
    ping.error = None
    assert probe.check(wait)[0] is True  # a store that is back answers within RETRY_WAIT


def test_start_probes_before_the_first_request():
    ping = _Ping()
    probe, wait = _probe(ping)
    probe.start()
    deadline = time.monotonic() + 2
    while ping.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.02)
    started = time.monotonic()
    assert probe.check(wait)[0] is True
    assert time.monotonic() - started < wait
    assert ping.calls == 1
