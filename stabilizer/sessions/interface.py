"""Server-side sessions in SQL, on Flask-Session's session interface.

NOTE: this subclasses ``flask_session.base.ServerSideSessionInterface`` 0.8.0 and
replaces its ``open_session``/``save_session``; the backend hooks it implements are
private API of that exact version, which requirements.txt pins.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from flask import Flask, Request, Response
from flask_session.base import ServerSideSession, ServerSideSessionInterface
from werkzeug.datastructures import CallbackDict

from ..db import Database
from . import codec
from .keys import SessionSecrets, hash_session_id, new_session_id

logger = logging.getLogger(__name__)

LOGGED_IN_FIELDS = ("id", "role")
ANONYMOUS_LIFETIME = 3600  # seconds an anonymous session lives without use


class LazySession(ServerSideSession):
    """A session whose row is read the first time a view touches it.

    ``loader`` returns the stored data (or None for no session) and may raise
    ``StoreUnavailable``; it runs at most once. Until then the session costs no query.
    """

    def __init__(self, sid: str, loader: Callable[[], dict[str, Any] | None] | None = None,
                 cookie_sid: str | None = None):
        super().__init__(None, sid=sid)
        self._loader = loader
        self.cookie_sid = cookie_sid  # the id the request's cookie carried, if validly signed
        self.stored = False           # a row for ``sid`` existed when it was read
        self.seconds_left: float | None = None
        self.corrupted = False
        self.previous_sid: str | None = None
        self.rotated = False
        self.save_attempted = False

    @property
    def loaded(self) -> bool:
        return self._loader is None

    def ensure_loaded(self) -> None:
        loader = self._loader
        if loader is None:
            return
        data = loader()
        self._loader = None
        if data:
            dict.update(self, data)

    def _wrap(name: str):  # noqa: N805 - helper evaluated in the class body
        method = getattr(ServerSideSession, name)

        def loading(self, *args, **kwargs):
            self.ensure_loaded()
            return method(self, *args, **kwargs)

        loading.__name__ = name
        return loading

    for _name in ("__getitem__", "__setitem__", "__delitem__", "__contains__", "__iter__", "__len__",
                  "__bool__", "__eq__", "get", "setdefault", "pop", "popitem", "update", "clear",
                  "keys", "values", "items", "copy"):
        locals()[_name] = _wrap(_name)
    del _name, _wrap

    __hash__ = None  # type: ignore[assignment]

    def clear(self) -> None:
        """Remove every key; unlike the base class, no ``_permanent`` marker is kept."""
        self.ensure_loaded()
        CallbackDict.clear(self)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        return f"<LazySession {state} keys={list(dict.keys(self))}>"


class SqlSessionInterface(ServerSideSessionInterface):
    """Sessions stored in the PostgreSQL or SQLite table behind ``database``.

    Contract, per request:
    - ``open_session`` never touches the database; the row is read (one statement)
      the first time the view uses ``flask.session``.
    - A row is written only when the session was modified, its id rotated, or its
      idle expiry is due for a touch (less than ``lifetime - touch_interval`` left).
    - A session read from a row is only ever UPDATEd: if the row vanished meanwhile
      (logout, revoke, prune), the write is dropped rather than re-inserting it.
    - Several requests may share one session concurrently; each writes the whole
      session, so the last writer wins.
    - A database failure propagates as ``StoreUnavailable`` and the cookie is left
      untouched. A stored row that cannot be decoded is deleted and treated as no session.
    """

    session_class = LazySession
    ttl = True  # expiry is handled in SQL; the base class registers no cleanup of its own

    def __init__(self, app: Flask, database: Database, secrets: SessionSecrets, *, lifetime: int,
                 absolute_lifetime: int, touch_interval: int, max_bytes: int):
        super().__init__(app, key_prefix="", use_signer=False, permanent=True, sid_length=32)
        self.serializer = None  # the base class's msgpack/pickle serializer is never used
        self.database = database
        self.secrets = secrets
        self.lifetime = lifetime
        self.absolute_lifetime = absolute_lifetime
        self.touch_interval = touch_interval
        self.max_bytes = max_bytes

    # Flask-Session backend hooks, implemented on the SQL store.

    def _retrieve_session_data(self, store_id: str) -> dict | None:
        row = self.database.session_get(hash_session_id(store_id))
        return codec.decode(row.data) if row else None

    def _delete_session(self, store_id: str) -> None:
        self.database.session_delete(hash_session_id(store_id))

    def _upsert_session(self, session_lifetime: Any, session: ServerSideSession, store_id: str) -> None:
        raise NotImplementedError("save_session writes through insert, update or rotate")

    def _delete_expired_sessions(self) -> None:
        self.database.prune()

    # Security API

    def regenerate(self, session: LazySession) -> None:
        """Give the session a new id at the next save and delete the old row, whatever it holds.

        Unlike the base class, this also rotates an empty or just-cleared session, so a
        planted id never survives a login.
        """
        if session.previous_sid is None:
            session.previous_sid = session.cookie_sid
        session.sid = new_session_id()
        session.rotated = True
        session.modified = True

    # Flask session interface

    def open_session(self, app: Flask, request: Request) -> LazySession:
        cookie = request.cookies.get(self.get_cookie_name(app))
        sid = self.secrets.unsign(cookie) if cookie else None
        if sid is None:
            return LazySession(new_session_id())

        session = LazySession(sid, cookie_sid=sid)
        session._loader = lambda: self._load(session)
        return session

    def _load(self, session: LazySession) -> dict[str, Any] | None:
        store_id = hash_session_id(session.sid)
        row = self.database.session_get(store_id)
        if row is None:
            # An id the server did not issue, or one that expired, is never adopted.
            session.sid = new_session_id()
            return None
        try:
            data = codec.decode(row.data)
            self._check_logged_in(data)
        except (codec.SessionDecodeError, ValueError) as exc:
            logger.warning("deleted corrupt session row %s…: %s", store_id[:12], exc)
            self.database.session_delete(store_id)
            session.corrupted = True
            session.sid = new_session_id()
            return None
        session.stored = True
        session.seconds_left = row.seconds_left
        return data

    @staticmethod
    def _check_logged_in(data: dict[str, Any]) -> None:
        user = data.get("user")
        if user is None:
            return
        if not isinstance(user, dict) or any(not isinstance(user.get(key), str) for key in LOGGED_IN_FIELDS):
            raise ValueError("logged-in session lacks user id or role")
        if not isinstance(data.get("token"), str):
            raise ValueError("logged-in session lacks its WUZAPI token")

    def lifetime_for(self, session: LazySession) -> int:
        """Return the idle lifetime: the full one once logged in, a short one for anonymous visitors.

        A visitor who never logs in (a CSRF token for the login form, a language choice)
        gets a short-lived row, so crawlers cannot fill the table for a whole day.
        """
        return self.lifetime if self._user_id(session) else min(self.lifetime, ANONYMOUS_LIFETIME)

    def touch_due(self, session: LazySession) -> bool:
        lifetime = self.lifetime_for(session)
        return session.seconds_left is not None and session.seconds_left < lifetime - min(
            self.touch_interval, lifetime // 2)

    def save_session(self, app: Flask, session: LazySession, response: Response) -> None:
        # Flask calls this again when a first attempt raised; one database attempt per request.
        if session.save_attempted:
            return
        session.save_attempted = True
        if not session.loaded and not session.modified:
            return

        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        if session.accessed:
            response.vary.add("Cookie")

        if not session:
            self._save_empty(session, response, name, domain, path)
            return

        if session.rotated:
            data = codec.encode(dict(session), self.max_bytes)
            old = hash_session_id(session.previous_sid) if session.previous_sid else None
            self.database.session_rotate(old, hash_session_id(session.sid), data, self._user_id(session),
                                         self.lifetime_for(session))
        elif session.stored:
            if not session.modified and not self.touch_due(session):
                return
            data = codec.encode(dict(session), self.max_bytes)
            written = self.database.session_update(hash_session_id(session.sid), data, self._user_id(session),
                                                   self.lifetime_for(session), self.absolute_lifetime)
            if not written:
                logger.info("dropped a write to a session that ended during the request")
                return
        elif session.modified:
            data = codec.encode(dict(session), self.max_bytes)
            self.database.session_insert(hash_session_id(session.sid), data, self._user_id(session),
                                         self.lifetime_for(session))
        else:
            return

        self._set_cookie(app, session, response, name, domain, path)

    def _save_empty(self, session: LazySession, response: Response, name: str, domain: str | None,
                    path: str) -> None:
        if session.rotated and session.previous_sid:
            self.database.session_delete(hash_session_id(session.previous_sid))
        elif session.stored and session.modified:
            self.database.session_delete(hash_session_id(session.sid))
        if session.cookie_sid and (session.modified or session.corrupted or not session.stored):
            response.delete_cookie(name, domain=domain, path=path, secure=self.get_cookie_secure(self.app),
                                   httponly=True, samesite=self.get_cookie_samesite(self.app))
            response.vary.add("Cookie")

    def _set_cookie(self, app: Flask, session: LazySession, response: Response, name: str,
                    domain: str | None, path: str) -> None:
        response.set_cookie(
            name, self.secrets.sign(session.sid), max_age=self.lifetime_for(session), httponly=True, domain=domain,
            path=path, secure=self.get_cookie_secure(app), samesite=self.get_cookie_samesite(app),
        )
        response.vary.add("Cookie")

    @staticmethod
    def _user_id(session: LazySession) -> str | None:
        user = dict.get(session, "user")
        return user.get("id") if isinstance(user, dict) else None
