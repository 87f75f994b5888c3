"""The WUZAPI client: error mapping (responses), and timing and retries against the fake."""

from __future__ import annotations

import threading
import time

import pytest
import requests
import responses
import urllib3.exceptions

from stabilizer.wuzapi import routes
from stabilizer.wuzapi.breaker import ConcurrentCircuitBreaker
from stabilizer.wuzapi.client import RetryPolicy, WuzapiClient, classify_transport_error, parse_retry_after
from stabilizer.wuzapi.errors import CircuitOpen, DeadlineExceeded, Throttled, UpstreamFailure
from tests.conftest import USER_TOKEN

TOKEN = {"Token": USER_TOKEN}


def _client(url, *, breaker=True, sleep=time.sleep, **policy) -> WuzapiClient:
    values = dict(max_retries=3, initial_delay=0.01, max_delay=0.05, deadline=3.0, connect_timeout=0.5,
                  read_timeout=1.0)
    values.update(policy)
    circuit = ConcurrentCircuitBreaker(fail_max=5, reset_timeout=30, success_threshold=1) if breaker else None
    return WuzapiClient(url, RetryPolicy(**values), breaker=circuit, pool_size=16, sleep=sleep)


# Error mapping at the transport boundary, with requests mocked.

def test_stall_after_headers_is_read_timeout_not_connection_failure():
    """requests reports a body stall as ConnectionError wrapping urllib3's ReadTimeoutError."""
    inner = urllib3.exceptions.ReadTimeoutError(None, "/x", "Read timed out.")
    error = requests.exceptions.ConnectionError(inner)
    failure = classify_transport_error(error)
    assert failure.kind == "read_timeout"
    assert failure.sent is True


@pytest.mark.parametrize("error, kind, sent", [
    (requests.exceptions.ConnectTimeout("connect"), "connect_timeout", False),
    (requests.exceptions.ReadTimeout("read"), "read_timeout", True),
    (requests.exceptions.ConnectionError(urllib3.exceptions.NewConnectionError(None, "refused")), "refused", False),
    (requests.exceptions.ConnectionError(urllib3.exceptions.NameResolutionError("h", None, OSError("x"))), "dns",
     False),
    (requests.exceptions.ConnectionError(urllib3.exceptions.ProtocolError("reset", ConnectionResetError())), "reset",
     True),
    (requests.exceptions.ChunkedEncodingError("broken"), "reset", True),
])
def test_transport_errors_classified(error, kind, sent):
    failure = classify_transport_error(error)
    assert (failure.kind, failure.sent) == (kind, sent)


@responses.activate
def test_no_hidden_urllib3_retries():
    responses.add(responses.GET, "http://wuzapi.test/session/status",
                  body=requests.exceptions.ConnectionError(urllib3.exceptions.NewConnectionError(None, "refused")))
    client = _client("http://wuzapi.test", max_retries=2, sleep=lambda _: None)
    with pytest.raises(UpstreamFailure) as excinfo:
        client.call("GET", "/session/status", headers=TOKEN)
    assert excinfo.value.attempts == 3
    assert len(responses.calls) == 3


@responses.activate
def test_non_envelope_500_is_failure_and_envelope_500_is_answer():
    responses.add(responses.GET, "http://wuzapi.test/session/status", status=500, body="panic: boom")
    responses.add(responses.GET, "http://wuzapi.test/session/qr", status=500,
                  json={"code": 500, "error": "no session", "success": False})
    client = _client("http://wuzapi.test", max_retries=0)
    with pytest.raises(UpstreamFailure) as excinfo:
        client.call("GET", "/session/status", headers=TOKEN)
    assert excinfo.value.status == 500
    assert client.call("GET", "/session/qr", headers=TOKEN).status == 500


