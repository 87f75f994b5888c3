"""The /__fake__/* control endpoints and the request log they expose.

Control requests have no authentication, are never faulted and are not logged.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from .protocol import Request, Response, json_response
from .state import PairingError

if TYPE_CHECKING:
    from .server import FakeWuzapi

CONTROL_PREFIX = "/__fake__/"

# Header values and query parameters replaced by mask_secret in the request log.
SECRET_HEADERS = ("token", "authorization", "cookie")
SECRET_QUERY_PARAMETERS = ("token",)


def mask_secret(value: str) -> str:
    """Keep the first 2 characters of a secret (none if it is that short) and add "***"."""
    return (value[:2] if len(value) > 2 else "") + "***"


def _log_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return body.decode("utf-8", errors="replace")


class RequestLog:
    """Every non-control request, oldest first, with secrets masked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def add(self, request: Request) -> dict[str, Any]:
        """Append an entry for `request` and return it for later update() calls."""
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            if name.lower() in SECRET_HEADERS:
                value = mask_secret(value)
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query = {}
        for name, values in request.query.items():
            # One value per parameter: the first, as Go's URL.Query().Get returns.
            query[name] = mask_secret(values[0]) if name in SECRET_QUERY_PARAMETERS else values[0]
        entry = {
            "method": request.method,
            "path": request.path,
            "query": query,
            "body": _log_body(request.body),
            "headers": headers,
            "time": time.time(),
            "status": None,
            "fault": None,
            "processed": False,
        }
        with self._lock:
            self._entries.append(entry)
        return entry

    def update(self, entry: dict[str, Any], **fields: Any) -> None:
        with self._lock:
            entry.update(fields)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._entries)

    def clear(self) -> int:
        """Drop all entries and return how many there were."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count


def _control_error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def _parse_object(request: Request) -> dict[str, Any] | Response:
    try:
        value = json.loads(request.body.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _control_error(400, f"invalid JSON body: {exc}")
    if not isinstance(value, dict):
        return _control_error(400, "the body must be a JSON object")
    return value


def _set_fault(fake: FakeWuzapi, request: Request) -> Response:
    rule = _parse_object(request)
    if isinstance(rule, Response):
        return rule
    try:
        return json_response(200, fake.faults.set(rule).to_dict())
    except ValueError as exc:
        return _control_error(400, str(exc))


def _pair(fake: FakeWuzapi, request: Request) -> Response:
    body = _parse_object(request)
    if isinstance(body, Response):
        return body
    token = body.get("token")
    phone = body.get("phone")
    if not isinstance(token, str) or not token:
        return _control_error(400, 'missing "token": send {"token": "<user token>"}')
    if phone is not None and not isinstance(phone, str):
        return _control_error(400, 'invalid "phone": expected a string of digits')
    try:
        user = fake.store.pair(token, phone)
    except PairingError as exc:
        return _control_error(exc.status, str(exc))
    return json_response(200, {"id": user.id, "jid": user.jid, "name": user.name})


def _users(fake: FakeWuzapi) -> Response:
    users = fake.users()
    for user in users:
        user["token"] = mask_secret(user["token"])
    return json_response(200, users)


ENDPOINTS = (
    "GET /__fake__/faults",
    "POST /__fake__/faults",
    "GET /__fake__/requests",
    "DELETE /__fake__/requests",
    "POST /__fake__/pair",
    "GET /__fake__/users",
)


def handle_control(fake: FakeWuzapi, request: Request) -> Response:
    """Run one control request against `fake`."""
    endpoint = f"{request.method} {request.path}"
    if endpoint == "GET /__fake__/faults":
        return json_response(200, fake.fault())
    if endpoint == "POST /__fake__/faults":
        return _set_fault(fake, request)
    if endpoint == "GET /__fake__/requests":
        return json_response(200, fake.requests())
    if endpoint == "DELETE /__fake__/requests":
        return json_response(200, {"cleared": fake.clear_requests()})
    if endpoint == "POST /__fake__/pair":
        return _pair(fake, request)
    if endpoint == "GET /__fake__/users":
        return _users(fake)
    return _control_error(404, f"unknown control endpoint {endpoint}; available: {list(ENDPOINTS)}")
