"""Browser-facing protections: CSRF tokens, login rate limits and security headers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from ..db import Database
from . import ratelimit  # noqa: F401 - registers the database:// storage with the limits package

# No inline scripts or styles anywhere; the QR code is a data: PNG URL.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    "img-src 'self' data:; "
    "style-src 'self'; "
    "form-action 'self'; "
    "frame-ancestors 'none'; "
    "base-uri 'none'"
)
HSTS = "max-age=31536000"  # one year


def init_csrf(app: Flask, exempt: Iterable[Blueprint | Callable[..., Any]]) -> CSRFProtect:
    """Require a CSRF token on every POST, PUT, PATCH and DELETE outside the ``exempt`` blueprints and views.

    The JSON API blueprints are exempt: they accept state changes only as application/json,
    which a cross-site form cannot send. So is the language switch, which changes nothing
    but the language cookie.
    """
    # A CSRF token stays valid as long as the session that stores it, and login rotates both.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    csrf = CSRFProtect(app)
    for blueprint in exempt:
        csrf.exempt(blueprint)
    return csrf


def login_token_key() -> str:
    """Return the rate-limit key of the token in a login request, or "" when it has none.

    The key is a hash, so the limiter's storage (Redis, memcached) never contains a token.
    """
    if request.is_json:
        payload = request.get_json(silent=True)
        token = payload.get("token") if isinstance(payload, dict) else None
    else:
        token = request.form.get("token")
    if not isinstance(token, str) or not token:
        return ""
    return "token:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def init_limiter(app: Flask, settings: Any, login_endpoints: Iterable[str], database: Database) -> Limiter:
    """Limit login attempts per client address and per token, shared by the page and the API login.

    ``settings.login_rate_limit`` (LOGIN_RATE_LIMIT) applies to each address and to each
    token separately; None disables it. Counters live in RATELIMIT_STORAGE_URI: the
    default ``database://`` keeps them in the session ``database``, shared by every worker
    and instance; ``memory://`` counts per worker process.
    """
    # The address is the TCP peer's, or X-Forwarded-For's when TRUSTED_PROXIES is set
    # (werkzeug's ProxyFix, installed by create_app).
    # When the store is unreachable, each process counts in its own memory rather than failing logins.
    uri = settings.ratelimit_storage_uri
    options = {"database": database} if settings.ratelimit_in_database else {}
    limiter = Limiter(get_remote_address, storage_uri=uri, storage_options=options, strategy="fixed-window",
                      key_prefix="stabilizer", in_memory_fallback_enabled=True)
    limiter.init_app(app)
    app.extensions["stabilizer.limiter"] = limiter
    limited = frozenset(login_endpoints) if settings.login_rate_limit else frozenset()

    # Flask-Limiter looks for limits before every request; only the login views have one,
    # so every other request (the gateway among them) skips that lookup.
    @limiter.request_filter
    def not_a_login() -> bool:
        return request.endpoint not in limited

    if not limited:
        return limiter

    per_address = limiter.shared_limit(settings.login_rate_limit, scope="login-address", methods=["POST"])
    per_token = limiter.shared_limit(settings.login_rate_limit, scope="login-token", key_func=login_token_key,
                                     methods=["POST"], exempt_when=lambda: not login_token_key())
    # Flask-Limiter checks a decorated limit when the view is called, so the views are replaced by wrappers.
    for endpoint in limited:
        app.view_functions[endpoint] = per_token(per_address(app.view_functions[endpoint]))
    return limiter


def init_headers(app: Flask, https_only: bool) -> None:
    """Add the security headers to every response; HSTS only when cookies are Secure (HTTPS)."""

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["X-Content-Type-Options"] = "nosniff"
        # same-origin keeps the Referer that Flask-WTF checks on HTTPS form posts.
        headers["Referrer-Policy"] = "same-origin"
        headers["X-Frame-Options"] = "DENY"
        if https_only:
            headers["Strict-Transport-Security"] = HSTS
        return response
