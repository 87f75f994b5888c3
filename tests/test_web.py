"""The pages through Flask's test client, against the fake WUZAPI, on both session stores.

Forms are posted the way a browser posts them: the CSRF token is read from the page
that contains the form.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from stabilizer.config import ConfigError, load_settings
from stabilizer.db import StoreUnavailable
from stabilizer.sessions.keys import hash_session_id
from stabilizer.views.common import user_id_for
from stabilizer.web.common import safe_next
from tests.conftest import ADMIN_TOKEN, OTHER_TOKEN, USER_TOKEN, app_environ

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')
LOGIN_ERROR = re.compile(r'id="login-error">([^<]*)<')
NOTICE = re.compile(r'<div class="notice (\w+)"[^>]*>\s*(.*?)\s*</div>', re.DOTALL)
MESSAGE_ID = re.compile(r'<code class="message-id">([^<]+)</code>')
COOKIE_NAME = "wuzapi.sid"
HTML = {"Accept": "text/html,application/xhtml+xml"}


class Pages:
    """A browser-like wrapper around the test client: reads CSRF tokens from pages, posts forms."""

    def __init__(self, client):
        self.client = client

    def csrf_token(self, path: str = "/login") -> str:
        page = self.client.get(path, headers=HTML)
        match = CSRF_INPUT.search(page.get_data(as_text=True))
        assert match, f"no CSRF token in {path} (HTTP {page.status_code})"
        return match.group(1)

    def post(self, path: str, data: dict | None = None, *, token_from: str = "/login", **kwargs):
        form = dict(data or {})
        form["csrf_token"] = self.csrf_token(token_from)
        return self.client.post(path, data=form, headers=HTML, **kwargs)

    def login(self, token: str = USER_TOKEN, role: str = "user", next_path: str | None = None, **kwargs):
        data = {"token": token, "role": role}
        if next_path is not None:
            data["next"] = next_path
        return self.post("/login", data, **kwargs)

    def get(self, path: str, **kwargs):
        return self.client.get(path, headers=HTML, **kwargs)

    def text(self, path: str) -> str:
        return self.get(path).get_data(as_text=True)

    def notices(self, path: str = "/") -> list[tuple[str, str]]:
        return [(kind, re.sub(r"\s+", " ", text)) for kind, text in NOTICE.findall(self.text(path))]


@pytest.fixture
def pages(client) -> Pages:
    return Pages(client)


@pytest.fixture
def user_pages(pages) -> Pages:
    assert pages.login().status_code == 302
    return pages


@pytest.fixture
def admin_pages(pages) -> Pages:
    assert pages.login(ADMIN_TOKEN, "admin").status_code == 302
    return pages


def stored_session(app, client) -> dict | None:
    """Return the session row behind the client's cookie, decoded, or None."""
    runtime = app.extensions["stabilizer"]
    cookie = client.get_cookie(COOKIE_NAME)
    if cookie is None:
        return None
    sid = runtime.secrets.unsign(cookie.value)
    row = runtime.database.session_get(hash_session_id(sid))
    return json.loads(row.data) if row else None


def login_error(response) -> str:
    match = LOGIN_ERROR.search(response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:2000]
    return match.group(1)


# --- login -------------------------------------------------------------------------------


def test_login_page_defaults_to_portuguese(pages):
    response = pages.get("/login")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert '<html lang="pt-BR">' in text
    assert "Entrar" in text
    assert 'name="csrf_token"' in text


