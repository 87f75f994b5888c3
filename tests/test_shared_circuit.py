"""The circuit shared through the session database, the retry budget, metrics and CLI."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import responses
import urllib3.exceptions

from stabilizer.wuzapi.budget import RetryBudget
from stabilizer.wuzapi.client import RetryPolicy, WuzapiClient
from stabilizer.wuzapi.errors import CircuitOpen
from tests.conftest import USER_TOKEN

TOKEN = {"Token": USER_TOKEN}
FAST = dict(WUZAPI_MAX_RETRIES="0", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="2", WUZAPI_CIRCUIT_RESET_TIMEOUT="600",
            WUZAPI_CIRCUIT_SUCCESS_THRESHOLD="2")


@pytest.fixture
def pair(make_app):
    """Two apps on one store, standing in for two workers (or two instances)."""
    first = make_app(**FAST)
    table = first.extensions["stabilizer"].database.table
    second = make_app(SESSION_TABLE=table, **FAST)
    return first, second


def _gateway(app):
    return app.test_client().get("/api/wuzapi/session/status", headers=TOKEN)


def test_circuit_opened_by_one_worker_fails_fast_everywhere(pair, fake):
    first, second = pair
    assert _gateway(second).status_code == 200  # second has read the closed state
    fake.set_fault(mode="proxy_502")
    for _ in range(2):
        assert _gateway(first).get_json()["code"] == "wuzapi_unavailable"
    assert _gateway(first).get_json()["code"] == "circuit_open"

    breaker = second.extensions["stabilizer"].breaker
    breaker.start()  # the refresher thread every worker runs under gunicorn
    try:
        started = time.monotonic()
        while _gateway(second).get_json().get("code") != "circuit_open":
            assert time.monotonic() - started < 1.0
            time.sleep(0.05)
    finally:
        breaker.stop()
    before = len(fake.requests())
    response = _gateway(second)
    assert response.get_json()["code"] == "circuit_open"
    assert len(fake.requests()) == before


def test_transition_log_follows_state(pair, fake):
    """/health lists the newest transition as soon as the state it reports has changed."""
    first, second = pair
    for app in pair:
        app.extensions["stabilizer"].breaker.refresh()
    for _ in range(4):  # the next periodic read of the log is five refreshes away
        second.extensions["stabilizer"].breaker.refresh()
    fake.set_fault(mode="proxy_502")
    for _ in range(2):
        _gateway(first)
    for app in pair:
        breaker = app.extensions["stabilizer"].breaker
        breaker.refresh()
        snapshot = breaker.snapshot()
        assert snapshot["state"] == "open"
        assert (snapshot["transitions"][0]["from"], snapshot["transitions"][0]["to"]) == ("closed", "open")


def test_health_tells_same_state_on_every_worker(pair, fake):
    first, second = pair
    fake.set_fault(mode="proxy_502")
    for _ in range(2):
        _gateway(first)
    second.extensions["stabilizer"].breaker.refresh()
    states = [app.test_client().get("/health").get_json()["checks"]["wuzapi:circuit"][0] for app in pair]
    assert [state["state"] for state in states] == ["open", "open"]
    assert states[0]["opened_at"] == states[1]["opened_at"]
    assert all(state["scope"] == "cluster" for state in states)
    assert abs(states[0]["seconds_until_trial"] - states[1]["seconds_until_trial"]) < 1.5


def test_call_reads_circuit_inline(make_app, fake):
    """Without the refresher thread, a call reads the circuit inline; nothing lingers to query later."""
    import threading

    app = make_app()
    breaker = app.extensions["stabilizer"].breaker
    breaker._read_at -= 60  # a stale cache
    assert breaker.seconds_until_trial() is None
    assert not [thread for thread in threading.enumerate() if thread.name == "circuit-refresh-once"]
    assert _gateway(app).status_code == 200
    assert not [thread for thread in threading.enumerate() if thread.name == "circuit-refresh-once"]


def test_one_trial_call_cluster_wide(make_app, fake):
    settings = dict(FAST, WUZAPI_CIRCUIT_RESET_TIMEOUT="300", WUZAPI_TIMEOUT="3000", WUZAPI_DEADLINE="5000")
    first = make_app(**settings)
    second = make_app(SESSION_TABLE=first.extensions["stabilizer"].database.table, **settings)
    fake.set_fault(mode="proxy_502")
    for _ in range(2):
        _gateway(first)
    time.sleep(0.4)  # the open period ends
    fake.set_fault(mode="latency", latency_ms=800)

    results = {}
    trial = threading.Thread(target=lambda: results.setdefault("trial", _gateway(first)))
    trial.start()
    time.sleep(0.3)
    second.extensions["stabilizer"].breaker.refresh()
    started = time.monotonic()
    rejected = _gateway(second)
    assert time.monotonic() - started < 0.3
    assert rejected.get_json()["code"] == "circuit_open"
    trial.join(5)
    assert results["trial"].status_code == 200
    state = first.extensions["stabilizer"].breaker.snapshot()
    assert (state["state"], state["successes"]) == ("half-open", 1)

    fake.clear_fault()
    assert _gateway(second).status_code == 200  # the second trial success closes it
    assert second.extensions["stabilizer"].breaker.snapshot()["state"] == "closed"
    transitions = [(event["from"], event["to"]) for event in reversed(
        first.extensions["stabilizer"].database.circuit_events("wuzapi"))]
    assert transitions == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_trial_failure_reopens(make_app, fake):
    app = make_app(**dict(FAST, WUZAPI_CIRCUIT_RESET_TIMEOUT="200"))
    fake.set_fault(mode="proxy_502")
    for _ in range(2):
        _gateway(app)
    time.sleep(0.25)
    assert _gateway(app).get_json()["code"] == "wuzapi_unavailable"  # the trial itself, sent and failed
    state = app.extensions["stabilizer"].breaker.snapshot()
    assert state["state"] == "open"
    assert state["seconds_until_trial"] > 0.1


def test_answers_keep_circuit_closed(make_app, fake):
    app = make_app(**FAST)
    client = app.test_client()
    for _ in range(6):
        assert client.get("/api/wuzapi/session/status", headers={"Token": "wrong"}).status_code == 401
    fake.set_fault(mode="error_500")
    for _ in range(6):
        assert _gateway(app).status_code == 500
    assert app.extensions["stabilizer"].breaker.snapshot()["state"] == "closed"


def test_falls_back_to_own_circuit_without_database(make_app, fake, backend, tmp_path):
    app = make_app(**FAST)
    breaker = app.extensions["stabilizer"].breaker
    database = app.extensions["stabilizer"].database
    original = database.circuit_get

    def unreachable(name):
        from stabilizer.db import StoreUnavailable

        raise StoreUnavailable("simulated outage")

    database.circuit_get = unreachable
    database.circuit_update = lambda *args, **kwargs: unreachable(None)
    breaker.refresh()
    check = app.test_client().get("/health").get_json()["checks"]["wuzapi:circuit"][0]
    assert check["scope"] == "process"
    assert check["status"] == "warn"
    assert "unreachable" in check["note"]

    fake.set_fault(mode="proxy_502")
    for _ in range(2):
        _gateway(app)
    assert _gateway(app).get_json()["code"] == "circuit_open"  # the local circuit still protects

    database.circuit_get = original
    breaker.refresh()
    assert app.test_client().get("/health").get_json()["checks"]["wuzapi:circuit"][0]["scope"] == "cluster"


def test_cli_circuit_show_and_reset(make_app, fake):
    app = make_app(**FAST)
    runner = app.test_cli_runner()
    fake.set_fault(mode="proxy_502")
    for _ in range(2):
        _gateway(app)
    result = runner.invoke(args=["wuzapi", "circuit"])
    assert result.exit_code == 0
    assert '"state": "open"' in result.output
    result = runner.invoke(args=["wuzapi", "circuit", "--reset"])
    assert result.exit_code == 0
    assert "circuit closed" in result.output
    assert '"state": "closed"' in result.output
    fake.clear_fault()
    assert _gateway(app).status_code == 200


def test_cli_circuit_disabled(make_app):
    result = make_app(WUZAPI_CIRCUIT_ENABLED="false").test_cli_runner().invoke(args=["wuzapi", "circuit"])
    assert result.exit_code == 1
    assert "disabled" in result.output


def test_cli_check(make_app, fake):
    app = make_app(**FAST)
    result = app.test_cli_runner().invoke(args=["wuzapi", "check"])
    assert result.exit_code == 0
    assert "is up" in result.output
    fake.stop()
    result = app.test_cli_runner().invoke(args=["wuzapi", "check"])
    assert result.exit_code == 1
    assert "is down" in result.output


def test_circuit_disabled_bypasses_breaker(make_app, fake):
    app = make_app(WUZAPI_CIRCUIT_ENABLED="false", WUZAPI_MAX_RETRIES="0")
    fake.set_fault(mode="proxy_502")
    for _ in range(10):
        assert _gateway(app).get_json()["code"] == "wuzapi_unavailable"


def test_max_retries_zero_disables_retries(make_app, fake):
    app = make_app(WUZAPI_MAX_RETRIES="0", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="50")
    fake.set_fault(mode="reset")
    response = _gateway(app)
    assert response.headers["X-Upstream-Attempts"] == "1"


def test_metrics_endpoint(make_app, fake):
    app = make_app()
    client = app.test_client()
    _gateway(app)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.get_data(as_text=True)
    assert 'stabilizer_wuzapi_calls_total{outcome="succeeded"}' in text
    assert "stabilizer_wuzapi_call_duration_seconds_bucket" in text


def test_refused_retry_not_counted(make_app, fake):
    """The attempt that opens the circuit ends the call: one attempt, no retry, outcome "failed"."""
    from stabilizer.wuzapi.metrics import instance_snapshot

    app = make_app(WUZAPI_CIRCUIT_FAILURE_THRESHOLD="1", WUZAPI_MAX_RETRIES="3")
    fake.set_fault(mode="proxy_502")
    response = _gateway(app)
    assert response.status_code == 503
    assert response.headers["X-Upstream-Attempts"] == "1"
    snapshot = instance_snapshot(app.extensions["stabilizer"].metrics)
    assert (snapshot["attempts"], snapshot["retries"]) == (1, 0)
    assert snapshot["calls"]["failed"] == 1
    assert snapshot["calls"]["failed_after_retry"] == 0


def test_refused_retry_refunds_budget(make_app, fake):
    app = make_app(WUZAPI_CIRCUIT_FAILURE_THRESHOLD="1", WUZAPI_MAX_RETRIES="3",
                   WUZAPI_RETRY_BUDGET_MIN_PER_SECOND="0")
    budget = app.extensions["stabilizer"].client.budget
    full = budget.remaining()
    fake.set_fault(mode="proxy_502")
    assert _gateway(app).status_code == 503
    assert budget.remaining() == full  # the one token taken for the refused retry came back


# The retry budget.

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_caps_retries_at_ratio():
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_per_second=0, burst=10, clock=clock)
    granted = 0
    for _ in range(1000):
        budget.deposit()
        if budget.try_withdraw():
            granted += 1
    assert granted <= 0.2 * 1000 + 10
    assert granted >= 0.2 * 1000 - 1
    assert budget.exhausted > 0


def test_budget_floor_refills_with_time():
    clock = Clock()
    budget = RetryBudget(ratio=0.0, min_per_second=2, burst=3, clock=clock)
    assert [budget.try_withdraw() for _ in range(4)] == [True, True, True, False]
    clock.now += 1.0
    assert [budget.try_withdraw() for _ in range(3)] == [True, True, False]
    clock.now += 100
    assert budget.remaining() == 3


@responses.activate
def test_client_stops_retrying_when_budget_spent():
    responses.add(responses.GET, "http://wuzapi.test/session/status", status=503)
    budget = RetryBudget(ratio=0.0, min_per_second=0, burst=2)
    client = WuzapiClient("http://wuzapi.test", RetryPolicy(max_retries=5, initial_delay=0, max_delay=0),
                          breaker=None, budget=budget, sleep=lambda _: None)
    attempts = []
    for _ in range(3):
        with pytest.raises(Exception) as excinfo:
            client.call("GET", "/session/status", headers=TOKEN)
        attempts.append(excinfo.value.attempts)
    assert attempts == [3, 1, 1]
    assert client.metrics.snapshot()["retry_budget_exhausted"] == 3


@responses.activate
def test_retried_connect_already_connected_is_success():
    failure = requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("reset", ConnectionResetError()))
    responses.add(responses.POST, "http://wuzapi.test/session/connect", body=failure)
    responses.add(responses.POST, "http://wuzapi.test/session/connect", status=500,
                  json={"code": 500, "error": "already connected", "success": False})
    client = WuzapiClient("http://wuzapi.test", RetryPolicy(max_retries=2, initial_delay=0, max_delay=0),
                          breaker=None, sleep=lambda _: None)
    answer = client.call("POST", "/session/connect", body=b'{"Immediate":true}', headers=TOKEN)
    assert answer.status == 200
    assert answer.json() == {"code": 200, "data": {"details": "already connected"}, "success": True}
    assert answer.attempts == 2
    assert client.metrics.snapshot()["calls"]["succeeded_after_retry"] == 1


@responses.activate
def test_first_connect_already_connected_passes_through():
    responses.add(responses.POST, "http://wuzapi.test/session/connect", status=500,
                  json={"code": 500, "error": "already connected", "success": False})
    client = WuzapiClient("http://wuzapi.test", RetryPolicy(max_retries=2), breaker=None)
    assert client.call("POST", "/session/connect", body=b"{}", headers=TOKEN).status == 500


def test_circuit_open_error_carries_retry_after(make_app, fake):
    app = make_app(**FAST)
    fake.set_fault(mode="proxy_502")
    for _ in range(2):
        _gateway(app)
    with pytest.raises(CircuitOpen) as excinfo:
        app.extensions["stabilizer"].breaker.admit()
    assert 0.4 < excinfo.value.retry_after <= 0.6  # WUZAPI_CIRCUIT_RESET_TIMEOUT is in milliseconds
