"""Routing and authentication of the fake WUZAPI API (no HTTP or fault handling here)."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Callable

from . import admin, handlers, sends
from .protocol import Rejected, Request, Response, error, not_found_text
from .state import Store, User

UserHandler = Callable[[User, Request], Response]

_ADMIN_USER_PATH = re.compile(r"^/admin/users/([^/]+)$")
_ADMIN_USER_FULL_PATH = re.compile(r"^/admin/users/([^/]+)/full$")


class WuzapiApp:
    """The WUZAPI endpoints on top of a Store, called once per request by the HTTP layer."""

    def __init__(self, store: Store, admin_token: str, connect_hold_ms: int) -> None:
        self.store = store
        self._admin_digest = hashlib.sha256(admin_token.encode("utf-8")).digest()
        self.connect_hold_ms = connect_hold_ms
        self._user_routes: dict[tuple[str, str], UserHandler] = {
            ("POST", "/session/connect"): self._connect,
            ("POST", "/session/disconnect"): handlers.session_disconnect,
            ("POST", "/session/logout"): handlers.session_logout,
            ("GET", "/session/status"): handlers.session_status,
            ("GET", "/session/qr"): handlers.session_qr,
            ("POST", "/session/pairphone"): handlers.session_pairphone,
            ("GET", "/webhook"): handlers.webhook_get,
            ("POST", "/webhook"): handlers.webhook_set,
            ("PUT", "/webhook"): handlers.webhook_update,
            ("DELETE", "/webhook"): handlers.webhook_delete,
            ("POST", "/user/check"): handlers.user_check,
            ("POST", "/user/info"): handlers.user_info,
            ("POST", "/user/avatar"): handlers.user_avatar,
            ("GET", "/user/contacts"): handlers.user_contacts,
        }
        for path, handler in sends.ROUTES.items():
            self._user_routes[("POST", path)] = handler

    def handle(self, request: Request) -> Response:
        """Route, authenticate and run one request while holding the store lock."""
        with self.store.lock:
            try:
                return self._route(request)
            except Rejected as exc:
                return exc.response

    def _route(self, request: Request) -> Response:
        method, path = request.method, request.path

        if method == "GET" and path == "/health":
            return handlers.health(self.store)

        user_handler = self._user_routes.get((method, path))
        if user_handler is not None:
            return user_handler(self._authenticate_user(request), request)

        if path == "/admin/users" and method in ("GET", "POST"):
            self._authenticate_admin(request)
            if method == "GET":
                return admin.list_users(self.store, request)
            return admin.add_user(self.store, request)

        match = _ADMIN_USER_FULL_PATH.match(path)
        if match and method == "DELETE":
            self._authenticate_admin(request)
            return admin.delete_user_fully(self.store, request, match.group(1))

        match = _ADMIN_USER_PATH.match(path)
        if match and method in ("GET", "PUT", "DELETE"):
            self._authenticate_admin(request)
            user_id = match.group(1)
            if method == "GET":
                return admin.get_user(self.store, request, user_id)
            if method == "PUT":
                return admin.update_user(self.store, request, user_id)
            return admin.delete_user(self.store, request, user_id)

        # WUZAPI's catch-all static file server handles everything else, wrong methods included.
        return not_found_text()

    def _connect(self, user: User, request: Request) -> Response:
        return handlers.session_connect(self.store, user, request, self.connect_hold_ms / 1000)

    def _authenticate_user(self, request: Request) -> User:
        """Find the user by the Token header or ?token=. Authorization is ignored, as in WUZAPI."""
        token = request.headers.get("Token") or request.query_value("token")
        user = self.store.by_token(token)
        if user is None:
            raise Rejected(error(401, "unauthorized"))
        return user

    def _authenticate_admin(self, request: Request) -> None:
        presented = request.headers.get("Authorization") or ""
        presented_digest = hashlib.sha256(presented.encode("utf-8")).digest()
        if not presented or not hmac.compare_digest(presented_digest, self._admin_digest):
            raise Rejected(error(401, "unauthorized"))
