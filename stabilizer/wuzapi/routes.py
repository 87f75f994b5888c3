"""Facts about WUZAPI endpoints: which calls are safe to repeat, and which are slow.

Repeat-safety follows WUZAPI's handlers: reads and idempotent writes may be retried after
any failure; every other call only when it provably never reached WUZAPI. A path not
listed here is treated as unsafe to repeat.
"""

from __future__ import annotations

import fnmatch
import json
from enum import Enum


class Safety(Enum):
    READ = "read"
    IDEMPOTENT = "idempotent"
    UNSAFE = "unsafe"

    @property
    def repeatable(self) -> bool:
        return self is not Safety.UNSAFE


READS = {
    ("GET", "/session/status"), ("GET", "/session/qr"), ("GET", "/webhook"), ("GET", "/user/contacts"),
    ("POST", "/user/check"), ("POST", "/user/info"), ("POST", "/user/avatar"), ("GET", "/user/lid/*"),
    ("GET", "/user/blocklist"), ("GET", "/user/privacy"), ("GET", "/group/list"), ("GET", "/group/info"),
    ("POST", "/group/inviteinfo"), ("GET", "/newsletter/list"), ("POST", "/chat/download*"),
    ("GET", "/chat/history"), ("GET", "/session/s3/config"), ("GET", "/session/hmac/config"),
    ("POST", "/session/s3/test"), ("GET", "/admin/users"), ("GET", "/admin/users/*"), ("GET", "/health"),
}

IDEMPOTENT = {
    ("POST", "/webhook"), ("PUT", "/webhook"), ("PUT", "/webhook/update"), ("DELETE", "/webhook"),
    ("POST", "/session/proxy"), ("POST", "/session/hmac/config"), ("DELETE", "/session/hmac/config"),
    ("POST", "/session/s3/config"), ("DELETE", "/session/s3/config"), ("POST", "/session/history"),
    ("POST", "/user/privacy"), ("POST", "/user/block"), ("POST", "/user/unblock"),
    ("POST", "/group/name"), ("POST", "/group/topic"), ("POST", "/group/photo"),
    ("POST", "/group/photo/remove"), ("POST", "/group/announce"), ("POST", "/group/locked"),
    ("POST", "/group/ephemeral"), ("POST", "/chat/markread"), ("POST", "/chat/presence"),
    ("POST", "/user/presence"), ("POST", "/chat/archive"), ("PUT", "/admin/users/*"),
    # A repeated connect answers 500 "already connected", which the client reports as success.
    ("POST", "/session/connect"),
}

MEDIA_SENDS = {"/chat/send/image", "/chat/send/audio", "/chat/send/document", "/chat/send/video",
               "/chat/send/sticker"}

# Sends whose body takes a caller-chosen message id in `Id`. Edit, delete and react use
# `Id` to name the target message instead, so the gateway never fills it in for them.
ID_SENDS = {"/chat/send/text", "/chat/send/image", "/chat/send/audio", "/chat/send/document",
            "/chat/send/video", "/chat/send/sticker", "/chat/send/location", "/chat/send/contact",
            "/chat/send/buttons", "/chat/send/list", "/chat/send/poll"}

CONNECT_HOLD_READ_TIMEOUT_MS = 15000  # WUZAPI holds /session/connect about 10 s without Immediate
MEDIA_READ_TIMEOUT_MS = 60000


def _matches(table: set[tuple[str, str]], method: str, path: str) -> bool:
    return any(method == m and fnmatch.fnmatchcase(path, pattern) for m, pattern in table)


def safety(method: str, path: str, query: dict[str, str] | None = None) -> Safety:
    method = method.upper()
    if method == "GET" and path == "/group/invitelink":
        # With reset=true WUZAPI revokes the current link and makes a new one.
        reset = str((query or {}).get("reset", "")).lower() == "true"
        return Safety.UNSAFE if reset else Safety.READ
    if _matches(READS, method, path):
        return Safety.READ
    if _matches(IDEMPOTENT, method, path):
        return Safety.IDEMPOTENT
    return Safety.UNSAFE


def read_timeout_ms(method: str, path: str, body: bytes | None, default_ms: int) -> int:
    """Return the read timeout for one attempt: longer for held connects and media sends."""
    if method.upper() == "POST" and path == "/session/connect" and not _immediate(body):
        return max(default_ms, CONNECT_HOLD_READ_TIMEOUT_MS)
    if method.upper() == "POST" and path in MEDIA_SENDS:
        return max(default_ms, MEDIA_READ_TIMEOUT_MS)
    return default_ms


def _immediate(body: bytes | None) -> bool:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return False
    if not isinstance(payload, dict):
        return False
    # WUZAPI decodes JSON field names case-insensitively.
    return any(key.lower() == "immediate" and value is True for key, value in payload.items())