@responses.activate
def test_retry_after_beyond_max_delay_fails_fast():
    responses.add(responses.GET, "http://wuzapi.test/session/status", status=429, headers={"Retry-After": "120"})
    slept = []
    client = _client("http://wuzapi.test", max_delay=10.0, sleep=slept.append)
    with pytest.raises(Throttled) as excinfo:
        client.call("GET", "/session/status", headers=TOKEN)
    assert excinfo.value.retry_after == 120
    assert slept == []
    assert len(responses.calls) == 1


@responses.activate
def test_retry_after_within_max_delay_is_honoured():
    responses.add(responses.GET, "http://wuzapi.test/session/status", status=429, headers={"Retry-After": "2"})
    responses.add(responses.GET, "http://wuzapi.test/session/status", json={"code": 200, "success": True})
    slept = []
    client = _client("http://wuzapi.test", max_delay=10.0, deadline=20.0, sleep=slept.append)
    assert client.call("GET", "/session/status", headers=TOKEN).status == 200
    assert slept == [2.0]


def test_parse_retry_after_forms():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@responses.activate
def test_backoff_is_full_jitter_and_capped():
    for _ in range(6):
        responses.add(responses.GET, "http://wuzapi.test/session/status", status=503)
    slept = []
    client = _client("http://wuzapi.test", max_retries=5, initial_delay=1.0, max_delay=4.0, deadline=100.0,
                     sleep=slept.append, breaker=False)
    with pytest.raises(UpstreamFailure):
        client.call("GET", "/session/status", headers=TOKEN)
    assert len(slept) == 5
    for attempt, wait in enumerate(slept, start=1):
        assert 0 <= wait <= min(4.0, 2 ** (attempt - 1))


@responses.activate
def test_no_wait_ends_past_deadline():
    for _ in range(4):
        responses.add(responses.GET, "http://wuzapi.test/session/status", status=503)
    slept = []
    client = _client("http://wuzapi.test", max_retries=3, initial_delay=5.0, max_delay=5.0, deadline=0.5,
                     sleep=slept.append, breaker=False)
    with pytest.raises(UpstreamFailure):
        client.call("GET", "/session/status", headers=TOKEN)
    assert all(wait < 0.5 for wait in slept)


def test_repeat_safety_table():
    assert routes.safety("GET", "/session/status") is routes.Safety.READ
    assert routes.safety("POST", "/chat/downloadimage") is routes.Safety.READ
    assert routes.safety("PUT", "/admin/users/abc") is routes.Safety.IDEMPOTENT
    assert routes.safety("POST", "/chat/send/text") is routes.Safety.UNSAFE
    assert routes.safety("GET", "/session/history") is routes.Safety.UNSAFE
    assert routes.safety("GET", "/group/invitelink", {"reset": "true"}) is routes.Safety.UNSAFE
    assert routes.safety("GET", "/group/invitelink") is routes.Safety.READ
    assert routes.safety("POST", "/unknown/thing") is routes.Safety.UNSAFE


def test_read_timeouts_per_endpoint():
    assert routes.read_timeout_ms("POST", "/session/connect", b"{}", 10000) == 15000
    assert routes.read_timeout_ms("POST", "/session/connect", b'{"immediate": true}', 10000) == 10000
    assert routes.read_timeout_ms("POST", "/chat/send/image", b"{}", 10000) == 60000
    assert routes.read_timeout_ms("GET", "/session/status", None, 10000) == 10000


# Real HTTP against the fake WUZAPI.

def test_send_retried_only_when_never_sent(fake):
    client = _client(fake.url, max_retries=3)
    port = fake.port
    fake.stop()
    with pytest.raises(UpstreamFailure) as excinfo:
        client.call("POST", "/chat/send/text", body=b'{"Phone":"1","Body":"x"}', headers=TOKEN)
    assert excinfo.value.kind == "refused"
    assert excinfo.value.attempts == 4  # refused connections provably never reached WUZAPI
    assert port


