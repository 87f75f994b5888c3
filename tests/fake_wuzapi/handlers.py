"""Handlers for /session/*, /webhook, /user/* and /health.

Session model: POST /session/connect creates the in-memory client and marks it connected.
A user with a stored JID (paired before and not logged out) is logged in at once, as
WUZAPI does when whatsmeow has a stored session. Any other user gets a QR code and stays
logged out until the control endpoint POST /__fake__/pair completes the pairing.
"""

from __future__ import annotations

import datetime
import gc
import resource
import secrets
import string
import threading
import time
from typing import Any

from .protocol import (
    BOOL,
    STRING,
    STRINGS,
    Rejected,
    Request,
    Response,
    decode_or_reject,
    error,
    json_response,
    ok,
)
from .state import Store, User, filter_events, qr_code_data_url

# Numbers ending in this suffix count as "not on WhatsApp" and "no avatar", so tests can
# reach both branches of /user/check and /user/avatar.
UNKNOWN_NUMBER_SUFFIX = "0000"

# Address book returned by GET /user/contacts once the user is logged in.
CONTACTS = {
    "5491155553934@s.whatsapp.net": {
        "BusinessName": "",
        "FirstName": "Ana",
        "Found": True,
        "FullName": "Ana Example",
        "PushName": "Ana",
    },
    "5491155553935@s.whatsapp.net": {
        "BusinessName": "Example Shop",
        "FirstName": "",
        "Found": True,
        "FullName": "",
        "PushName": "Example Shop",
    },
}


def _require_client(user: User) -> None:
    if not user.has_client:
        raise Rejected(error(500, "no session"))


def _digits(phone: str) -> str:
    phone = phone.removeprefix("+")
    return phone.split("@", 1)[0].split(".", 1)[0].split(":", 1)[0]


# --- session ---------------------------------------------------------------------------


def session_connect(store: Store, user: User, request: Request, hold_seconds: float) -> Response:
    """Create and connect the client, and hold the reply unless the body sets "Immediate": true."""
    _, payload = decode_or_reject(request.body, {"Subscribe": STRINGS, "Immediate": BOOL})
    if user.has_client and user.connected:
        raise Rejected(error(500, "already connected"))

    events = filter_events(payload["Subscribe"])
    if events:
        user.events = ",".join(events)
    user.has_client = True
    user.connected = True
    if user.jid:
        user.logged_in = True
        user.qrcode = ""
    else:
        user.logged_in = False
        user.qrcode = qr_code_data_url(f"{user.id}:{time.time()}")

    response = ok(
        {"details": "Connected!", "events": user.events, "jid": user.jid, "webhook": user.webhook}
    )
    if not payload["Immediate"]:
        # WUZAPI sleeps before replying when Immediate is false or omitted.
        response.hold_seconds = hold_seconds
    return response


def _drop_client(user: User) -> None:
    user.has_client = False
    user.connected = False
    user.logged_in = False
    user.qrcode = ""


def session_disconnect(user: User, request: Request) -> Response:
    """Destroy the client but keep the pairing (JID). With ?clear=true, also drop subscriptions."""
    _require_client(user)
    if not user.connected:
        raise Rejected(error(500, "cannot disconnect because it is not logged in"))
    _drop_client(user)
    if request.query_value("clear") == "true":
        user.events = ""
    return ok({"Details": "Disconnected"})


def session_logout(user: User, request: Request) -> Response:
    """Log out: destroy the client and forget the pairing (JID)."""
    _require_client(user)
    if not (user.logged_in and user.connected):
        if user.connected:
            raise Rejected(error(500, "could not logout as it was not logged in"))
        raise Rejected(error(500, "could not disconnect as it was not connected"))
    _drop_client(user)
    user.jid = ""
    return ok({"Details": "Logged out"})


def status_data(user: User) -> dict[str, Any]:
    """Build the current-build /session/status data for `user`."""
    return {
        "connected": user.has_client and user.connected,
        "events": user.events,
        "history": str(user.history),
        "hmac_configured": bool(user.hmac_key),
        "id": user.id,
        "jid": user.jid,
        "loggedIn": user.has_client and user.logged_in,
        "name": user.name,
        "proxy_config": dict(user.proxy_config),
        "proxy_url": user.proxy_config["proxy_url"],
        "qrcode": user.qrcode,
        "s3_config": user.public_s3_config(),
        "token": user.token,
        "webhook": user.webhook,
    }


def session_status(user: User, request: Request) -> Response:
    return ok(status_data(user))


def session_qr(user: User, request: Request) -> Response:
    _require_client(user)
    if not user.connected:
        raise Rejected(error(500, "not connected"))
    if user.logged_in:
        raise Rejected(error(500, "already logged in"))
    return ok({"QRCode": user.qrcode})


def session_pairphone(user: User, request: Request) -> Response:
    """Return a new linking code on every call. The fake never completes a phone pairing."""
    _require_client(user)
    _, payload = decode_or_reject(request.body, {"Phone": STRING})
    if not payload["Phone"]:
        raise Rejected(error(400, "missing Phone in Payload"))
    if user.logged_in:
        raise Rejected(error(400, "already paired"))
    if not user.connected:
        raise Rejected(error(400, "websocket not connected"))
    alphabet = string.ascii_uppercase + string.digits
    code = "".join(secrets.choice(alphabet) for _ in range(8))
    return ok({"LinkingCode": f"{code[:4]}-{code[4:]}"})


# --- webhook ---------------------------------------------------------------------------


