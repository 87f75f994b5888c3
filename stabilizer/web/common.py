"""Pieces shared by the pages: the blueprint, the logged-in user, notices and WUZAPI calls."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale, gettext
from flask_wtf.csrf import generate_csrf

from ..db import StoreUnavailable
from ..errors import PROBLEMS, ApiError
from ..i18n import LANGUAGES
from ..views.common import current_user, runtime, session_token, wuzapi_error
from ..wuzapi.client import UpstreamResponse
from ..wuzapi.errors import WuzapiError

bp = Blueprint("web", __name__)

NOTICES_KEPT = 5  # max unread notices kept in a session
LANGUAGE_NAMES = {"pt_BR": "Português (Brasil)", "en": "English"}  # each name in its own language
NEXT_MAX_LENGTH = 2000
NEXT_FORBIDDEN = re.compile(r"[\\\x00-\x1f\x7f]")  # browsers read a backslash as a slash


@bp.after_request
def never_cache(response: Response) -> Response:
    """Keep pages out of browser and proxy caches: they show one login's live state, even after logout."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response


# --- the session, read without failing on a store outage -----------------------------------


def store_unavailable() -> bool:
    """Return whether this request already found the session store unreachable."""
    return bool(g.get("store_unavailable"))


def page_user() -> dict[str, Any] | None:
    """Return the logged-in user, or None for no login, an unreadable session or a store outage.

    The first call loads the session row.
    """
    if store_unavailable():
        return None
    try:
        return current_user()
    except ApiError:
        return None  # session_corrupted: the session interface has already deleted the row
    except StoreUnavailable:
        g.store_unavailable = True
        return None


def csrf_token_value() -> str:
    """Return the CSRF token for a form, or "" when the session store cannot hold one."""
    if store_unavailable():
        return ""
    try:
        return generate_csrf()
    except StoreUnavailable:
        g.store_unavailable = True
        return ""


def notify(kind: str, text: str, code: str | None = None) -> None:
    """Keep a notice for the next page; ``code`` is shown apart, in monospace (a message Id)."""
    notices = session.get("notices")
    if not isinstance(notices, list):
        notices = []
    notice: dict[str, str] = {"kind": kind, "text": str(text)}  # str(): never a lazy string in the session
    if code:
        notice["code"] = str(code)
    notices.append(notice)
    session["notices"] = notices[-NOTICES_KEPT:]


def pop_notices() -> list[dict[str, str]]:
    """Return and forget the notices kept for this page."""
    if store_unavailable():
        return []
    try:
        if "notices" not in session:  # pop() would mark the session modified even without the key
            return []
        notices = session.pop("notices")
    except StoreUnavailable:
        g.store_unavailable = True
        return []
    if not isinstance(notices, list):
        return []
    return [notice for notice in notices if isinstance(notice, dict)]


# --- navigation --------------------------------------------------------------------------


def safe_next(value: str | None) -> str | None:
    """Return ``value`` when it is a same-site relative path such as ``/admin/users?x=1``, else None."""
    if not value or len(value) > NEXT_MAX_LENGTH or NEXT_FORBIDDEN.search(value):
        return None
    if not value.startswith("/") or value.startswith("//"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def home_url(user: dict[str, Any] | None) -> str:
    if user and user.get("role") == "admin":
        return url_for("web.admin_users")
    return url_for("web.home")


def login_redirect() -> Response:
    """Send the browser to the login page, remembering where it was going (GET requests only)."""
    target = None
    if request.method == "GET":
        target = request.full_path if request.query_string else request.path
    return redirect(url_for("web.login", next=target) if target else url_for("web.login"))


def login_required(role: str | None = None) -> Callable:
    """Decorate a page view: no login redirects to /login, a user session on an admin page gets 403.

    The view finds the user in ``g.user``.
    """

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any):
            user = page_user()
            if store_unavailable():
                raise StoreUnavailable("session store unavailable while reading the login")
            if user is None:
                return login_redirect()
            if role is not None and user.get("role") != role:
                from .errors import render_error

                return render_error(403, "forbidden")
            g.user = user
            return view(*args, **kwargs)

        return guarded

    return decorate


# --- rendering ---------------------------------------------------------------------------


def current_page_path() -> str:
    """Return the path to come back to after a language switch: this page, if a GET can reach it."""
    if request.method == "GET":
        return request.full_path.rstrip("?")
    rule = request.url_rule
    if rule is not None and rule.methods and "GET" in rule.methods:
        return request.path
    return ""


def render_page(template: str, *, status: int = 200, headers: dict[str, str] | None = None,
                **context: Any) -> Response:
    """Render a page with what every page shows: the user, the notices, the language switch."""
    user = page_user()
    response = make_response(render_template(
        template,
        user=user,
        notices=pop_notices(),
        languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        current_language=str(get_locale() or ""),
        current_page=current_page_path(),
        store_unavailable=store_unavailable(),
        **context,
    ), status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_text(error: ApiError) -> str:
    """Return the translated detail of a problem code, as the problem+json body would give it."""
    template = PROBLEMS[error.code][1]
    params = {key: gettext(value) if isinstance(value, str) else value for key, value in error.params.items()}
    return gettext(template, **params)


def problem_status(error: ApiError) -> int:
    return PROBLEMS[error.code][0]


# --- WUZAPI ------------------------------------------------------------------------------


def call_wuzapi(method: str, path: str, *, payload: Any = None, body: bytes | None = None, admin: bool = False,
                message_id: str | None = None, repeatable: bool = True) -> UpstreamResponse:
    """Call WUZAPI with the session's token and return its response (4xx and enveloped 500s included).

    Raise ApiError when WUZAPI sent no response: WUZAPI unavailable, the circuit open, or an
    unknown outcome for a call with side effects.
    """
    token = session_token()
    if token is None:
        raise ApiError("not_authenticated")
    headers = {"Authorization": token} if admin else {"Token": token}
    headers["X-Request-ID"] = g.request_id
    if payload is not None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        return runtime().client.call(method, path, body=body, headers=headers)
    except WuzapiError as exc:
        raise wuzapi_error(exc, message_id=message_id, repeatable=repeatable) from exc


def envelope(upstream: UpstreamResponse) -> dict[str, Any]:
    """Return WUZAPI's JSON envelope, or {} when the body is not a JSON object."""
    try:
        data = upstream.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def wuzapi_error_text(upstream: UpstreamResponse) -> str:
    """Return a sentence for a WUZAPI response that is not a success, with WUZAPI's own error text."""
    body = envelope(upstream)
    reason = body.get("error") or body.get("details") or body.get("message")
    if isinstance(reason, str) and reason:
        return gettext("WUZAPI returned HTTP %(status)s: %(reason)s", status=upstream.status, reason=reason)
    return gettext("WUZAPI returned HTTP %(status)s.", status=upstream.status)
