"""Languages: Brazilian Portuguese by default, English on request.

The language is, in order: an explicit choice remembered in an already-loaded session,
the ``lang`` query parameter, then the best match for ``Accept-Language``. The
selector never reads the session row itself, so choosing a language costs no query
(and still works while the session store is down).
"""

from __future__ import annotations

from flask import Flask, request, session
from flask_babel import Babel

LANGUAGES = ("pt_BR", "en")
DEFAULT = "pt_BR"

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
    loaded = getattr(session, "loaded", False)
    if loaded:
        chosen = normalise(dict.get(session._get_current_object(), "lang"))
        if chosen:
            return chosen
    chosen = normalise(request.args.get("lang"))
    if chosen:
        return chosen
    best = request.accept_languages.best_match(["pt-BR", "pt", "en"], default=None)
    return normalise(best) or DEFAULT


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", "translations")
    babel.init_app(app, locale_selector=select_locale)
