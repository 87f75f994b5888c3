"""Stabilizer: a gateway in front of WUZAPI with sessions that survive restarts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

__version__ = "0.1.0"

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Per-process objects of one app, kept in ``app.extensions["stabilizer"]``."""

    settings: Any
    database: Any
    session_interface: Any
    secrets: Any
    client: Any
    breaker: Any
    metrics: Any
    pruner: Any
    store_probe: Any
    background_started: bool = False

    def start_background(self) -> None:
        """Start this process's background threads (after gunicorn's fork, never before)."""
        if not self.background_started:
            self.pruner.start()
            if hasattr(self.breaker, "start"):
                self.breaker.start()
            self.store_probe.start()
            self.background_started = True

    def close(self) -> None:
        """Stop background threads and close the WUZAPI client and the database pool."""
        self.pruner.stop()
        if hasattr(self.breaker, "stop"):
            self.breaker.stop()
        self.client.close()
        self.database.close()


def create_app(settings: Any = None, *, background: bool = False, instance_path: str | None = None,
               configure_logging: bool = True) -> Flask:
    """Build the app.

    ``background`` starts the pruner thread (wsgi.py does, CLI commands do not).
    ``configure_logging`` False leaves the process's logging alone (tests capture logs
    themselves).
    """
    from . import errors, i18n, logs, web
    from .config import ConfigError, load_settings
    from .db import open_database
    from .sessions import Pruner
    from .sessions import init_app as init_sessions
    from .views import auth, gateway, health
    from .views import metrics as metrics_views
    from .views.health import StoreProbe
    from .wuzapi import build_client

    app = Flask(__name__, instance_path=str(Path(instance_path or "instance").resolve()),
                instance_relative_config=True)
    if settings is None:
        if configure_logging:
            logs.configure_early()  # loading the settings may already log
        try:
            settings = load_settings(instance_path=app.instance_path)
        except ConfigError as error:
            raise SystemExit(f"stabilizer: {error}") from None  # one clear line, not a traceback
    app.config.from_mapping(settings.to_flask())
    if settings.trusted_proxies:
        # Behind N reverse proxies: take the client address and scheme from their X-Forwarded-* headers.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,  # type: ignore[method-assign]
                                x_proto=settings.trusted_proxies, x_host=settings.trusted_proxies)

    # logging first, so every later step can report problems
    if configure_logging:
        logs.configure(settings.log_level, settings.log_format)
    logs.register_secret(settings.wuzapi_admin_token)
    logs.register_secret(settings.secret_key)
    logs.init_app(app)  # request ids and access lines; its hook runs before any other

    # errors: process hooks and Flask error handlers, one place
    errors.init_app(app)
    app.log_exception = lambda exc_info: errors.log_exception(app, exc_info)  # type: ignore[method-assign]

    # languages
    i18n.init_app(app)

    # session store; SQLite creates its schema here, PostgreSQL through `flask sessions init-db`
    database = open_database(settings)
    if database.backend == "sqlite":
        database.migrate()
    interface = init_sessions(app, database, settings)

    # WUZAPI client, breaker and metrics, one of each per process
    client, breaker, metrics = build_client(settings, database)

    # The pruner also deletes expired login counters when they live in the session database.
    pruner = Pruner(database, settings.session_prune_interval, prune_counters=settings.ratelimit_in_database)
    runtime = Runtime(
        settings=settings, database=database, session_interface=interface, secrets=interface.secrets,
        client=client, breaker=breaker, metrics=metrics, pruner=pruner, store_probe=StoreProbe(database.ping),
    )
    app.extensions["stabilizer"] = runtime

    # blueprints and the auth rule of each
    app.register_blueprint(auth.bp)      # public: login, logout, status
    app.register_blueprint(gateway.bp)   # session or pass-through Token/Authorization
    app.register_blueprint(health.bp)    # public, no secrets
    app.register_blueprint(metrics_views.bp)  # public, counters only
    web.init_app(app)  # pages for people: login, dashboard, admin, status

    from .cli import register as register_cli
    register_cli(app)

    if background:
        runtime.start_background()
    return app
