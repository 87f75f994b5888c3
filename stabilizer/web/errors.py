"""Error pages for browsers: 4xx and 5xx pages, the session store down, CSRF failures, too many logins.

API clients keep getting problem+json from stabilizer.errors. These handlers return a
page only when the request comes from a browser (``wants_html``) or from a page route.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, current_app, g, request
from flask_babel import gettext
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError

from .. import errors
from ..db import StoreUnavailable
from ..errors import N_, PROBLEMS, ApiError, retry_after_seconds
from .common import bp, problem_text, render_page, safe_next
from .forms import LoginForm
from .login import STORE_RETRY_AFTER, render_login, store_unavailable_login

logger = logging.getLogger(__name__)

LOGIN_ENDPOINT = "web.login"


def page_title(status: int) -> str:
    titles = {
        400: gettext("Bad request"),
        403: gettext("Access denied"),
        404: gettext("Page not found"),
        405: gettext("Method not allowed"),
        413: gettext("Request too large"),
        415: gettext("Unsupported request"),
        429: gettext("Too many requests"),
        500: gettext("Internal error"),
        503: gettext("Service unavailable"),
        504: gettext("Timed out"),
    }
    return titles.get(status, gettext("Error"))


def page_message(status: int, code: str) -> str:
    """Return the problem's detail when it needs no parameters, else a general sentence for ``status``."""
    template = PROBLEMS.get(code, (status, ""))[1]
    if template and "%(" not in template:
        return gettext(template)
    if status == 400:
        return gettext("The request could not be processed. Go back, reload the page and try again.")
    if status == 429:
        return gettext("Too many attempts. Wait a moment and try again.")
    if status in (502, 503, 504):
        return gettext("A service this page needs is unavailable. Try again shortly.")
    return gettext("Something went wrong.")


def render_error(status: int, code: str, *, message: str | None = None,
                 headers: dict[str, str] | None = None) -> Response:
    """Render the error page for ``status``; ``code`` is the problem code of stabilizer.errors.

    The page is never cached, like every page, even for addresses outside the blueprint.
    """
    response = render_page("error.html", status=status, headers=headers, title=page_title(status),
                           message=message or page_message(status, code), request_id=g.get("request_id"))
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def error_page(status: int, code: str, message: str | None = None,
               headers: dict[str, str] | None = None) -> Response | None:
    """Render the error page, or return None so that the caller sends problem+json instead.

    stabilizer.errors calls this for browsers, as ``app.extensions["stabilizer.error_page"]``.
    """
    try:
        return render_error(status, code, message=message, headers=headers)
    except Exception:
        logger.exception("error page %d (%s) could not be rendered", status, code)
        return None


def store_unavailable_page(error: StoreUnavailable) -> Response:
    """Return the 503 page, with Retry-After, for a page whose session could not be read or written."""
    logger.warning("session store unavailable: %s", error)
    g.store_unavailable = True
    if request.endpoint == LOGIN_ENDPOINT:
        return store_unavailable_login(safe_next(request.values.get("next")))
    return render_error(503, "session_store_unavailable", headers={"Retry-After": STORE_RETRY_AFTER})


@bp.errorhandler(StoreUnavailable)
def page_store_unavailable(error: StoreUnavailable) -> Response:
    return store_unavailable_page(error)


@bp.errorhandler(500)
def page_internal_error(error: Exception) -> Response:
    """Errors raised while Flask saves the session arrive here, wrapped in InternalServerError."""
    original = getattr(error, "original_exception", None)
    if isinstance(original, StoreUnavailable):
        return store_unavailable_page(original)
    return errors.handle_internal_error(error)


def csrf_failed(error: CSRFError) -> Response:
    logger.info("CSRF check failed on %s %s: %s", request.method, request.path, error.description)
    if errors.wants_html() or request.blueprint == bp.name:
        page = error_page(400, "invalid_input", gettext(
            "This form has expired or did not come from this site. Reload the page and send it again."))
        if page is not None:
            return page
    return errors.problem("invalid_input", reason=N_("the CSRF token is missing or invalid"))


def rate_limited(error: RateLimitExceeded) -> Response:
    """Return 429 with Retry-After: the login page with the error inline, or problem+json for the API."""
    limiter = current_app.extensions["stabilizer.limiter"]
    current = limiter.current_limit
    # window[0] is when the breached window resets (RequestLimit.reset_at adds a second to it).
    seconds = retry_after_seconds(current.window[0] - time.time() if current is not None else None)
    headers = {"Retry-After": str(seconds)}
    problem = ApiError("rate_limited", headers=headers, seconds=seconds)
    if request.endpoint == LOGIN_ENDPOINT:
        return render_login(LoginForm(), safe_next(request.values.get("next")), error=problem_text(problem),
                            status=429, headers=headers)
    if errors.wants_html():
        page = error_page(429, "rate_limited", problem_text(problem), headers)
        if page is not None:
            return page
    return errors.problem("rate_limited", headers=headers, seconds=seconds)



def init_app(app: Flask) -> None:
    app.extensions["stabilizer.error_page"] = error_page
    app.register_error_handler(CSRFError, csrf_failed)
    app.register_error_handler(RateLimitExceeded, rate_limited)
