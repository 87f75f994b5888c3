"""WUZAPI faults against gunicorn with several workers sharing one circuit in PostgreSQL.

The fake WUZAPI runs in this process; gunicorn runs as a real process with three
workers, so which worker answers a request is up to gunicorn, as in production.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import ADMIN_TOKEN, OTHER_TOKEN, USER_TOKEN
from tests.fake_wuzapi import FakeWuzapi
from tests.processes import Gunicorn

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOKEN = {"Token": USER_TOKEN}


@pytest.fixture
def chaos_fake():
    with FakeWuzapi(admin_token=ADMIN_TOKEN, users={"alice": USER_TOKEN, "bob": OTHER_TOKEN},
                    connect_hold_ms=300) as server:
        yield server


@pytest.fixture
def start_gunicorn(tmp_path, chaos_fake, pg_url):
    """Start gunicorn on PostgreSQL with a fresh table; stop it (exit 0) at teardown."""
    import secrets

    from stabilizer.config import load_settings
    from stabilizer.db import open_database

    servers = []

    def start(**environ: str) -> Gunicorn:
        table = "chaos_" + secrets.token_hex(4)
        settings = load_settings({"DATABASE_URL": pg_url, "SESSION_TABLE": table, "SESSION_SECRET": "c" * 40},
                                 instance_path=tmp_path)
        database = open_database(settings)
        database.migrate()
        database.close()
        env = {"DATABASE_URL": pg_url, "SESSION_TABLE": table, "WUZAPI_BASE_URL": chaos_fake.url,
               "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "4", "WUZAPI_RETRY_INITIAL_DELAY": "20",
               "WUZAPI_RETRY_MAX_DELAY": "200", "WUZAPI_CONNECT_TIMEOUT": "500", "WUZAPI_TIMEOUT": "2000",
               "WUZAPI_DEADLINE": "4000", "LOGIN_RATE_LIMIT": "0"}
        env.update(environ)
        server = Gunicorn(env, tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.stop() == 0


def _gateway(session: requests.Session, server: Gunicorn, path: str = "/session/status") -> requests.Response:
    return session.get(server.url + "/api/wuzapi" + path, headers=TOKEN, timeout=15)


def _upstream(fake: FakeWuzapi, path: str) -> list[dict]:
    return [entry for entry in fake.requests() if entry["path"] == path]


def _open_circuit(server: Gunicorn, fake: FakeWuzapi, threshold: int) -> None:
    fake.set_fault(mode="proxy_502")
    with requests.Session() as session:
        for _ in range(threshold):
            assert _gateway(session, server).status_code == 503


def test_open_circuit_makes_every_worker_fail_fast(start_gunicorn, chaos_fake):
    server = start_gunicorn(WUZAPI_MAX_RETRIES="0", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="3")
    _open_circuit(server, chaos_fake, 3)
    time.sleep(1.0)  # every worker refreshes its cache at least twice a second
    before = len(chaos_fake.requests())
    codes = Counter()
    timings = []
    with requests.Session() as session:
        for _ in range(40):
            started = time.monotonic()
            response = _gateway(session, server)
            timings.append(time.monotonic() - started)
            codes[response.json()["code"]] += 1
            assert response.headers["X-Upstream-Attempts"] == "0"
    assert codes == {"circuit_open": 40}
    assert len(chaos_fake.requests()) == before
    assert max(timings) < 0.5

    states = [requests.get(server.url + "/health", timeout=5).json()["checks"]["wuzapi:circuit"][0]
              for _ in range(20)]
    assert {state["state"] for state in states} == {"open"}
    assert len({state["opened_at"] for state in states}) == 1
    assert all(state["scope"] == "cluster" for state in states)


def test_one_trial_call_after_open_period(start_gunicorn, chaos_fake):
    server = start_gunicorn(WUZAPI_MAX_RETRIES="0", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="2",
                            WUZAPI_CIRCUIT_RESET_TIMEOUT="1500", WUZAPI_CIRCUIT_SUCCESS_THRESHOLD="2")
    _open_circuit(server, chaos_fake, 2)
    chaos_fake.set_fault(mode="latency", latency_ms=1000)
    time.sleep(2.0)  # the open period ends
    chaos_fake.clear_requests()

    def call(_: int) -> tuple[int, float]:
        with requests.Session() as session:
            started = time.monotonic()
            response = _gateway(session, server)
            return response.status_code, time.monotonic() - started

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(12)))
    assert len(_upstream(chaos_fake, "/session/status")) == 1  # exactly one trial reached WUZAPI
    assert sorted(code for code, _ in results) == [200] + [503] * 11
    assert all(seconds < 0.5 for code, seconds in results if code == 503)

    chaos_fake.clear_fault()
    with requests.Session() as session:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _gateway(session, server)
            state = requests.get(server.url + "/health", timeout=5).json()["checks"]["wuzapi:circuit"][0]
            if state["state"] == "closed":
                break
            time.sleep(0.1)
    assert state["state"] == "closed"  # two trial successes closed it for every worker


def test_idempotent_calls_survive_transient_faults(start_gunicorn, chaos_fake):
    server = start_gunicorn(WUZAPI_MAX_RETRIES="3")
    chaos_fake.set_fault(mode="reset", rate=0.2, seed=11, paths=["/session/status"])

    def call(_: int) -> int:
        with requests.Session() as session:
            return _gateway(session, server).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(call, range(300)))
    successes = codes.count(200)
    assert successes / len(codes) >= 0.99, Counter(codes)
    faulted = [entry for entry in _upstream(chaos_fake, "/session/status") if entry.get("fault")]
    assert faulted  # the faults really happened


def test_sends_are_never_duplicated(start_gunicorn, chaos_fake):
    server = start_gunicorn(WUZAPI_MAX_RETRIES="3", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="1000")
    with requests.Session() as session:
        session.post(server.url + "/api/wuzapi/session/connect", json={"Immediate": True}, headers=TOKEN, timeout=10)
        chaos_fake.pair(USER_TOKEN)
        chaos_fake.set_fault(mode="reset", rate=0.3, seed=5, paths=["/chat/send/*"], after_processing=True)
        outcomes = Counter()
        for index in range(40):
            response = session.post(server.url + "/api/wuzapi/chat/send/text", headers=TOKEN, timeout=15,
                                    json={"Phone": "5511999990001", "Body": f"message {index}"})
            outcomes[response.status_code] += 1
            if response.status_code == 504:
                assert response.json()["outcome"] == "unknown"
                assert response.json()["id"].startswith("3EB0")
    sends = _upstream(chaos_fake, "/chat/send/text")
    ids = [entry["body"]["Id"] for entry in sends]
    assert len(ids) == 40
    assert len(set(ids)) == len(ids)  # no message id was sent twice
    assert outcomes[200] + outcomes[504] == 40
    assert outcomes[504] > 0


def test_calls_through_one_worker_run_concurrently(start_gunicorn, chaos_fake):
    server = start_gunicorn(WEB_CONCURRENCY="1", GUNICORN_THREADS="8")
    chaos_fake.set_fault(mode="latency", latency_ms=200)
    with requests.Session() as warm:
        _gateway(warm, server)  # the worker's connections and circuit cache are warm

    def call(_: int) -> int:
        with requests.Session() as session:
            return _gateway(session, server).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, range(8)))
    elapsed = time.monotonic() - started
    assert codes == [200] * 8
    assert elapsed < 1.0  # serialised they would take at least 1.6 s


def test_refused_connections_fail_fast_and_open(start_gunicorn, chaos_fake):
    server = start_gunicorn(WUZAPI_MAX_RETRIES="2", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="3")
    chaos_fake.stop()
    with requests.Session() as session:
        first = _gateway(session, server)
        assert first.status_code == 503
        assert first.json()["code"] in {"wuzapi_unavailable", "circuit_open"}
        assert int(first.headers["Retry-After"]) >= 1
        time.sleep(1.0)
        later = _gateway(session, server)
    assert later.json()["code"] == "circuit_open"


def test_throttled_call_retried_after_retry_after(start_gunicorn, chaos_fake):
    server = start_gunicorn(WUZAPI_MAX_RETRIES="3", WUZAPI_RETRY_MAX_DELAY="2000")
    chaos_fake.set_fault(mode="status_429", retry_after="1", rate=0.5, seed=2, paths=["/session/status"])
    with requests.Session() as session:
        codes = [_gateway(session, server).status_code for _ in range(6)]
    assert codes == [200] * 6
    throttled = [entry for entry in _upstream(chaos_fake, "/session/status") if entry.get("fault") == "status_429"]
    assert throttled
    state = requests.get(server.url + "/health", timeout=5).json()["checks"]["wuzapi:circuit"][0]
    assert state["failures"] == 0  # a 429 never counts against the circuit


def test_long_retry_after_fails_fast_with_it(start_gunicorn, chaos_fake):
    server = start_gunicorn(WUZAPI_MAX_RETRIES="3", WUZAPI_RETRY_MAX_DELAY="1000")
    chaos_fake.set_fault(mode="status_429", retry_after="120", paths=["/session/status"])
    with requests.Session() as session:
        started = time.monotonic()
        response = _gateway(session, server)
    assert time.monotonic() - started < 1.0
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "120"


@pytest.mark.parametrize("mode", ["stall_body", "trickle"])
def test_slow_bodies_cut_at_deadline(start_gunicorn, chaos_fake, mode):
    server = start_gunicorn(WUZAPI_MAX_RETRIES="0", WUZAPI_TIMEOUT="1000", WUZAPI_DEADLINE="1500")
    chaos_fake.set_fault(mode=mode, latency_ms=20000, paths=["/session/status"])
    with requests.Session() as session:
        started = time.monotonic()
        response = _gateway(session, server)
    assert time.monotonic() - started < 2.5
    assert response.status_code == 504
    assert response.json()["code"] == "wuzapi_timeout"


def test_flapping_wuzapi_recovers(start_gunicorn, chaos_fake):
    server = start_gunicorn(WUZAPI_MAX_RETRIES="1", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="3",
                            WUZAPI_CIRCUIT_RESET_TIMEOUT="800", WUZAPI_CIRCUIT_SUCCESS_THRESHOLD="2")
    stop = threading.Event()

    def flap() -> None:
        while not stop.is_set():
            chaos_fake.set_fault(mode="proxy_502")
            stop.wait(0.7)
            chaos_fake.clear_fault()
            stop.wait(0.7)

    flapper = threading.Thread(target=flap, daemon=True)
    flapper.start()
    codes = Counter()
    with requests.Session() as session:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            codes[_gateway(session, server).status_code] += 1
            time.sleep(0.05)
    stop.set()
    flapper.join(5)
    chaos_fake.clear_fault()
    assert codes[200] > 0
    assert codes[503] > 0

    with requests.Session() as session:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _gateway(session, server).status_code == 200:
                state = requests.get(server.url + "/health", timeout=5).json()["checks"]["wuzapi:circuit"][0]
                if state["state"] == "closed":
                    break
            time.sleep(0.2)
    assert state["state"] == "closed"
    transitions = {(event["from"], event["to"]) for event in state["transitions"]}
    assert ("closed", "open") in transitions