def test_login_page_in_english_on_accept_language(client):
    response = client.get("/login", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in response.get_data(as_text=True)
    assert "Log in" in response.get_data(as_text=True)


def test_login_user_redirects_to_dashboard(pages, app):
    response = pages.login()
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    data = stored_session(app, pages.client)
    assert data["user"]["id"] == user_id_for(USER_TOKEN)
    assert data["user"]["role"] == "user"
    assert data["user"]["name"] == "alice"
    assert USER_TOKEN not in json.dumps(data)


def test_login_rotates_session_id(pages, app):
    pages.get("/login")
    before = pages.client.get_cookie(COOKIE_NAME).value
    before_sid = app.extensions["stabilizer"].secrets.unsign(before)
    pages.login()
    after = pages.client.get_cookie(COOKIE_NAME).value
    assert after != before
    database = app.extensions["stabilizer"].database
    assert database.session_get(hash_session_id(before_sid)) is None


def test_login_wrong_token_shows_error_in_portuguese(pages):
    response = pages.login("not-a-token")
    assert response.status_code == 401
    assert login_error(response) == "O token não foi aceito pelo WUZAPI."
    assert pages.get("/").status_code == 302


def test_login_wrong_token_in_english_after_switching(pages, app):
    switched = pages.post("/language", {"lang": "en", "next": "/login"})
    assert switched.status_code == 302
    assert switched.headers["Location"] == "/login"
    assert pages.client.get_cookie("stabilizer.lang").value == "en"

    response = pages.login("not-a-token")
    assert login_error(response) == "The token was not accepted by WUZAPI."
    assert '<html lang="en">' in response.get_data(as_text=True)


def test_login_invalid_role_is_400(pages):
    response = pages.login(role="root")
    assert response.status_code == 400
    assert "field-error" in response.get_data(as_text=True)


def test_login_missing_token_is_400(pages):
    response = pages.login(token="")
    assert response.status_code == 400
    assert "Informe o token." in response.get_data(as_text=True)


def test_login_wuzapi_unavailable_says_when_to_retry(pages, fake):
    fake.set_fault(mode="proxy_502", paths=["/session/status"])
    response = pages.login()
    assert response.status_code == 503
    seconds = response.headers["Retry-After"]
    assert seconds.isdigit()
    assert login_error(response) == f"O WUZAPI está indisponível. Tente novamente em {seconds} segundos."


def test_login_session_store_unavailable(pages, app, monkeypatch):
    pages.get("/login")
    database = app.extensions["stabilizer"].database

    def unavailable(*args, **kwargs):
        raise StoreUnavailable("database is down")

    monkeypatch.setattr(database, "session_rotate", unavailable)
    monkeypatch.setattr(database, "session_get", unavailable)
    response = pages.client.post("/login", data={"token": USER_TOKEN, "role": "user", "csrf_token": "x"},
                                 headers=HTML)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert login_error(response).startswith("O armazenamento de sessões está indisponível")


def test_login_session_store_unavailable_while_saving(pages, app, monkeypatch):
    token = pages.csrf_token()
    monkeypatch.setattr(app.extensions["stabilizer"].database, "session_rotate",
                        lambda *args, **kwargs: (_ for _ in ()).throw(StoreUnavailable("database is down")))
    response = pages.client.post("/login", data={"token": USER_TOKEN, "role": "user", "csrf_token": token},
                                 headers=HTML)
    assert response.status_code == 503
    assert login_error(response).startswith("O armazenamento de sessões está indisponível")


def test_login_page_when_store_down_without_cookie(client, app, monkeypatch):
    monkeypatch.setattr(app.extensions["stabilizer"].database, "session_insert",
                        lambda *args, **kwargs: (_ for _ in ()).throw(StoreUnavailable("database is down")))
    response = client.get("/login", headers=HTML)
    assert response.status_code == 503
    assert response.content_type.startswith("text/html")
    assert login_error(response).startswith("O armazenamento de sessões está indisponível")


def test_page_redirects_to_login_and_back(pages):
    response = pages.get("/admin/users?page=2")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/admin/users?page=2"]

    login_page = pages.text(response.headers["Location"])
    assert 'name="next" value="/admin/users?page=2"' in login_page
    back = pages.login(ADMIN_TOKEN, "admin", next_path="/admin/users?page=2")
    assert back.headers["Location"] == "/admin/users?page=2"


@pytest.mark.parametrize("target", [
    "//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "evil", "/\x00x",
])
def test_login_ignores_foreign_next(pages, target):
    response = pages.login(next_path=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_safe_next_accepts_relative_paths():
    assert safe_next("/status") == "/status"
    assert safe_next("/admin/users?x=1") == "/admin/users?x=1"
    assert safe_next("/" + "a" * 3000) is None
    assert safe_next(None) is None


def test_logged_in_login_page_redirects_home(user_pages):
    response = user_pages.get("/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_logout_ends_login_and_keeps_language(user_pages, app):
    user_pages.post("/language", {"lang": "en"}, token_from="/")
    old_cookie = user_pages.client.get_cookie(COOKIE_NAME).value
    old_sid = app.extensions["stabilizer"].secrets.unsign(old_cookie)

    response = user_pages.post("/logout", token_from="/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert app.extensions["stabilizer"].database.session_get(hash_session_id(old_sid)) is None
    assert ("info", "You are logged out.") in user_pages.notices("/login")
    assert user_pages.client.get_cookie("stabilizer.lang").value == "en"
    assert "user" not in stored_session(app, user_pages.client)
    assert user_pages.get("/").status_code == 302


def test_api_login_still_works_without_csrf_token(auth):
    assert auth.login().status_code == 200
    assert auth.logout().status_code == 200


# --- dashboard ---------------------------------------------------------------------------


def test_dashboard_pairing_flow(user_pages, fake):
    page = user_pages.text("/")
    assert "Conectar" in page
    assert 'id="state-connected"><span class="badge off">' in page

    assert user_pages.post("/whatsapp/connect", token_from="/").status_code == 302
    connect = [entry for entry in fake.requests() if entry["path"] == "/session/connect"]
    assert connect[-1]["body"] == {"Immediate": True}

    waiting = user_pages.text("/")
    assert 'id="qr-code"' in waiting
    assert 'src="data:image/png;base64,' in waiting
    assert '<meta http-equiv="refresh" content="5">' in waiting

    jid = fake.pair(USER_TOKEN)
    linked = user_pages.text("/")
    assert f"<code>{jid}</code>" in linked
    assert "http-equiv" not in linked
    assert "qr-code" not in linked


def test_dashboard_connect_twice_counts_as_connected(user_pages):
    user_pages.post("/whatsapp/connect", token_from="/")
    user_pages.notices()
    user_pages.post("/whatsapp/connect", token_from="/")
    assert user_pages.notices()[0][0] == "success"


def test_dashboard_disconnect_and_whatsapp_logout(user_pages, fake):
    user_pages.post("/whatsapp/connect", token_from="/")
    fake.pair(USER_TOKEN)
    user_pages.post("/whatsapp/disconnect", token_from="/")
    assert fake.user(USER_TOKEN)["connected"] is False
    assert fake.user(USER_TOKEN)["jid"]  # the pairing is kept

    user_pages.post("/whatsapp/connect", token_from="/")
    assert fake.user(USER_TOKEN)["logged_in"] is True
    user_pages.post("/whatsapp/logout", token_from="/")
    assert fake.user(USER_TOKEN)["jid"] == ""
    assert user_pages.notices()[-1][0] == "success"


def test_dashboard_shows_wuzapi_error(user_pages):
    user_pages.post("/whatsapp/disconnect", token_from="/")
    kind, text = user_pages.notices()[-1]
    assert kind == "error"
    assert text == "O WUZAPI retornou HTTP 500: no session"


def test_send_test_message_shows_id(user_pages, fake):
    user_pages.post("/whatsapp/connect", token_from="/")
    fake.pair(USER_TOKEN)
    response = user_pages.post("/whatsapp/test-message", {"phone": "+55 11 98888-7777", "body": "olá"},
                               token_from="/")
    assert response.status_code == 302

    outbox = fake.user(USER_TOKEN)["outbox"]
    assert len(outbox) == 1
    sent = [entry for entry in fake.requests() if entry["path"] == "/chat/send/text"][-1]
    assert sent["body"]["Phone"] == "+5511988887777"
    assert sent["body"]["Body"] == "olá"
    assert re.match(r"^3EB0[0-9A-F]{18}$", sent["body"]["Id"])

    page = user_pages.text("/")
    assert MESSAGE_ID.search(page).group(1) == sent["body"]["Id"]
    assert "Mensagem enviada." in page


def test_send_test_message_outcome_unknown_shows_id(user_pages, fake):
    user_pages.post("/whatsapp/connect", token_from="/")
    fake.pair(USER_TOKEN)
    fake.set_fault(mode="reset", paths=["/chat/send/text"], after_processing=True)
    user_pages.post("/whatsapp/test-message", {"phone": "5511988887777", "body": "hi"}, token_from="/")
    fake.clear_fault()

    sends = [entry for entry in fake.requests() if entry["path"] == "/chat/send/text"]
    assert len(sends) == 1  # never repeated: WUZAPI may have sent it
    page = user_pages.text("/")
    assert "pode ter sido enviada" in page
    assert MESSAGE_ID.search(page).group(1) == sends[0]["body"]["Id"]


def test_send_test_message_validates_input(user_pages, fake):
    response = user_pages.post("/whatsapp/test-message", {"phone": "12", "body": ""}, token_from="/")
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "Informe o número com o código do país" in text
    assert "Digite o texto da mensagem." in text
    assert not [entry for entry in fake.requests() if entry["path"] == "/chat/send/text"]


def test_dashboard_circuit_open_message(make_app, fake):
    app = make_app(WUZAPI_CIRCUIT_FAILURE_THRESHOLD="1", WUZAPI_MAX_RETRIES="0")
    pages = Pages(app.test_client())
    pages.login()
    fake.set_fault(mode="proxy_502")
    pages.get("/")  # this failure opens the circuit
    page = pages.text("/")
    assert "as chamadas estão suspensas" in page


def test_dashboard_ends_login_when_token_revoked(user_pages, fake):
    user = fake.user(USER_TOKEN)
    fake.store.remove(user["id"])
    response = user_pages.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert user_pages.notices("/login")[0][0] == "error"


def test_admin_session_on_dashboard_goes_to_users(admin_pages):
    response = admin_pages.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/users"


def test_admin_session_cannot_use_dashboard_actions(admin_pages):
    response = admin_pages.post("/whatsapp/connect", token_from="/admin/users")
    assert response.status_code == 403


# --- admin -------------------------------------------------------------------------------


def test_admin_users_lists_users_without_tokens(admin_pages, fake):
    page = admin_pages.text("/admin/users")
    assert "alice" in page
    assert "bob" in page
    assert USER_TOKEN not in page
    assert OTHER_TOKEN not in page
    for user in fake.users():
        assert f"<code>{user['id']}</code>" in page


def test_admin_users_refuses_user_session(user_pages):
    response = user_pages.get("/admin/users")
    assert response.status_code == 403
    assert "Acesso negado" in response.get_data(as_text=True)


def test_admin_create_and_delete_user(admin_pages, fake):
    created = admin_pages.post("/admin/users", {"name": "carol", "token": "carol-token-0123456789"},
                               token_from="/admin/users")
    assert created.status_code == 302
    carol = fake.user("carol-token-0123456789")
    assert carol["name"] == "carol"
    page = admin_pages.text("/admin/users")
    assert "carol" in page
    assert "carol-token-0123456789" not in page

    confirm = admin_pages.text(f"/admin/users/{carol['id']}/delete")
    assert "carol" in confirm
    assert f'action="/admin/users/{carol["id"]}/delete"' in confirm
    assert fake.user("carol-token-0123456789") is not None  # nothing deleted by the confirmation page

    deleted = admin_pages.post(f"/admin/users/{carol['id']}/delete", token_from="/admin/users")
    assert deleted.status_code == 302
    assert fake.user("carol-token-0123456789") is None
    deletes = [entry for entry in fake.requests() if entry["method"] == "DELETE"]
    assert deletes[-1]["path"] == f"/admin/users/{carol['id']}"


def test_admin_full_delete(admin_pages, fake):
    bob = fake.user(OTHER_TOKEN)
    admin_pages.post(f"/admin/users/{bob['id']}/delete", {"full": "y"}, token_from="/admin/users")
    deletes = [entry for entry in fake.requests() if entry["method"] == "DELETE"]
    assert deletes[-1]["path"] == f"/admin/users/{bob['id']}/full"
    assert fake.user(OTHER_TOKEN) is None


def test_admin_delete_unknown_user(admin_pages):
    assert admin_pages.get("/admin/users/ffffffffffff/delete").status_code == 404
    admin_pages.post("/admin/users/ffffffffffff/delete", token_from="/admin/users")
    assert admin_pages.notices("/admin/users")[-1][0] == "info"


def test_admin_rejects_odd_user_id(admin_pages, fake):
    assert admin_pages.get("/admin/users/a.b/delete").status_code == 404
    assert not [entry for entry in fake.requests() if entry["path"].startswith("/admin/users/a")]


def test_admin_create_duplicate_token_is_409(admin_pages):
    response = admin_pages.post("/admin/users", {"name": "again", "token": USER_TOKEN}, token_from="/admin/users")
    assert response.status_code == 409
    assert "Outro usuário do WUZAPI já usa este token." in response.get_data(as_text=True)
    assert USER_TOKEN not in response.get_data(as_text=True)


def test_admin_create_validates_input(admin_pages, fake):
    response = admin_pages.post("/admin/users", {"name": " ", "token": "has space"}, token_from="/admin/users")
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "Informe um nome." in text
    assert "O token não pode conter espaços." in text
    assert not [entry for entry in fake.requests() if entry["method"] == "POST"]


# --- status ------------------------------------------------------------------------------


def test_status_page_is_public_and_shows_checks(pages):
    response = pages.get("/status")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert 'id="store"' in text
    assert "Disponível" in text
    assert 'id="circuit"' in text
    assert '<span class="badge ok">Fechado</span>' in text
    assert 'id="retries"' in text
    assert text.count('class="chart-label"') == 5
    assert ADMIN_TOKEN not in text


def test_status_chart_counts_calls(user_pages, fake):
    user_pages.get("/")
    text = user_pages.text("/status")
    succeeded = re.search(r"<tr><th scope=\"row\">Deram certo</th><td>(\d+)</td></tr>", text)
    assert int(succeeded.group(1)) >= 2  # the login check and the dashboard's status call
    assert 'class="chart-bar ok"' in text


def test_status_shows_time_to_trial_call(make_app, fake):
    app = make_app(WUZAPI_CIRCUIT_FAILURE_THRESHOLD="1", WUZAPI_MAX_RETRIES="0")
    client = app.test_client()
    fake.set_fault(mode="proxy_502")
    client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    text = client.get("/status").get_data(as_text=True)
    assert '<span class="badge warn">Aberto</span>' in text
    assert re.search(r'id="next-trial">em \d+(\.\d)? s<', text)


# --- errors, CSRF, headers, languages ----------------------------------------------------


def test_not_found_page_for_browsers_and_json_for_api(client):
    page = client.get("/no-such-page", headers=HTML)
    assert page.status_code == 404
    assert page.content_type.startswith("text/html")
    assert "Página não encontrada" in page.get_data(as_text=True)

    api = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert api.status_code == 404
    assert api.content_type == "application/problem+json"


def test_internal_error_page(make_app):
    app = make_app()

    def broken():
        raise RuntimeError("boom")

    app.add_url_rule("/broken-for-test", view_func=broken)
    response = app.test_client().get("/broken-for-test", headers=HTML)
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "Erro interno" in text
    assert "boom" not in text
    assert response.headers["X-Request-ID"] in text


def test_form_without_csrf_token_is_400(user_pages, fake):
    response = user_pages.client.post("/whatsapp/connect", headers=HTML)
    assert response.status_code == 400
    assert "Este formulário expirou" in response.get_data(as_text=True)
    assert not [entry for entry in fake.requests() if entry["path"] == "/session/connect"]


def test_form_with_wrong_csrf_token_is_400(pages):
    response = pages.client.post("/login", data={"token": USER_TOKEN, "role": "user", "csrf_token": "forged"},
                                 headers=HTML)
    assert response.status_code == 400


def test_language_switch_rejects_unknown_language(pages):
    assert pages.post("/language", {"lang": "fr"}).status_code == 400


def test_language_switch_translates_pages(user_pages):
    assert "Enviar uma mensagem de teste" in user_pages.text("/")
    user_pages.post("/language", {"lang": "en", "next": "/"}, token_from="/")
    assert "Send a test message" in user_pages.text("/")
    user_pages.post("/language", {"lang": "pt_BR", "next": "/"}, token_from="/")
    assert "Enviar uma mensagem de teste" in user_pages.text("/")


def test_language_switch_needs_no_session(client, app):
    """An anonymous visitor switches language without a CSRF token and without a session row."""
    response = client.post("/language", data={"lang": "en", "next": "/status"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/status"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("stabilizer.lang=en;")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Max-Age=31536000" in cookie
    assert client.get_cookie(COOKIE_NAME) is None
    assert app.extensions["stabilizer"].database.stats()["rows"] == 0
    assert "Status" in client.get("/status").get_data(as_text=True)


def test_anonymous_pages_create_no_session(client, app):
    """Monitors that poll /status, or stray 404s, must not fill the session table."""
    for path in ("/status", "/no-such-page", "/health", "/status?lang=en"):
        response = client.get(path)
        assert COOKIE_NAME not in response.headers.get("Set-Cookie", ""), path
    assert app.extensions["stabilizer"].database.stats()["rows"] == 0


def test_language_applies_to_errors(client):
    """The choice applies where no session is read: 404 and 405 pages and API problem details."""
    client.post("/language", data={"lang": "en"})
    html = {"Accept": "text/html"}
    assert "Page not found" in client.get("/no-such-page", headers=html).get_data(as_text=True)
    assert "Method not allowed" in client.delete("/login", headers=html).get_data(as_text=True)
    problem = client.post("/api/auth/login", json={}).get_json()
    assert problem["detail"] == client.post("/api/auth/login", json={},
                                            headers={"Accept-Language": "en"}).get_json()["detail"]
    client.post("/language", data={"lang": "pt_BR"})
    assert client.post("/api/auth/login", json={}).get_json()["detail"] != problem["detail"]


def test_language_switch_works_while_store_down(client, app, monkeypatch):
    def unavailable(*args, **kwargs):
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(app.extensions["stabilizer"].database, "session_get", unavailable)
    client.set_cookie(COOKIE_NAME, "x" * 40)
    response = client.post("/language", data={"lang": "en", "next": "/login"})
    assert response.status_code == 302
    assert client.get_cookie("stabilizer.lang").value == "en"


def test_language_kept_across_login(pages, app):
    pages.post("/language", {"lang": "en"})
    pages.login()
    assert "lang" not in stored_session(app, pages.client)  # the choice lives in its own cookie
    assert "Send a test message" in pages.text("/")


@pytest.mark.parametrize("path", ["/login", "/status", "/api/auth/status", "/health/live", "/static/style.css"])
def test_security_headers(client, path):
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert "script-src" not in csp or "'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in response.headers


def test_hsts_only_with_secure_cookies(make_app):
    app = make_app(COOKIE_SECURE="true")
    response = app.test_client().get("/login")
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_pages_use_no_inline_script_or_style(user_pages):
    for path in ("/login", "/", "/status"):
        text = user_pages.text(path)
        assert "<script" not in text
        assert "style=" not in text
        assert "<style" not in text


def test_pages_are_not_cached(user_pages):
    assert user_pages.get("/").headers["Cache-Control"] == "no-store"


# --- rate limits ---------------------------------------------------------------------------


@pytest.fixture
def limited_app(make_app):
    return make_app(LOGIN_RATE_LIMIT="3 per minute")


def test_page_login_rate_limited_per_address(limited_app):
    pages = Pages(limited_app.test_client())
    for attempt in range(3):
        assert pages.login(f"wrong-token-{attempt}").status_code == 401
    response = pages.login(USER_TOKEN)
    assert response.status_code == 429
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= 60
    assert login_error(response) == f"Tentativas demais. Tente novamente em {seconds} segundos."


def test_api_login_rate_limited_with_problem_json(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        client.post("/api/auth/login", json={"token": "wrong-token", "role": "user"})
    response = client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"})
    assert response.status_code == 429
    assert response.content_type == "application/problem+json"
    assert response.get_json()["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1


def test_login_rate_limit_shared_by_page_and_api(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        client.post("/api/auth/login", json={"token": "wrong-token", "role": "user"})
    assert Pages(client).login().status_code == 429


def test_login_rate_limited_per_token(limited_app):
    client = limited_app.test_client()
    for number in range(3):
        response = client.post("/api/auth/login", json={"token": "guessed-token", "role": "user"},
                               environ_base={"REMOTE_ADDR": f"192.0.2.{number + 1}"})
        assert response.status_code == 401
    other_address = {"REMOTE_ADDR": "192.0.2.200"}
    assert client.post("/api/auth/login", json={"token": "guessed-token", "role": "user"},
                       environ_base=other_address).status_code == 429
    assert client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"},
                       environ_base=other_address).status_code == 200


def test_login_limit_shared_across_apps(make_app):
    """Two workers (or instances) on one session database count the same attempts."""
    first = make_app(LOGIN_RATE_LIMIT="3 per minute", SESSION_TABLE="s_shared_limit")
    second = make_app(LOGIN_RATE_LIMIT="3 per minute", SESSION_TABLE="s_shared_limit")
    clients = [first.test_client(), second.test_client()]
    statuses = [clients[attempt % 2].post("/api/auth/login", json={"token": "wrong-token", "role": "user"}).status_code
                for attempt in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


def test_login_limit_memory_fallback(limited_app, monkeypatch, caplog):
    """With the session database unreachable, the limit still holds, counted by the process."""
    database = limited_app.extensions["stabilizer"].database

    def unavailable(*args, **kwargs):
        raise StoreUnavailable("connection refused")

    for name in ("ratelimit_incr", "ratelimit_get", "ping", "session_get", "session_insert", "session_rotate"):
        monkeypatch.setattr(database, name, unavailable)
    client = limited_app.test_client()
    statuses = [client.post("/api/auth/login", json={"token": USER_TOKEN, "role": "user"}).status_code
                for _ in range(4)]
    assert statuses == [503, 503, 503, 429]
    assert "Rate limit storage unreachable" in caplog.text
    assert "cannot count login attempts in the session database" in caplog.text
    assert "connection refused" in caplog.text


def test_login_limit_memory_per_app(make_app):
    """memory:// keeps counters in the process: a second app starts from zero."""
    apps = [make_app(LOGIN_RATE_LIMIT="1 per minute", RATELIMIT_STORAGE_URI="memory://",
                     SESSION_TABLE="s_memory_limit") for _ in range(2)]
    for app in apps:
        client = app.test_client()
        assert client.post("/api/auth/login", json={"token": "wrong-token", "role": "user"}).status_code == 401
        assert client.post("/api/auth/login", json={"token": "wrong-token", "role": "user"}).status_code == 429


def test_login_rate_limit_ignores_other_pages(limited_app):
    pages = Pages(limited_app.test_client())
    for _ in range(5):
        assert pages.get("/login").status_code == 200
    assert pages.login().status_code == 302


def test_login_rate_limit_zero_disables_it(make_app):
    client = make_app(LOGIN_RATE_LIMIT="0").test_client()
    for _ in range(12):
        assert client.post("/api/auth/login", json={"token": "wrong-token", "role": "user"}).status_code == 401


# --- settings ------------------------------------------------------------------------------


def test_rate_limit_settings_defaults(tmp_path):
    settings = load_settings(app_environ(), instance_path=tmp_path)
    assert settings.login_rate_limit == "10 per minute"
    assert settings.ratelimit_storage_uri == "database://"


@pytest.mark.parametrize("value", ["often", "10", "0 per minute", "10 per fortnight"])
def test_login_rate_limit_setting_rejects(tmp_path, value):
    with pytest.raises(ConfigError, match="LOGIN_RATE_LIMIT"):
        load_settings(app_environ(LOGIN_RATE_LIMIT=value), instance_path=tmp_path)


@pytest.mark.parametrize("value", ["localhost:6379", "ftp://host", "async+redis://host:6379", "database://other"])
def test_ratelimit_storage_setting_rejects(tmp_path, value):
    with pytest.raises(ConfigError, match="RATELIMIT_STORAGE_URI"):
        load_settings(app_environ(RATELIMIT_STORAGE_URI=value), instance_path=tmp_path)


def test_ratelimit_storage_setting_hides_password(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_settings(app_environ(RATELIMIT_STORAGE_URI="nosuch://user:secret@host"), instance_path=tmp_path)
    assert "secret" not in str(error.value)


def test_ratelimit_storage_setting_accepts_redis(tmp_path):
    settings = load_settings(app_environ(RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0"), instance_path=tmp_path)
    assert settings.ratelimit_storage_uri == "redis://127.0.0.1:6379/0"


def test_trusted_proxies_take_client_address_from_header(make_app):
    """With TRUSTED_PROXIES=1 the login limit counts per forwarded address, not per proxy."""
    app = make_app(TRUSTED_PROXIES="1", LOGIN_RATE_LIMIT="1 per minute")
    client = app.test_client()
    statuses = [client.post("/api/auth/login", json={"token": f"wrong-token-{index}", "role": "user"},
                            headers={"X-Forwarded-For": f"203.0.113.{index}"}).status_code
                for index in range(3)]
    assert 429 not in statuses  # three clients behind one proxy, one attempt each

    same = [client.post("/api/auth/login", json={"token": f"other-token-{index}", "role": "user"},
                        headers={"X-Forwarded-For": "203.0.113.50"}).status_code for index in range(2)]
    assert same[1] == 429


def test_without_trusted_proxies_header_is_ignored(make_app):
    app = make_app(LOGIN_RATE_LIMIT="1 per minute")
    client = app.test_client()
    statuses = [client.post("/api/auth/login", json={"token": f"wrong-token-{index}", "role": "user"},
                            headers={"X-Forwarded-For": f"203.0.113.{index}"}).status_code
                for index in range(2)]
    assert statuses[1] == 429  # a forged header does not buy a fresh limit


def test_status_numbers_use_the_page_language(client, app, monkeypatch):
    from stabilizer.views import health

    monkeypatch.setattr(health, "store_check",
                        lambda: {"status": "pass", "backend": "sqlite", "observedValue": 1.5, "observedUnit": "ms"})
    monkeypatch.setattr("stabilizer.web.status.store_check", health.store_check)
    assert "1,5 ms" in client.get("/status").get_data(as_text=True)
    assert "1.5 ms" in client.get("/status", headers={"Accept-Language": "en"}).get_data(as_text=True)


def test_error_pages_are_not_cached(client):
    html = {"Accept": "text/html"}
    for response in (client.get("/no-such-page", headers=html), client.delete("/login", headers=html)):
        assert response.status_code in (404, 405)
        assert response.headers["Cache-Control"] == "no-store"
