"""The pages in a real headless Chromium, against gunicorn and the fake WUZAPI as separate processes.

Chromium is Debian's package at /usr/bin/chromium, driven by Playwright. These tests
are skipped when it is absent, unless STABILIZER_REQUIRE_BROWSER=1 (set by .ci/run).
Screenshots of every page go to the test's tmp_path. With STABILIZER_SCREENSHOT_DIR set,
the ones shown in docs/pages.md are copied there too (docs/screenshots/ is made that way).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import requests

from tests.processes import FakeWuzapiProcess, free_port
from tests.test_e2e_gunicorn import ADMIN_TOKEN, SECRET, USER_TOKEN, GunicornProcess, base_environ

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1100, "height": 760}
STEP_TIMEOUT_MS = 10_000  # one page load or element wait
PAIRED_TIMEOUT_MS = 15_000  # the QR page reloads every 5 s, so pairing shows within one reload
HTTP_TIMEOUT = 10.0  # seconds for a direct request to the fake WUZAPI
MESSAGE_ID = re.compile(r"^3EB0[0-9A-F]{18}$")


def require_browser() -> None:
    """Skip without Chromium or Playwright, or fail when STABILIZER_REQUIRE_BROWSER=1."""
    required = os.environ.get("STABILIZER_REQUIRE_BROWSER") == "1"
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)"
        if required:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if required:
            pytest.fail("the playwright package is missing: pip install -r requirements.txt")
        pytest.skip("the playwright package is missing")


class Site:
    """gunicorn serving Stabilizer on SQLite, in front of a fake WUZAPI with the user alice."""

    def __init__(self, fake: FakeWuzapiProcess, server: GunicornProcess):
        self.fake = fake
        self.server = server
        self.url = server.url

    def pair(self, token: str = USER_TOKEN) -> str:
        """Complete the pending QR pairing, as a phone scan would, and return the new JID."""
        response = requests.post(self.fake.url + "/__fake__/pair", json={"token": token}, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        return response.json()["jid"]

    def wuzapi_requests(self, path: str) -> list[dict]:
        response = requests.get(self.fake.url + "/__fake__/requests", timeout=HTTP_TIMEOUT)
        return [entry for entry in response.json() if entry["path"] == path]


@pytest.fixture
def site(tmp_path):
    require_browser()
    fake = FakeWuzapiProcess(tmp_path, admin_token=ADMIN_TOKEN, user_token=USER_TOKEN, env=base_environ())
    server = None
    try:
        fake.start()
        port = free_port()
        environ = base_environ()
        environ.update({
            "STABILIZER_ENV": "test",
            "SESSION_SECRET": SECRET,
            "SQLITE_PATH": str(tmp_path / "sessions.sqlite3"),
            "DATABASE_URL": "",  # empty counts as unset, and python-dotenv never overrides it
            "SUPABASE_URL": "",
            "WUZAPI_BASE_URL": fake.url,
            "WUZAPI_ADMIN_TOKEN": ADMIN_TOKEN,
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
            "LOG_LEVEL": "info",
        })
        server = GunicornProcess(environ, port, tmp_path)
        server.start()
        yield Site(fake, server)
    finally:
        if server is not None:
            server.stop()
        fake.stop()


@pytest.fixture
def browser_page(tmp_path):
    """A Chromium page with a fresh profile, in Brazilian Portuguese like the service's first users."""
    require_browser()
    from playwright.sync_api import sync_playwright

    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport=VIEWPORT, locale="pt-BR",
        )
        context.set_default_timeout(STEP_TIMEOUT_MS)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def screenshot(tmp_path, browser_page):
    """Save a full-page PNG under tmp_path/screenshots; copy the docs ones into STABILIZER_SCREENSHOT_DIR."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    extra = os.environ.get("STABILIZER_SCREENSHOT_DIR")

    def take(name: str, for_docs: bool = False) -> Path:
        path = folder / f"{name}.png"
        browser_page.screenshot(path=str(path), full_page=True)
        if extra and for_docs:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(extra) / path.name)
        return path

    return take


def log_in(page, site: Site, token: str, role_label: str) -> None:
    page.goto(site.url + "/login")
    page.fill("#token", token)
    page.get_by_label(role_label).check()
    page.get_by_role("button", name="Entrar").click()
    page.wait_for_load_state()


def test_user_links_whatsapp_and_sends_message(site, browser_page, screenshot):
    page = browser_page

    # a page that needs login sends the browser to the login page and back
    page.goto(site.url + "/")
    assert page.url == site.url + "/login?next=/"
    assert page.locator("html").get_attribute("lang") == "pt-BR"
    screenshot("login", for_docs=True)
    page.fill("#token", USER_TOKEN)
    page.get_by_role("button", name="Entrar").click()
    page.wait_for_url(site.url + "/")
    assert page.locator("h1").inner_text() == "Conexão com o WhatsApp"

    # connect: the QR code appears while WUZAPI waits for a scan
    page.get_by_role("button", name="Conectar").click()
    qr_code = page.locator("#qr-code")
    qr_code.wait_for()
    assert qr_code.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("document.getElementById('qr-code').naturalWidth") > 0
    screenshot("dashboard-qr", for_docs=True)

    # the phone scans it; the page reloads by itself and shows the linked number
    jid = site.pair()
    page.locator("#state-jid code").wait_for(timeout=PAIRED_TIMEOUT_MS)
    assert page.locator("#state-jid code").inner_text() == jid
    assert page.locator("#qr-code").count() == 0
    screenshot("dashboard-linked", for_docs=True)

    # a test message shows the Id the gateway gave it
    page.fill("#phone", "+55 11 98888-7777")
    page.fill("#body", "Mensagem de teste do Stabilizer")
    page.get_by_role("button", name="Enviar", exact=True).click()
    message_id = page.locator(".notice.success .message-id").inner_text()
    assert MESSAGE_ID.match(message_id)
    sends = site.wuzapi_requests("/chat/send/text")
    assert [send["body"]["Id"] for send in sends] == [message_id]
    screenshot("dashboard-message-sent")

    # log out: back to the login page, and the dashboard needs a login again
    page.get_by_role("button", name="Sair", exact=True).click()
    page.wait_for_url(site.url + "/login")
    assert page.locator(".notice.info").inner_text().strip() == "Você saiu."
    page.goto(site.url + "/")
    assert page.url.startswith(site.url + "/login")


def test_admin_creates_and_deletes_user(site, browser_page, screenshot):
    page = browser_page
    log_in(page, site, ADMIN_TOKEN, "Administrador")
    page.wait_for_url(site.url + "/admin/users")
    rows = page.locator("#users tbody tr")
    assert rows.count() == 1
    assert "alice" in rows.first.inner_text()

    page.fill("#name", "carol")
    page.fill("#new-token", "carol-token-0123456789")
    page.get_by_role("button", name="Criar usuário").click()
    page.wait_for_url(site.url + "/admin/users")
    assert "Usuário carol criado." in page.locator(".notice.success").inner_text()
    assert rows.count() == 2
    assert "carol-token-0123456789" not in page.content()
    screenshot("admin-users", for_docs=True)

    page.get_by_role("link", name="Excluir carol").click()
    assert page.locator("h1").inner_text() == "Excluir usuário"
    screenshot("admin-delete-confirm")
    page.get_by_role("button", name="Excluir usuário").click()
    page.wait_for_url(site.url + "/admin/users")
    assert rows.count() == 1
    assert "carol" not in page.locator("#users").inner_text()


def test_wrong_token_error_in_portuguese_then_english(site, browser_page, screenshot):
    page = browser_page
    page.goto(site.url + "/login")
    page.fill("#token", "not-a-valid-token")
    page.get_by_role("button", name="Entrar").click()
    assert page.locator("#login-error").inner_text() == "O token não foi aceito pelo WUZAPI."
    screenshot("login-error-pt")

    page.get_by_role("button", name="English").click()
    page.wait_for_url(site.url + "/login")
    assert page.locator("html").get_attribute("lang") == "en"
    page.fill("#token", "not-a-valid-token")
    page.get_by_role("button", name="Log in").click()
    assert page.locator("#login-error").inner_text() == "The token was not accepted by WUZAPI."
    screenshot("login-error-en")


def test_form_without_csrf_token_is_rejected(site, browser_page, screenshot):
    page = browser_page
    page.goto(site.url + "/login")
    page.locator("form.stack input[name=csrf_token]").evaluate("input => input.remove()")
    page.fill("#token", USER_TOKEN)
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name="Entrar").click()
    assert posted.value.status == 400
    page.wait_for_load_state()
    assert "Este formulário expirou" in page.locator("#error-message").inner_text()
    screenshot("csrf-rejected")


def test_status_page_shows_health_and_chart(site, browser_page, screenshot):
    page = browser_page
    log_in(page, site, USER_TOKEN, "Usuário do WUZAPI")
    page.goto(site.url + "/status")
    assert page.locator("#store .badge").inner_text() == "Disponível"
    assert page.locator("#circuit .badge").inner_text() == "Fechado"
    assert page.locator("svg.chart rect.chart-bar").count() >= 1
    assert page.locator("#outcomes tr").count() == 5
    screenshot("status", for_docs=True)
