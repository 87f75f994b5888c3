"""The one place where errors become responses, and where process-level hooks live.

Stabilizer's own errors are RFC 9457 ``application/problem+json`` documents with
``type``, ``title``, ``status``, ``detail`` (in the request's language), ``code`` (a
stable identifier) and ``request_id``. Answers from WUZAPI never pass through here.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, g, json, request
from flask_babel import gettext
from werkzeug.exceptions import HTTPException

from .db import StoreUnavailable
from .sessions.codec import SessionDataError

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def N_(message: str) -> str:
    """Mark ``message`` for extraction into the catalogs; it is translated where it is used."""
    return message


# code -> (HTTP status, detail). Details are msgids, translated per request by Flask-Babel.
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid_input": (400, N_("The request is invalid: %(reason)s")),
    "invalid_path": (400, N_("This path cannot be forwarded to WUZAPI.")),
    "invalid_credentials": (401, N_("The token was not accepted by WUZAPI.")),
    "not_authenticated": (401, N_("Log in first, or send a Token or Authorization header.")),
    "session_corrupted": (401, N_("Your session could not be read and was ended. Please log in again.")),
    "forbidden": (403, N_("This action needs an admin login.")),
    "admin_login_disabled": (403, N_("Admin login is not configured on this server.")),
    "not_found": (404, N_("Nothing exists at this address.")),
    "method_not_allowed": (405, N_("This method is not allowed here.")),
    "unsupported_media_type": (415, N_("Send the request body as application/json.")),
    "payload_too_large": (413, N_("The request body is too large.")),
    "rate_limited": (429, N_("Too many attempts. Try again in %(seconds)s seconds.")),
    "internal_error": (500, N_("An unexpected error occurred. Quote the request id when reporting it.")),
    "session_not_serializable": (500, N_("The session could not be saved.")),
    "session_too_large": (500, N_("The session grew too large to be saved.")),
    "session_store_unavailable": (503, N_("The session store is unavailable. Try again shortly.")),
    "wuzapi_unavailable": (503, N_("WUZAPI is unavailable. Try again in %(seconds)s seconds.")),
    "circuit_open": (503, N_("WUZAPI is failing, so calls are paused. Try again in %(seconds)s seconds.")),
    "wuzapi_timeout": (504, N_("WUZAPI did not answer in time.")),
    "outcome_unknown": (504, N_("WUZAPI did not confirm the call in time. It may have been carried out: "
                                "check before repeating it.")),
}


class ApiError(Exception):
    """An error with a problem code; raise it from a view to answer with that problem."""

    def __init__(self, code: str, *, headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
                 **params: Any):
        super().__init__(code)
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}
        self.params = params


def retry_after_seconds(seconds: float | None) -> int:
    """Return a Retry-After value in whole seconds, at least 1."""
    if seconds is None or seconds != seconds:
        return 1
    return max(1, math.ceil(seconds))


def problem(code: str, *, headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
            status: int | None = None, **params: Any) -> Response:
    """Build the problem+json response for ``code``."""
    default_status, template = PROBLEMS[code]
    status = status or default_status
    # Parameters given as msgids (reasons) are translated too; numbers pass through.
    translated = {key: gettext(value) if isinstance(value, str) else value for key, value in params.items()}
    detail = gettext(template, **translated)
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": getattr(g, "request_id", None),
    }
    body.update(extra or {})
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=PROBLEM_JSON)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def wants_html() -> bool:
    """Return whether the client is a browser asking for a page rather than an API client."""
    if request.path.startswith("/api/") or request.path.startswith("/health") or request.path == "/metrics":
        return False
    best = request.accept_mimetypes.best_match(["text/html", "application/json", PROBLEM_JSON])
    return best == "text/html"


def html_error_page(status: int, code: str) -> Response | None:
    """Return the page the web blueprint renders for a browser, or None for API clients."""
    renderer = current_app.extensions.get("stabilizer.error_page")
    if renderer is None or not wants_html():
        return None
    return renderer(status, code)


def handle_api_error(error: ApiError) -> Response:
    page = html_error_page(PROBLEMS[error.code][0], error.code)
    if page is not None:
        return page
    return problem(error.code, headers=error.headers, extra=error.extra, **error.params)


def handle_store_unavailable(error: StoreUnavailable) -> Response:
    logger.warning("session store unavailable: %s", error)
    page = html_error_page(503, "session_store_unavailable")
    if page is not None:
        page.headers["Retry-After"] = "5"
        return page
    return problem("session_store_unavailable", headers={"Retry-After": "5"})


def handle_http_exception(error: HTTPException) -> Response:
    codes = {400: "invalid_input", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
             415: "unsupported_media_type"}
    code = codes.get(error.code or 500)
    if code is None:
        return error.get_response()
    page = html_error_page(error.code or 500, code)
    if page is not None:
        return page
    params = {"reason": error.description or ""} if code == "invalid_input" else {}
    response = problem(code, **params)
    if error.code == 405 and getattr(error, "valid_methods", None):
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def handle_internal_error(error: Exception) -> Response:
    """Answer 500 without internals; errors Flask re-raised from save_session are mapped here too."""
    original = getattr(error, "original_exception", None) or error
    if isinstance(original, StoreUnavailable):
        return handle_store_unavailable(original)
    if isinstance(original, SessionDataError):
        return problem(original.code)
    if isinstance(original, ApiError):
        return handle_api_error(original)
    return html_error_page(500, "internal_error") or problem("internal_error")


EXPECTED = (StoreUnavailable, SessionDataError, ApiError)


def log_exception(app: Flask, exc_info: Any) -> None:
    """Log an unhandled view error once, with its traceback; expected failures log themselves."""
    error = exc_info[1]
    if isinstance(error, StoreUnavailable):
        return  # handle_store_unavailable logs one warning line
    if isinstance(error, SessionDataError):
        logger.error("session not saved for %s %s: %s", request.method, request.path, error)
        return
    logger.error("unhandled error in %s %s", request.method, request.path, exc_info=exc_info)


_hooks_installed = False
_hooks_lock = threading.Lock()


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)  # Ctrl-C at a terminal: Python's usual short report
        return
    logger.critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "unknown"
    logger.error("uncaught exception in thread %s", name,
                 exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _log_unraisable(unraisable: Any) -> None:
    """Log what Python would print as "Exception ignored in: ..." (a failing __del__ or close)."""
    exc_info = None
    if unraisable.exc_value is not None:
        exc_info = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    logger.error("%s: %r", unraisable.err_msg or "Exception ignored in", unraisable.object, exc_info=exc_info)


def install_process_hooks() -> None:
    """Install sys.excepthook, threading.excepthook and sys.unraisablehook once per process.

    Each replaces only Python's default hook: one that a test runner or a debugger put
    in place (pytest installs its own thread and unraisable hooks) is left to it.
    """
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        if sys.excepthook is sys.__excepthook__:
            sys.excepthook = _log_uncaught
        if threading.excepthook is threading.__excepthook__:
            threading.excepthook = _log_thread_exception
        if sys.unraisablehook is sys.__unraisablehook__:
            sys.unraisablehook = _log_unraisable
        _hooks_installed = True


def init_app(app: Flask) -> None:
    install_process_hooks()
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(StoreUnavailable, handle_store_unavailable)
    app.register_error_handler(SessionDataError, lambda error: problem(error.code))
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(500, handle_internal_error)
