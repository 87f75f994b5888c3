"""Languages: Brazilian Portuguese by default, English on request.

The language is, in order:

1. the choice made with the language switch, kept in the ``stabilizer.lang`` cookie;
2. the ``lang`` query parameter;
3. the best match for ``Accept-Language``.

The choice lives in its own cookie, not in the session. So it applies to every answer,
error pages and API errors included, and costs no query. It also works while the
session store is down, and an anonymous visitor needs no session row for it.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request
from flask_babel import Babel

LANGUAGES = ("pt_BR", "en")
DEFAULT = "pt_BR"
LANGUAGE_COOKIE = "stabilizer.lang"
LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600  # seconds

babel = Babel()


def normalise(value: str | None) -> str | None:
    """Map ``en``, ``en-US``, ``pt``, ``pt-br`` … onto a supported locale, or None."""
    if not value:
        return None
    lowered = value.strip().replace("-", "_").lower()
    if lowered.startswith("pt"):
        return "pt_BR"
    if lowered.startswith("en"):
        return "en"
    return None


def select_locale() -> str:
    chosen = normalise(request.cookies.get(LANGUAGE_COOKIE)) or normalise(request.args.get("lang"))
    if chosen:
        return chosen
    best = request.accept_languages.best_match(["pt-BR", "pt", "en"], default=None)
    return normalise(best) or DEFAULT


def remember_language(response: Response, language: str) -> None:
    """Set the language cookie, with the session cookie's Secure, SameSite and Domain."""
    config = current_app.config
    response.set_cookie(LANGUAGE_COOKIE, language, max_age=LANGUAGE_COOKIE_MAX_AGE, httponly=True,
                        secure=config["SESSION_COOKIE_SECURE"], samesite=config["SESSION_COOKIE_SAMESITE"],
                        domain=config["SESSION_COOKIE_DOMAIN"] or None)


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", "translations")
    babel.init_app(app, locale_selector=select_locale)
