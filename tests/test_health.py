"""/health, /health/live and /health/ready."""

from __future__ import annotations

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
