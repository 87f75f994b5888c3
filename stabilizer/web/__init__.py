"""Server-rendered pages for people: login, the WhatsApp link dashboard, WUZAPI users and status.

``init_app`` registers the ``web`` blueprint with the protections pages need: CSRF
tokens on every form, login rate limits (also on ``POST /api/auth/login``), security
headers on every response, and the error pages stabilizer.errors renders for browsers.
"""

from __future__ import annotations

from flask import Flask

from . import admin, dashboard, errors, login, security, status  # noqa: F401 - each module adds its routes to the blueprint
from .common import bp, csrf_token_value

LOGIN_ENDPOINTS = ("auth.login", "web.login")


def init_app(app: Flask) -> None:
    """Register the pages; call after the API blueprints, whose login view gets rate limited too."""
    from ..views import auth, gateway, health

    runtime = app.extensions["stabilizer"]
    settings = runtime.settings
    app.register_blueprint(bp)
    app.add_template_global(csrf_token_value)

    security.init_csrf(app, exempt=(auth.bp, gateway.bp, health.bp, login.language))
    security.init_limiter(app, settings, LOGIN_ENDPOINTS, runtime.database)
    security.init_headers(app, https_only=settings.cookie_secure)
    errors.init_app(app)
