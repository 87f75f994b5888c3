"""The dashboard: the WhatsApp link of the logged-in WUZAPI user, and a test message."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from flask import g, redirect, session, url_for
from flask_babel import gettext

from ..errors import ApiError
from ..views.gateway import ensure_message_id
from .common import (
    bp,
    call_wuzapi,
    envelope,
    login_required,
    notify,
    problem_text,
    render_page,
    wuzapi_error_text,
)
from .forms import SendMessageForm

logger = logging.getLogger(__name__)

QR_REFRESH_SECONDS = 5  # WhatsApp replaces the QR code about every 20 s; the page reloads meanwhile
QR_DATA_URL = re.compile(r"^data:image/png;base64,[A-Za-z0-9+/=]+$")
SEND_TEXT = "/chat/send/text"
LOGIN_ENDED_CODES = {"session_corrupted", "not_authenticated"}


class LoginEnded(Exception):
    """WUZAPI no longer accepts the session's token, or the session cannot be read: log in again."""


@dataclass(frozen=True)
class LinkState:
    """The WhatsApp link of one WUZAPI user, from ``GET /session/status``."""

    connected: bool
    logged_in: bool
    jid: str
    name: str

    @property
    def waiting_for_scan(self) -> bool:
        return self.connected and not self.logged_in


def parse_link_state(data: dict[str, Any]) -> LinkState:
    """Read both spellings: ``connected``/``loggedIn`` (current WUZAPI) and ``Connected``/``LoggedIn`` (older)."""

    def flag(*names: str) -> bool:
        return any(bool(data.get(name)) for name in names)

    return LinkState(
        connected=flag("connected", "Connected"),
        logged_in=flag("loggedIn", "LoggedIn"),
        jid=str(data.get("jid") or data.get("JID") or ""),
        name=str(data.get("name") or data.get("Name") or ""),
    )


def _call(method: str, path: str, **kwargs: Any):
    """Call WUZAPI; raise LoginEnded when the session's token no longer works."""
    try:
        upstream = call_wuzapi(method, path, **kwargs)
    except ApiError as error:
        if error.code in LOGIN_ENDED_CODES:
            raise LoginEnded from error
        raise
    if upstream.status == 401:
        raise LoginEnded
    return upstream


def read_link_state() -> tuple[LinkState | None, str | None]:
    """Return (state, None), or (None, a sentence saying why the state is unknown)."""
    try:
        upstream = _call("GET", "/session/status")
    except ApiError as error:
        return None, problem_text(error)
    if upstream.status != 200:
        return None, wuzapi_error_text(upstream)
    data = envelope(upstream).get("data")
    if not isinstance(data, dict):
        return None, gettext("WUZAPI returned no link state.")
    return parse_link_state(data), None


def read_qr_code() -> tuple[str | None, str | None]:
    """Return (PNG data URL, None), (None, None) while WUZAPI has no code yet, or (None, error)."""
    try:
        upstream = _call("GET", "/session/qr")
    except ApiError as error:
        return None, problem_text(error)
    if upstream.status != 200:
        return None, wuzapi_error_text(upstream)
    data = envelope(upstream).get("data")
    code = data.get("QRCode") if isinstance(data, dict) else None
    if isinstance(code, str) and QR_DATA_URL.match(code):
        return code, None
    return None, None


def end_login():
    """Log out after WUZAPI rejected the token, and send the browser to the login page."""
    session.clear()
    notify("error", gettext("WUZAPI no longer accepts this login. Log in again."))
    return redirect(url_for("web.login"))


def render_dashboard(form: SendMessageForm | None = None, status: int = 200):
    state, problem = read_link_state()
    qr_code = qr_problem = None
    if state is not None and state.waiting_for_scan:
        qr_code, qr_problem = read_qr_code()
    return render_page(
        "dashboard.html", status=status, state=state, problem=problem, qr_code=qr_code, qr_problem=qr_problem,
        refresh_seconds=QR_REFRESH_SECONDS if state is not None and state.waiting_for_scan else None,
        form=form or SendMessageForm(formdata=None),
    )


@bp.get("/")
@login_required()
def home():
    if g.user.get("role") == "admin":
        return redirect(url_for("web.admin_users"))
    try:
        return render_dashboard()
    except LoginEnded:
        return end_login()


def link_action(path: str, payload: Any, done: str, *, accepted_errors: tuple[str, ...] = ()):
    """POST ``path`` to WUZAPI, keep a notice saying how it went, and go back to the dashboard.

    An enveloped error listed in ``accepted_errors`` counts as done ("already connected").
    """
    try:
        upstream = _call("POST", path, payload=payload, repeatable=False)
    except LoginEnded:
        return end_login()
    except ApiError as error:
        notify("error", problem_text(error))
        return redirect(url_for("web.home"))
    reason = envelope(upstream).get("error")
    if upstream.status == 200 or reason in accepted_errors:
        notify("success", done)
    else:
        notify("error", wuzapi_error_text(upstream))
    return redirect(url_for("web.home"))


@bp.post("/whatsapp/connect")
@login_required(role="user")
def connect():
    # Without "Immediate": true WUZAPI delays its reply by about 10 s.
    return link_action("/session/connect", {"Immediate": True},
                       gettext("Connecting to WhatsApp. Scan the QR code with the phone when it appears."),
                       accepted_errors=("already connected",))


@bp.post("/whatsapp/disconnect")
@login_required(role="user")
def disconnect():
    return link_action("/session/disconnect", None,
                       gettext("Disconnected from WhatsApp. The pairing is kept: connect again to resume."))


@bp.post("/whatsapp/logout")
@login_required(role="user")
def whatsapp_logout():
    return link_action("/session/logout", None,
                       gettext("Logged out of WhatsApp. Connecting again needs a new QR code scan."))


@bp.post("/whatsapp/test-message")
@login_required(role="user")
def send_test_message():
    """Send a text message with a gateway-chosen Id, then show that Id (or why it may not have gone)."""
    form = SendMessageForm()
    if not form.validate():
        try:
            return render_dashboard(form, status=400)
        except LoginEnded:
            return end_login()

    payload = json.dumps({"Phone": form.phone.data, "Body": form.body.data}, ensure_ascii=False).encode("utf-8")
    body, message_id = ensure_message_id(SEND_TEXT, payload)
    try:
        upstream = _call("POST", SEND_TEXT, body=body, message_id=message_id, repeatable=False)
    except LoginEnded:
        return end_login()
    except ApiError as error:
        if error.code == "outcome_unknown":
            logger.warning("test message outcome unknown", extra={"message_id": message_id})
            notify("warning", gettext("WUZAPI did not confirm the message in time, so it may have been sent. "
                                      "Look for this message Id before sending it again:"), code=message_id)
        else:
            notify("error", problem_text(error))
        return redirect(url_for("web.home"))

    if upstream.status == 200:
        data = envelope(upstream).get("data")
        sent_id = data.get("Id") if isinstance(data, dict) else None
        notify("success", gettext("Message sent. Its Id:"), code=str(sent_id or message_id))
    else:
        notify("error", wuzapi_error_text(upstream))
    return redirect(url_for("web.home"))