def webhook_get(user: User, request: Request) -> Response:
    # Splitting an empty string gives [""], as WUZAPI's strings.Split does.
    return ok({"subscribe": user.events.split(","), "webhook": user.webhook})


def webhook_set(user: User, request: Request) -> Response:
    """Set the URL, and replace the subscriptions only when the body has "events"."""
    fields = {"webhookURL": STRING, "events": STRINGS}
    _, payload = decode_or_reject(request.body, fields, "could not decode payload")
    user.webhook = payload["webhookURL"]
    if "events" in payload["__present__"]:
        user.events = ",".join(filter_events(payload["events"]))
    return ok({"webhook": user.webhook})


def webhook_update(user: User, request: Request) -> Response:
    """Replace URL and subscriptions. An update with "active" false or omitted clears both."""
    fields = {"webhook": STRING, "events": STRINGS, "active": BOOL}
    _, payload = decode_or_reject(request.body, fields, "could not decode payload")
    if not payload["active"]:
        user.webhook = ""
        user.events = ""
        return ok({"active": False, "events": [], "webhook": ""})
    events = filter_events(payload["events"])
    user.webhook = payload["webhook"]
    user.events = ",".join(events)
    return ok({"active": True, "events": events, "webhook": user.webhook})


def webhook_delete(user: User, request: Request) -> Response:
    user.webhook = ""
    user.events = ""
    return ok({"Details": "Webhook and events deleted successfully"})


# --- user ------------------------------------------------------------------------------


def user_check(user: User, request: Request) -> Response:
    """Report each number as on WhatsApp unless it ends in UNKNOWN_NUMBER_SUFFIX."""
    _require_client(user)
    _, payload = decode_or_reject(request.body, {"Phone": STRINGS})
    if not payload["Phone"]:
        raise Rejected(error(400, "missing Phone in Payload"))
    if not user.logged_in:
        # NOTE: assumed text. WUZAPI wraps whatever error whatsmeow returns.
        raise Rejected(error(500, "failed to check if users are on WhatsApp: not logged in"))
    users = []
    for query in payload["Phone"]:
        digits = _digits(query)
        users.append(
            {
                "IsInWhatsapp": digits.isdigit() and not digits.endswith(UNKNOWN_NUMBER_SUFFIX),
                "JID": f"{digits}@s.whatsapp.net",
                "Query": query,
                "VerifiedName": "",
            }
        )
    return ok({"Users": users})


def user_info(user: User, request: Request) -> Response:
    _require_client(user)
    _, payload = decode_or_reject(request.body, {"Phone": STRINGS})
    if not payload["Phone"]:
        raise Rejected(error(400, "missing Phone in Payload"))
    if any("@" not in jid for jid in payload["Phone"]):
        # WUZAPI returns without writing anything when a JID does not parse.
        return Response(200, b"", content_type=None)
    if not user.logged_in:
        # WUZAPI passes a plain string here, which its envelope turns into code 500 with
        # success true and neither data nor error.
        return json_response(500, {"code": 500, "success": True})
    users = {}
    for jid in payload["Phone"]:
        users[jid] = {
            "Devices": [jid],
            "LID": "",
            "PictureID": "",
            "Status": "",
            "VerifiedName": None,
        }
    return ok({"Users": users})


def user_avatar(user: User, request: Request) -> Response:
    _require_client(user)
    _, payload = decode_or_reject(request.body, {"Phone": STRING, "Preview": BOOL})
    if not payload["Phone"]:
        raise Rejected(error(400, "missing Phone in Payload"))
    digits = _digits(payload["Phone"])
    if not user.logged_in or digits.endswith(UNKNOWN_NUMBER_SUFFIX):
        raise Rejected(error(500, "no avatar found"))
    picture_id = str(1_700_000_000 + int(digits[-6:] or "0")) if digits.isdigit() else "1700000000"
    direct_path = f"/v/t61.24694-24/{picture_id}_n.jpg"
    return ok(
        {
            "DirectPath": direct_path,
            "ID": picture_id,
            "Type": "preview" if payload["Preview"] else "image",
            "URL": f"https://pps.whatsapp.net{direct_path}",
        }
    )


def user_contacts(user: User, request: Request) -> Response:
    """Return the fixed address book; it is empty until the user is logged in."""
    _require_client(user)
    return ok(dict(CONTACTS) if user.logged_in else {})


# --- health ----------------------------------------------------------------------------


def format_go_duration(seconds: float) -> str:
    """Format like Go's time.Duration.String after rounding to 0.1 s, e.g. "26h3m11.2s"."""
    tenths = round(seconds * 10)
    hours, rest = divmod(tenths, 36000)
    minutes, rest = divmod(rest, 600)
    secs = f"{rest // 10}.{rest % 10}" if rest % 10 else str(rest // 10)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def health(store: Store) -> Response:
    """Build the un-enveloped /health object; top-level keys keep WUZAPI's declaration order."""
    users = store.all()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # ru_maxrss is KiB on Linux
    body = {
        "status": "ok",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "uptime": format_go_duration(time.monotonic() - store.started_at),
        "active_connections": sum(1 for user in users if user.has_client),
        "total_users": len(users),
        "connected_users": sum(1 for user in users if user.has_client and user.connected),
        "logged_in_users": sum(1 for user in users if user.has_client and user.logged_in),
        "memory_stats": {
            "alloc_mb": rss_mb,
            "num_gc": sum(generation["collections"] for generation in gc.get_stats()),
            "sys_mb": rss_mb,
            "total_alloc_mb": rss_mb,
        },
        "goroutines": threading.active_count(),
        "version": "fake",
    }
    return json_response(200, body, sort_keys=False)