def test_send_not_retried_after_read_timeout(fake):
    client = _client(fake.url, max_retries=3, read_timeout=0.3)
    fake.set_fault(mode="blackhole", paths=["/chat/send/*"])
    with pytest.raises(UpstreamFailure) as excinfo:
        client.call("POST", "/chat/send/text", body=b'{"Phone":"1","Body":"x"}', headers=TOKEN)
    assert excinfo.value.kind == "read_timeout"
    assert excinfo.value.attempts == 1
    assert len([entry for entry in fake.requests() if entry["path"] == "/chat/send/text"]) == 1


def test_deadline_bounds_whole_call(fake):
    client = _client(fake.url, max_retries=10, read_timeout=0.4, deadline=1.0, initial_delay=0.05, max_delay=0.1)
    fake.set_fault(mode="blackhole")
    started = time.monotonic()
    with pytest.raises((UpstreamFailure, DeadlineExceeded)):
        client.call("GET", "/session/status", headers=TOKEN)
    assert time.monotonic() - started < 1.3


def test_trickling_body_cut_at_deadline(fake):
    client = _client(fake.url, max_retries=0, read_timeout=0.5, deadline=1.0)
    fake.set_fault(mode="trickle", latency_ms=20000)
    started = time.monotonic()
    with pytest.raises(UpstreamFailure) as excinfo:
        client.call("GET", "/session/status", headers=TOKEN)
    assert excinfo.value.kind == "read_timeout"
    assert time.monotonic() - started < 1.5


def test_stalled_body_is_timeout(fake):
    client = _client(fake.url, max_retries=0, read_timeout=0.3, deadline=2.0)
    fake.set_fault(mode="stall_body", latency_ms=5000)
    started = time.monotonic()
    with pytest.raises(UpstreamFailure) as excinfo:
        client.call("GET", "/session/status", headers=TOKEN)
    assert excinfo.value.kind == "read_timeout"
    assert excinfo.value.sent is True
    assert time.monotonic() - started < 1.0


def test_open_circuit_is_not_retried(fake):
    client = _client(fake.url, max_retries=3)
    client.breaker._move("open")
    with pytest.raises(CircuitOpen) as excinfo:
        client.call("GET", "/session/status", headers=TOKEN)
    assert excinfo.value.attempts == 0
    assert fake.requests() == []
    assert client.metrics.snapshot()["calls"]["rejected_by_circuit"] == 1


def test_retry_refused_by_circuit_reports_its_own_failure(fake):
    client = WuzapiClient(fake.url, RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.01, deadline=3,
                                                connect_timeout=0.5, read_timeout=1.0),
                          breaker=ConcurrentCircuitBreaker(fail_max=1, reset_timeout=30, success_threshold=1))
    fake.set_fault(mode="proxy_502")
    with pytest.raises(UpstreamFailure) as excinfo:
        client.call("GET", "/session/status", headers=TOKEN)
    assert excinfo.value.status == 502
    assert excinfo.value.attempts == 1


def test_calls_through_one_client_run_concurrently(fake):
    client = _client(fake.url)
    fake.set_fault(mode="latency", latency_ms=200)
    results = []

    def call():
        results.append(client.call("GET", "/session/status", headers=TOKEN).status)

    threads = [threading.Thread(target=call) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    elapsed = time.monotonic() - started
    assert results == [200] * 8
    assert elapsed < 1.0  # serialised they would take at least 1.6 s


def test_metrics_count_outcomes(fake):
    client = _client(fake.url, max_retries=2)
    client.call("GET", "/session/status", headers=TOKEN)
    fake.set_fault(mode="reset", rate=1.0, paths=["/session/qr"])
    with pytest.raises(UpstreamFailure):
        client.call("GET", "/session/qr", headers=TOKEN)
    snapshot = client.metrics.snapshot()
    assert snapshot["calls"]["succeeded"] == 1
    assert snapshot["calls"]["failed_after_retry"] == 1
    assert snapshot["attempts"] == 4
    assert snapshot["retries"] == 2
