"""Login, logout and the language switch."""

from __future__ import annotations

import logging

from flask import abort, current_app, g, redirect, request, session, url_for
from flask_babel import gettext

from ..db import StoreUnavailable
from ..errors import ApiError
from ..i18n import LANGUAGES, remember_language
from ..views.auth import parse_login, start_session, verify_token
from ..views.common import runtime
from .common import (
    bp,
    home_url,
    notify,
    page_user,
    problem_status,
    problem_text,
    render_page,
    safe_next,
    store_unavailable,
)
from .forms import LoginForm

logger = logging.getLogger(__name__)

STORE_RETRY_AFTER = "5"  # seconds, the same Retry-After the API sends with session_store_unavailable


def save_session_now(response) -> None:
    """Write the session before the view returns, so a store failure can still be shown in the page.

    The session interface attempts one save per request, so Flask's own save after the
    view does nothing more.
    """
    current_app.session_interface.save_session(current_app, session._get_current_object(), response)


def render_login(form: LoginForm, next_path: str | None, *, error: str | None = None, status: int = 200,
                 headers: dict[str, str] | None = None):
    return render_page("login.html", form=form, next_path=next_path, error=error, status=status, headers=headers)


def store_unavailable_login(next_path: str | None):
    """Render the login page with the session-store error (the store failed before or during login)."""
    g.store_unavailable = True
    error = ApiError("session_store_unavailable")
    return render_login(LoginForm(formdata=None), next_path, error=problem_text(error), status=503,
                        headers={"Retry-After": STORE_RETRY_AFTER})


@bp.route("/login", methods=["GET", "POST"])
def login():
    next_path = safe_next(request.values.get("next"))
    form = LoginForm()
    if request.method == "GET":
        user = page_user()
        if store_unavailable():
            return store_unavailable_login(next_path)
        if user is not None:
            return redirect(next_path or home_url(user))
        return render_login(form, next_path)

    if not form.validate():
        return render_login(form, next_path, status=400)
    try:
        token, role = parse_login({"token": form.token.data, "role": form.role.data})
        user = verify_token(token, role)
        start_session(user, token)
        response = redirect(next_path or home_url(user))
        save_session_now(response)
    except ApiError as error:
        return render_login(form, next_path, error=problem_text(error), status=problem_status(error),
                            headers={name: value for name, value in error.headers.items() if name == "Retry-After"})
    except StoreUnavailable:
        logger.warning("page login failed: session store unavailable")
        return store_unavailable_login(next_path)
    logger.info("page login succeeded", extra={"user": user["id"][:12], "role": role})
    return response


@bp.post("/logout")
def logout():
    """End the login. The logged-out notice lives in a session with a new id; the old row is deleted."""
    user = page_user()
    session.clear()
    notify("info", gettext("You are logged out."))
    runtime().session_interface.regenerate(session)
    if user is not None:
        logger.info("page logout", extra={"user": str(user.get("id", ""))[:12]})
    return redirect(url_for("web.login"))


@bp.post("/language")
def language():
    """Remember the chosen language in its own cookie and go back to the page.

    The form carries no CSRF token, so switching the language needs no session: the
    worst a forged request can do is change the language of the pages.
    """
    chosen = request.form.get("lang")
    if chosen not in LANGUAGES:
        abort(400)
    response = redirect(safe_next(request.form.get("next")) or url_for("web.home"))
    remember_language(response, str(chosen))
    return response
