"""Server-side sessions: the SQL session interface, its stores and the background pruner."""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from flask import Flask

from ..db import Database, StoreUnavailable
from .interface import LazySession, SqlSessionInterface
from .keys import SessionSecrets

logger = logging.getLogger(__name__)

__all__ = ["LazySession", "SqlSessionInterface", "SessionSecrets", "Pruner", "init_app"]

ERROR_PAUSE_SECONDS = 5.0
BATCH_PAUSE_SECONDS = 0.1  # between prune batches, so requests' writes are not starved
BATCH_SIZE = 500  # rows per prune statement: short enough not to stall logins


class Pruner:
    """Background thread that deletes expired rows every ``interval`` seconds (±50 %).

    One per worker process; the store's lock lets only one pruner of the cluster work
    at a time. Errors are logged and the loop goes on after a pause. ``interval`` 0
    means the thread is never started.
    """

    def __init__(self, database: Database, interval: float, *, check_connections: bool = True,
                 prune_counters: bool = True):
        self.database = database
        self.interval = interval
        self.check_connections = check_connections
        self.prune_counters = prune_counters  # login rate-limit counters live in this database
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="session-pruner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval * random.uniform(0.5, 1.5)):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - logged; the next run may succeed
                logger.exception("session pruning failed; retrying in %.0f s", ERROR_PAUSE_SECONDS)
                self._stop.wait(ERROR_PAUSE_SECONDS)

    def run_once(self) -> Any:
        if self.check_connections:
            self.database.check_connections()
        result = self.database.prune(batch_size=BATCH_SIZE, max_batches=4000, pause=BATCH_PAUSE_SECONDS)
        self.runs += 1
        if result.deleted:
            logger.info("pruned %d expired sessions in %d batches", result.deleted, result.batches)
        if self.prune_counters:
            try:
                counters = self.database.ratelimit_prune()
            except StoreUnavailable as exc:
                # The sessions are pruned; the counters wait for `flask sessions init-db` or the database.
                logger.warning("could not prune login rate-limit counters: %s", exc)
            else:
                if counters:
                    logger.debug("pruned %d expired rate-limit counters", counters)
        return result


def init_app(app: Flask, database: Database, settings: Any) -> SqlSessionInterface:
    secrets = SessionSecrets(settings.secret_key, settings.secret_fallbacks)
    interface = SqlSessionInterface(
        app, database, secrets,
        lifetime=settings.session_lifetime, absolute_lifetime=settings.session_absolute_lifetime,
        touch_interval=settings.session_touch_interval, max_bytes=settings.session_max_bytes,
    )
    app.session_interface = interface
    return interface
