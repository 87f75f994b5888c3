"""A ``limits`` storage that keeps rate-limit counters in the session database.

``RATELIMIT_STORAGE_URI=database://`` selects it. Every worker of every instance already
shares that database, so a login limit holds for the whole service without another
server. Only the fixed-window strategy is supported, the one Stabilizer uses.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from limits.storage import Storage

from ..db import Database, StoreUnavailable

SCHEME = "database"

logger = logging.getLogger(__name__)


class DatabaseStorage(Storage):
    """Counters in the ``<SESSION_TABLE>_ratelimit`` table of the session database.

    Flask-Limiter passes the database as a storage option. Errors are
    :class:`StoreUnavailable`, which Flask-Limiter answers by counting in memory until
    :meth:`check` succeeds again.
    """

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, *,
                 database: Database | None = None, **options: Any):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        if database is None:
            raise ValueError(f"the {SCHEME}:// rate-limit storage needs the session database as an option")
        self.database = database

    @property
    def base_exceptions(self) -> type[Exception]:
        return StoreUnavailable

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        try:
            return self.database.ratelimit_incr(key, expiry, amount)
        except StoreUnavailable as exc:
            # Flask-Limiter logs only that it falls back to memory; this says why.
            logger.warning("cannot count login attempts in the session database (after an upgrade,"
                           " run `flask sessions init-db`): %s", exc)
            raise

    def get(self, key: str) -> int:
        return self.database.ratelimit_get(key)[0]

    def get_expiry(self, key: str) -> float:
        expire = self.database.ratelimit_get(key)[1]
        return time.time() if expire is None else expire

    def check(self) -> bool:
        """Return whether the counter table answers (a missing table counts as down)."""
        try:
            self.database.ratelimit_get("")
        except StoreUnavailable:
            return False
        return True

    def reset(self) -> int | None:
        return self.database.ratelimit_clear()

    def clear(self, key: str) -> None:
        self.database.ratelimit_clear(key)
