"""Stabilizer: a gateway in front of WUZAPI with sessions that survive restarts."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, g, request

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
    from . import errors, i18n, logs
    from .config import load_settings
    from .db import open_database
    from .sessions import Pruner
    from .sessions import init_app as init_sessions
    from .views import auth, gateway, health
    from .views import metrics as metrics_views
    from .views.health import StoreProbe
    from .wuzapi import build_client

    app = Flask(__name__, instance_path=str(Path(instance_path or "instance").resolve()),
                instance_relative_config=True)
    settings = settings or load_settings(instance_path=app.instance_path)
    app.config.from_mapping(settings.to_flask())

    # logging first, so every later step can report problems
    if configure_logging:
        logs.configure(settings.log_level, settings.log_format)
    logs.register_secret(settings.wuzapi_admin_token)
    logs.register_secret(settings.secret_key)

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

    runtime = Runtime(
        settings=settings, database=database, session_interface=interface, secrets=interface.secrets,
        client=client, breaker=breaker, metrics=metrics,
        pruner=Pruner(database, settings.session_prune_interval), store_probe=StoreProbe(database.ping),
    )
    app.extensions["stabilizer"] = runtime

    # request ids on every request and response
    app.before_request(_start_request)
    app.after_request(_finish_request)

    # blueprints and the auth rule of each
    app.register_blueprint(auth.bp)      # public: login, logout, status
    app.register_blueprint(gateway.bp)   # session or pass-through Token/Authorization
    app.register_blueprint(health.bp)    # public, no secrets
    app.register_blueprint(metrics_views.bp)  # public, counters only

    from .cli import register as register_cli
    register_cli(app)

    if background:
        runtime.start_background()
    return app


def _start_request() -> None:
    from .logs import new_request_id

    g.request_id = new_request_id(request.headers.get("X-Request-ID"))
    g.started = time.monotonic()


def _finish_request(response):
    request_id = getattr(g, "request_id", None)
    if request_id:
        response.headers["X-Request-ID"] = request_id
    started = getattr(g, "started", None)
    if started is not None and request.path != "/health/live":
        logging.getLogger("stabilizer.access").info(
            "%s %s %d", request.method, request.path, response.status_code,
            extra={"method": request.method, "path": request.path, "status": response.status_code,
                   "duration_ms": round((time.monotonic() - started) * 1000, 1)},
        )
    return response
