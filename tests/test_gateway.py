"""The gateway /api/wuzapi/<path> against the fake WUZAPI over real HTTP."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ADMIN_TOKEN, USER_TOKEN


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the gateway does not depend on the store; test_sessions covers both


@pytest.fixture
def logged_in(auth):
    assert auth.login().status_code == 200
    return auth.client


def _upstream(fake, path):
    return [entry for entry in fake.requests() if entry["path"] == path]


def test_answer_passes_through_unchanged(logged_in, fake):
    direct_status, direct_body = None, None
    import requests

    direct = requests.get(fake.url + "/session/status", headers={"Token": USER_TOKEN}, timeout=5)
    direct_status, direct_body = direct.status_code, direct.content
    response = logged_in.get("/api/wuzapi/session/status")
    assert response.status_code == direct_status == 200
    assert response.get_data() == direct_body
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Upstream-Attempts"] == "1"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_wuzapi_errors_pass_through(logged_in, fake):
    response = logged_in.post("/api/wuzapi/session/disconnect", json={})
    assert response.status_code == 500
    assert response.get_json() == {"code": 500, "error": "no session", "success": False}

    logged_in.post("/api/wuzapi/session/connect", json={"Immediate": True})
    response = logged_in.post("/api/wuzapi/chat/send/text", json={"Phone": "5511999990000"})
    assert response.status_code == 400
    assert response.get_json() == {"code": 400, "error": "missing Body in Payload", "success": False}


def test_session_token_is_sent_as_token_header(logged_in, fake):
    logged_in.get("/api/wuzapi/session/status")
    [entry] = _upstream(fake, "/session/status")[-1:]
    assert "Token" in entry["headers"] or "token" in {key.lower() for key in entry["headers"]}
    assert USER_TOKEN not in json.dumps(entry)  # the fake masks credentials in its log


def test_query_and_body_forwarded(logged_in, fake):
    logged_in.post("/api/wuzapi/user/check?x=1&x=2", json={"Phone": ["5511999990000"]})
    [entry] = _upstream(fake, "/user/check")
    assert entry["body"] == {"Phone": ["5511999990000"]}
    assert entry["query"]


def test_request_id_forwarded_and_echoed(logged_in, fake):
    response = logged_in.get("/api/wuzapi/session/status", headers={"X-Request-ID": "caller-id-12345"})
    assert response.headers["X-Request-ID"] == "caller-id-12345"
    [entry] = _upstream(fake, "/session/status")[-1:]
    headers = {key.lower(): value for key, value in entry["headers"].items()}
    assert headers["x-request-id"] == "caller-id-12345"


def test_malformed_request_id_replaced(logged_in):
    response = logged_in.get("/api/wuzapi/session/status", headers={"X-Request-ID": "bad id\u00e9"})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_pass_through_token_without_session(client, fake, count_statements):
    with count_statements() as counter:
        response = client.get("/api/wuzapi/session/status", headers={"Token": USER_TOKEN})
    assert response.status_code == 200
    assert [sql for sql in counter.statements if "_circuit" not in sql] == []  # no session query


def test_pass_through_authorization_for_admin(client, fake):
    response = client.get("/api/wuzapi/admin/users", headers={"Authorization": ADMIN_TOKEN})
    assert response.status_code == 200
    assert response.get_json()["success"] is True


def test_wrong_pass_through_token_gets_wuzapi_401(client):
    response = client.get("/api/wuzapi/session/status", headers={"Token": "nope"})
    assert response.status_code == 401
    assert response.get_json() == {"code": 401, "error": "unauthorized", "success": False}


def test_no_credentials_is_401_problem(client, fake):
    response = client.get("/api/wuzapi/session/status")
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.get_json()["code"] == "not_authenticated"
    assert fake.requests() == []


def test_user_session_cannot_call_admin_paths(logged_in, fake):
    response = logged_in.get("/api/wuzapi/admin/users")
    assert response.status_code == 403
    assert response.get_json()["code"] == "forbidden"
    assert fake.requests()[-1]["path"] != "/admin/users"


def test_admin_session_uses_authorization(auth, fake):
    auth.login(ADMIN_TOKEN, "admin")
    response = auth.client.get("/api/wuzapi/admin/users")
    assert response.status_code == 200
    assert len(response.get_json()["data"]) == 2


def test_cookie_writes_must_be_json(logged_in, fake):
    response = logged_in.post("/api/wuzapi/chat/send/text", data="Phone=1&Body=x",
                              content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.get_json()["code"] == "unsupported_media_type"
    assert _upstream(fake, "/chat/send/text") == []


@pytest.mark.parametrize("path", [
    "/api/wuzapi/../admin/users",
    "/api/wuzapi/session/../admin/users",
    "/api/wuzapi/session/%2e%2e/admin",
    "/api/wuzapi/session%2Fstatus",
    "/api/wuzapi/session%2fstatus",
    "/api/wuzapi/session%5cstatus",
    "/api/wuzapi//evil.example/x",
    "/api/wuzapi/http://evil.example/x",
    "/api/wuzapi/http:/evil.example",
    "/api/wuzapi/session//status",
    "/api/wuzapi/./session/status",
    "/api/wuzapi/session/%252e%252e",
    "/api/wuzapi/session/st%00atus",
])
def test_invalid_paths_rejected(logged_in, fake, path):
    response = logged_in.get(path)
    assert response.status_code == 400, path
    assert response.get_json()["code"] == "invalid_path"
    assert fake.requests()[-1]["path"] == "/session/status"  # only the login check reached WUZAPI


def test_jid_path_segments_allowed(logged_in, fake):
    response = logged_in.get("/api/wuzapi/user/lid/5511999990000@s.whatsapp.net")
    assert response.status_code != 400 or response.get_json().get("code") != "invalid_path"


def test_send_gets_message_id_when_missing(logged_in, fake):
    response = logged_in.post("/api/wuzapi/chat/send/text", json={"Phone": "5511999990000", "Body": "oi"})
    assert response.status_code in (200, 500)
    [entry] = _upstream(fake, "/chat/send/text")
    assert re.fullmatch(r"3EB0[0-9A-F]{18}", entry["body"]["Id"])


def test_send_keeps_caller_message_id(logged_in, fake):
    logged_in.post("/api/wuzapi/chat/send/text", json={"Phone": "5511999990000", "Body": "oi", "id": "MYID1"})
    [entry] = _upstream(fake, "/chat/send/text")
    assert entry["body"]["id"] == "MYID1"
    assert "Id" not in entry["body"]


def test_edit_id_is_never_filled(logged_in, fake):
    logged_in.post("/api/wuzapi/chat/send/edit", json={"Phone": "5511999990000", "Body": "oi"})
    [entry] = _upstream(fake, "/chat/send/edit")
    assert "Id" not in entry["body"]


def test_send_read_timeout_is_504_outcome_unknown_with_id(make_app, fake):
    app = make_app(WUZAPI_TIMEOUT="300", WUZAPI_MAX_RETRIES="3")
    client = app.test_client()
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    fake.set_fault(mode="blackhole", paths=["/chat/send/*"])
    response = client.post("/api/wuzapi/chat/send/text", json={"Phone": "5511999990000", "Body": "oi"})
    assert response.status_code == 504
    body = response.get_json()
    assert body["code"] == "outcome_unknown"
    assert body["outcome"] == "unknown"
    assert re.fullmatch(r"3EB0[0-9A-F]{18}", body["id"])
    assert response.headers["X-Upstream-Attempts"] == "1"
    sends = _upstream(fake, "/chat/send/text")
    assert len(sends) == 1
    assert sends[0]["body"]["Id"] == body["id"]


def test_send_reset_after_processing_is_not_retried(make_app, fake):
    app = make_app(WUZAPI_MAX_RETRIES="3")
    client = app.test_client()
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    fake.set_fault(mode="reset", paths=["/chat/send/*"], after_processing=True)
    response = client.post("/api/wuzapi/chat/send/text", json={"Phone": "5511999990000", "Body": "oi"})
    assert response.status_code == 504
    assert response.get_json()["outcome"] == "unknown"
    assert len(_upstream(fake, "/chat/send/text")) == 1


def test_read_retried_after_reset(make_app, fake):
    app = make_app(WUZAPI_MAX_RETRIES="3")
    client = app.test_client()
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    fake.set_fault(mode="reset", paths=["/session/status"], rate=0.5, seed=3)
    for _ in range(10):
        response = client.get("/api/wuzapi/session/status")
        assert response.status_code == 200
    attempts = len(_upstream(fake, "/session/status"))
    assert attempts > 11  # some calls needed a retry


def test_timeout_on_read_is_504(make_app, fake):
    app = make_app(WUZAPI_TIMEOUT="200", WUZAPI_MAX_RETRIES="1", WUZAPI_DEADLINE="2000")
    client = app.test_client()
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    fake.set_fault(mode="blackhole", paths=["/session/status"])
    response = client.get("/api/wuzapi/session/status")
    assert response.status_code == 504
    assert response.get_json()["code"] == "wuzapi_timeout"
    assert response.headers["X-Upstream-Attempts"] == "2"


def test_enveloped_500_is_an_answer(logged_in, fake, app):
    fake.set_fault(mode="error_500")
    for _ in range(8):
        response = logged_in.get("/api/wuzapi/session/status")
        assert response.status_code == 500
        assert response.get_json()["error"] == "no session"
        assert response.headers["X-Upstream-Attempts"] == "1"
    assert app.extensions["stabilizer"].breaker.snapshot()["state"] == "closed"


def test_proxy_502_is_retried_then_503(make_app, fake):
    app = make_app(WUZAPI_MAX_RETRIES="2", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="10")
    client = app.test_client()
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    fake.set_fault(mode="proxy_502")
    response = client.get("/api/wuzapi/session/status")
    assert response.status_code == 503
    assert response.get_json()["code"] == "wuzapi_unavailable"
    assert response.headers["X-Upstream-Attempts"] == "3"
    assert int(response.headers["Retry-After"]) >= 1


def test_wuzapi_stopped_then_circuit_open_is_fast(make_app, fake):
    import time

    app = make_app(WUZAPI_MAX_RETRIES="0", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="3")
    client = app.test_client()
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    fake.stop()
    for _ in range(3):
        response = client.get("/api/wuzapi/session/status")
        assert response.status_code == 503
        assert response.get_json()["code"] == "wuzapi_unavailable"
    started = time.monotonic()
    response = client.get("/api/wuzapi/session/status")
    assert time.monotonic() - started < 0.2
    assert response.get_json()["code"] == "circuit_open"
    assert response.headers["X-Upstream-Attempts"] == "0"
    assert 1 <= int(response.headers["Retry-After"]) <= 30


def test_problem_detail_language(make_app, fake):
    app = make_app()
    client = app.test_client()
    pt = client.get("/api/wuzapi/session/status")
    en = client.get("/api/wuzapi/session/status", headers={"Accept-Language": "en"})
    assert pt.get_json()["detail"] == "Faça login primeiro ou envie um cabeçalho Token ou Authorization."
    assert en.get_json()["detail"] == "Log in first, or send a Token or Authorization header."
    for response in (pt, en):
        body = response.get_json()
        assert set(body) >= {"type", "title", "status", "detail", "code", "request_id"}
        assert body["status"] == 401


def test_unknown_route_is_problem_404(client):
    response = client.get("/api/nothing")
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_unsupported_method_is_405(client):
    response = client.patch("/api/wuzapi/session/status", headers={"Token": USER_TOKEN})
    assert response.status_code == 405
    assert response.get_json()["code"] == "method_not_allowed"
