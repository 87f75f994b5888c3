"""Login, logout and status against the fake WUZAPI, on both session stores."""

from __future__ import annotations

import time

from stabilizer.views.common import user_id_for
from tests.conftest import ADMIN_TOKEN, OTHER_TOKEN, USER_TOKEN


def test_login_user_returns_user_without_token(auth, client):
    response = auth.login()
    assert response.status_code == 200
    body = response.get_json()
    assert body["authenticated"] is True
    assert body["user"]["id"] == user_id_for(USER_TOKEN)
    assert body["user"]["role"] == "user"
    assert body["user"]["name"] == "alice"
    assert USER_TOKEN not in response.get_data(as_text=True)
    status = client.get("/api/auth/status")
    assert status.get_json()["user"]["id"] == user_id_for(USER_TOKEN)
    assert USER_TOKEN not in status.get_data(as_text=True)


def test_login_checks_token_with_session_status(auth, fake):
    auth.login()
    calls = [entry for entry in fake.requests() if entry["path"] == "/session/status"]
    assert len(calls) == 1
    assert calls[0]["method"] == "GET"


def test_login_admin(auth, fake):
    response = auth.login(ADMIN_TOKEN, "admin")
    assert response.status_code == 200
    assert response.get_json()["user"]["role"] == "admin"
    assert [entry["path"] for entry in fake.requests()] == ["/admin/users"]


def test_login_admin_wrong_token_never_reaches_wuzapi(auth, fake):
    response = auth.login("not-the-admin-token", "admin")
    assert response.status_code == 401
    assert response.get_json()["code"] == "invalid_credentials"
    assert fake.requests() == []


def test_login_admin_disabled_without_configured_token(make_app, fake):
    client = make_app(WUZAPI_ADMIN_TOKEN="").test_client()
    response = client.post("/api/auth/login", json={"token": ADMIN_TOKEN, "role": "admin"})
    assert response.status_code == 403
    assert response.get_json()["code"] == "admin_login_disabled"


def test_login_wrong_token_is_401(auth):
    response = auth.login("wrong-token")
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "invalid_credentials"
    assert body["detail"] == "O token não foi aceito pelo WUZAPI."
    assert body["request_id"] == response.headers["X-Request-ID"]


def test_login_error_in_english_on_request(auth):
    response = auth.login("wrong-token", **{"Accept-Language": "en-US,en;q=0.9"})
    assert response.get_json()["detail"] == "The token was not accepted by WUZAPI."


def test_five_wrong_tokens_do_not_open_circuit(app, auth):
    for _ in range(5):
        assert auth.login("wrong-token").status_code == 401
    assert app.extensions["stabilizer"].breaker.snapshot()["state"] == "closed"
    assert auth.login().status_code == 200


def test_login_invalid_input(client):
    cases = [
        ({"role": "user"}, "o token está ausente"),
        ({"token": "", "role": "user"}, "o token está ausente"),
        ({"token": 123, "role": "user"}, "o token deve ser um texto"),
        ({"token": "a b", "role": "user"}, "sem espaços"),
        ({"token": "x" * 513, "role": "user"}, "sem espaços"),
        ({"token": "abc", "role": "root"}, "o role deve ser user ou admin"),
        (["token"], "objeto JSON"),
    ]
    for body, fragment in cases:
        response = client.post("/api/auth/login", json=body)
        assert response.status_code == 400, body
        assert response.get_json()["code"] == "invalid_input"
        assert fragment in response.get_json()["detail"], body


def test_login_requires_json(client):
    response = client.post("/api/auth/login", data={"token": USER_TOKEN})
    assert response.status_code == 415
    assert response.get_json()["code"] == "unsupported_media_type"


def test_login_wuzapi_down_is_503_with_retry_after(make_app, fake):
    app = make_app(WUZAPI_MAX_RETRIES="1")
    fake.stop()
    response = app.test_client().post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    assert response.status_code == 503
    assert response.get_json()["code"] == "wuzapi_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def test_login_circuit_open_is_503_and_fast(make_app, fake):
    app = make_app(WUZAPI_MAX_RETRIES="0", WUZAPI_CIRCUIT_FAILURE_THRESHOLD="2")
    client = app.test_client()
    fake.stop()
    for _ in range(2):
        client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    started = time.monotonic()
    response = client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.get_json()["code"] == "circuit_open"
    assert 1 <= int(response.headers["Retry-After"]) <= 30
    assert elapsed < 0.5


def test_login_error_500_from_wuzapi_is_503_not_401(auth, fake):
    fake.set_fault(mode="proxy_502")
    response = auth.login()
    assert response.status_code == 503
    assert response.get_json()["code"] in {"wuzapi_unavailable", "circuit_open"}


def test_logout_deletes_row_and_expires_cookie(make_app, fake, count_statements=None):
    app = make_app(COOKIE_DOMAIN="example.test")
    client = app.test_client()
    database = app.extensions["stabilizer"].database
    login = client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"},
                        base_url="http://example.test")
    assert "Domain=example.test" in login.headers["Set-Cookie"]
    assert database.stats()["live"] == 1

    response = client.post("/api/auth/logout", json={}, base_url="http://example.test")
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("wuzapi.sid=;")
    assert "Domain=example.test" in cookie
    assert "Path=/" in cookie
    assert "Expires=Thu, 01 Jan 1970" in cookie
    assert database.stats()["rows"] == 0


def test_logout_without_session_is_200(client):
    response = client.post("/api/auth/logout", json={})
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_old_cookie_rejected_after_logout(app, auth):
    auth.login()
    cookie = auth.client.get_cookie("wuzapi.sid").value
    auth.logout()
    replay = app.test_client()
    replay.set_cookie("wuzapi.sid", cookie)
    assert replay.get("/api/auth/status").get_json() == {"authenticated": False}
    assert replay.get("/api/wuzapi/session/status").status_code == 401


def test_login_rotates_session_id(app, auth):
    auth.login()
    first = auth.client.get_cookie("wuzapi.sid").value
    auth.login(OTHER_TOKEN)
    second = auth.client.get_cookie("wuzapi.sid").value
    assert first != second
    database = app.extensions["stabilizer"].database
    assert database.stats()["rows"] == 1
    replay = app.test_client()
    replay.set_cookie("wuzapi.sid", first)
    assert replay.get("/api/auth/status").get_json() == {"authenticated": False}
