"""In-memory users and session state of the fake WUZAPI server."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import secrets
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

# Event names WUZAPI accepts in subscriptions, including "All".
VALID_EVENTS = (
    "Message", "UndecryptableMessage", "Receipt", "MediaRetry", "ReadReceipt", "GroupInfo",
    "JoinedGroup", "Picture", "BlocklistChange", "Blocklist", "Connected", "Disconnected",
    "ConnectFailure", "KeepAliveRestored", "KeepAliveTimeout", "QRTimeout", "LoggedOut",
    "ClientOutdated", "TemporaryBan", "StreamError", "StreamReplaced", "PairSuccess",
    "PairError", "QR", "QRScannedWithoutMultidevice", "PrivacySettings", "PushNameSetting",
    "UserAbout", "AppState", "AppStateSyncComplete", "HistorySync", "OfflineSyncCompleted",
    "OfflineSyncPreview", "LabelEdit", "LabelAssociationChat", "LabelAssociationMessage",
    "CallOffer", "CallAccept", "CallTerminate", "CallOfferNotice", "CallRelayLatency",
    "Presence", "ChatPresence", "IdentityChange", "CATRefreshError", "NewsletterJoin",
    "NewsletterLeave", "NewsletterMuteChange", "NewsletterLiveUpdate", "FBMessage", "All",
)

# Phone number used for the n-th pairing when the caller names none.
_FIRST_PAIRED_PHONE = 5511999990000


def new_user_id() -> str:
    """Return a user id in WUZAPI's current format: 12 lowercase hex characters."""
    return secrets.token_hex(6)


def new_message_id() -> str:
    """Return a message id in whatsmeow's format: "3EB0" and 18 upper-case hex characters."""
    return "3EB0" + secrets.token_hex(9).upper()


def filter_events(names: list[str]) -> list[str]:
    """Drop unknown event names silently, as WUZAPI's connect and webhook handlers do."""
    return [name for name in names if name in VALID_EVENTS]


def default_proxy_config() -> dict[str, Any]:
    return {"enabled": False, "proxy_url": "", "webhook_use_proxy": True}


def default_s3_config() -> dict[str, Any]:
    return {
        "access_key": "",
        "bucket": "",
        "enabled": False,
        "endpoint": "",
        "media_delivery": "",
        "path_style": False,
        "public_url": "",
        "region": "",
        "retention_days": 0,
    }


@dataclass
class User:
    """One WUZAPI user (instance) and the state of its in-memory WhatsApp client."""

    id: str
    name: str
    token: str
    webhook: str = ""
    events: str = ""
    expiration: int = 0
    history: int = 0
    hmac_key: str = ""
    proxy_config: dict[str, Any] = field(default_factory=default_proxy_config)
    s3_config: dict[str, Any] = field(default_factory=default_s3_config)
    jid: str = ""
    has_client: bool = False
    connected: bool = False
    logged_in: bool = False
    qrcode: str = ""
    # Every successful send-like call (path, message id, payload), oldest first.
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def public_s3_config(self) -> dict[str, Any]:
        """Return the S3 settings as WUZAPI shows them: access key masked, no secret key."""
        config = {key: value for key, value in self.s3_config.items() if key != "secret_key"}
        config["access_key"] = "***"
        return config

    def snapshot(self) -> dict[str, Any]:
        """Return a deep copy of every field, for tests."""
        return {
            "id": self.id,
            "name": self.name,
            "token": self.token,
            "webhook": self.webhook,
            "events": self.events,
            "expiration": self.expiration,
            "history": self.history,
            "hmac_configured": bool(self.hmac_key),
            "proxy_config": copy.deepcopy(self.proxy_config),
            "s3_config": copy.deepcopy(self.s3_config),
            "jid": self.jid,
            "has_client": self.has_client,
            "connected": self.connected,
            "logged_in": self.logged_in,
            "qrcode": self.qrcode,
            "outbox": copy.deepcopy(self.outbox),
        }


class PairingError(Exception):
    """Raised when a pairing cannot complete. `status` is the HTTP status the control API returns."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Store:
    """All users, guarded by one re-entrant lock that handlers hold while they read or write."""

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.lock = threading.RLock()
        self.started_at = time.monotonic()
        self._users: dict[str, User] = {}
        self._pairings = 0
        for name, token in (users or {}).items():
            self.add(User(id=new_user_id(), name=name, token=token))

    def add(self, user: User) -> None:
        with self.lock:
            self._users[user.id] = user

    def remove(self, user_id: str) -> User | None:
        with self.lock:
            return self._users.pop(user_id, None)

    def all(self) -> list[User]:
        with self.lock:
            return list(self._users.values())

    def by_id(self, user_id: str) -> User | None:
        with self.lock:
            return self._users.get(user_id)

    def by_token(self, token: str) -> User | None:
        if not token:
            return None
        with self.lock:
            for user in self._users.values():
                if user.token == token:
                    return user
        return None

    def pair(self, token: str, phone: str | None = None) -> User:
        """Complete a pending QR pairing for the user with `token`, as a phone scan would.

        Raises PairingError (404 unknown token, 400 bad phone, 409 wrong session state).
        """
        with self.lock:
            user = self.by_token(token)
            if user is None:
                raise PairingError(404, "no user has this token")
            if phone is not None and not (phone.isdigit() and 8 <= len(phone) <= 15):
                raise PairingError(400, f"invalid phone {phone!r}: expected 8 to 15 digits")
            if not (user.has_client and user.connected):
                raise PairingError(
                    409,
                    f"user {user.name!r} has no connected client; call POST /session/connect first",
                )
            if user.logged_in:
                raise PairingError(409, f"user {user.name!r} is already logged in")

            if phone is None:
                phone = str(_FIRST_PAIRED_PHONE + self._pairings)
            self._pairings += 1
            user.jid = f"{phone}.0:1@s.whatsapp.net"
            user.logged_in = True
            user.qrcode = ""
            return user


def qr_code_data_url(seed: str) -> str:
    """Return a small valid PNG (a 21x21 pseudo-random pattern) as a data URL."""
    size = 21
    digest = b""
    counter = 0
    while len(digest) * 8 < size * size:
        digest += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    bits = "".join(f"{byte:08b}" for byte in digest)

    rows = bytearray()
    for y in range(size):
        rows.append(0)  # PNG filter type "None" for this scanline
        for x in range(size):
            rows.append(0 if bits[y * size + x] == "1" else 255)

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = binascii.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)  # 8-bit grayscale
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows)))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
