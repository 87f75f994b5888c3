"""Handlers for /admin/users, with the hand-built envelopes WUZAPI uses there."""

from __future__ import annotations

from typing import Any

from .protocol import (
    BOOL,
    INT,
    OBJECT,
    STRING,
    DecodeError,
    Rejected,
    Request,
    Response,
    decode_fields,
    error,
    json_response,
    ok,
    parse_json_body,
)
from .state import VALID_EVENTS, Store, User, new_user_id

USER_FIELDS = {
    "name": STRING,
    "token": STRING,
    "webhook": STRING,
    "events": STRING,
    "expiration": INT,
    "history": INT,
    "hmacKey": STRING,
    "proxyConfig": OBJECT,
    "s3Config": OBJECT,
}
PROXY_FIELDS = {"enabled": BOOL, "proxyURL": STRING, "webhookUseProxy": BOOL}
S3_FIELDS = {
    "enabled": BOOL,
    "endpoint": STRING,
    "region": STRING,
    "bucket": STRING,
    "accessKey": STRING,
    "secretKey": STRING,
    "pathStyle": BOOL,
    "publicURL": STRING,
    "mediaDelivery": STRING,
    "retentionDays": INT,
}
MIN_HMAC_KEY_LENGTH = 32


def user_view(user: User) -> dict[str, Any]:
    """Build one element of GET /admin/users."""
    return {
        "connected": user.has_client and user.connected,
        "events": user.events,
        "expiration": user.expiration,
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


def _invalid_payload() -> Rejected:
    return Rejected(error(400, "invalid request payload"))


def _decode_user_fields(request: Request) -> dict[str, Any]:
    try:
        return decode_fields(parse_json_body(request.body), USER_FIELDS)
    except DecodeError:
        raise _invalid_payload() from None


def _check_events(events: str) -> str:
    """Validate a comma-separated event list. Unlike connect, admin calls reject unknown names."""
    names = [name.strip() for name in events.split(",") if name.strip()]
    for name in names:
        if name not in VALID_EVENTS:
            body = {
                "code": 400,
                "details": f"invalid event: {name}",
                "error": "invalid event type",
                "success": False,
            }
            raise Rejected(json_response(400, body))
    return ",".join(names)


def _check_hmac_key(key: str) -> None:
    # NOTE: assumed text. The docs give the 32-character minimum for hmacKey, not the message.
    if key and len(key) < MIN_HMAC_KEY_LENGTH:
        raise Rejected(
            error(400, f"HMAC key must be at least {MIN_HMAC_KEY_LENGTH} characters long")
        )


def _decode_nested(value: Any, fields: dict[str, str]) -> dict[str, Any]:
    try:
        return decode_fields(value, fields)
    except DecodeError:
        raise _invalid_payload() from None


def _changes(payload: dict[str, Any]) -> dict[str, Any]:
    """Validate a decoded add/update body and return the User attributes it sets."""
    present = payload["__present__"]
    changes: dict[str, Any] = {}
    for name in ("name", "token", "webhook", "expiration", "history"):
        if name in present:
            changes[name] = payload[name]
    if "events" in present:
        changes["events"] = _check_events(payload["events"])
    if "hmacKey" in present:
        _check_hmac_key(payload["hmacKey"])
        changes["hmac_key"] = payload["hmacKey"]
    if "proxyConfig" in present:
        proxy = _decode_nested(payload["proxyConfig"], PROXY_FIELDS)
        changes["proxy_config"] = {
            "enabled": proxy["enabled"],
            "proxy_url": proxy["proxyURL"],
            "webhook_use_proxy": proxy["webhookUseProxy"],
        }
    if "s3Config" in present:
        s3 = _decode_nested(payload["s3Config"], S3_FIELDS)
        changes["s3_config"] = {
            "access_key": s3["accessKey"],
            "bucket": s3["bucket"],
            "enabled": s3["enabled"],
            "endpoint": s3["endpoint"],
            "media_delivery": s3["mediaDelivery"],
            "path_style": s3["pathStyle"],
            "public_url": s3["publicURL"],
            "region": s3["region"],
            "retention_days": s3["retentionDays"],
            "secret_key": s3["secretKey"],
        }
    return changes


def list_users(store: Store, request: Request) -> Response:
    return ok([user_view(user) for user in store.all()])


def get_user(store: Store, request: Request, user_id: str) -> Response:
    """Return a list of zero or one user. An unknown id is not an error here."""
    user = store.by_id(user_id)
    return ok([user_view(user)] if user is not None else [])


def add_user(store: Store, request: Request) -> Response:
    """Create a user (201). WUZAPI does not reject an empty name or token, so neither does this."""
    payload = _decode_user_fields(request)
    changes = _changes(payload)
    if store.by_token(payload["token"]) is not None:
        raise Rejected(error(409, "user with this token already exists"))

    user = User(id=new_user_id(), name=payload["name"], token=payload["token"])
    for name, value in changes.items():
        setattr(user, name, value)
    store.add(user)
    data = {
        "events": user.events,
        "expiration": user.expiration,
        "hmac_key": bool(user.hmac_key),
        "id": user.id,
        "name": user.name,
        "proxy_config": dict(user.proxy_config),
        "s3_config": user.public_s3_config(),
        "token": user.token,
        "webhook": user.webhook,
    }
    return ok(data, status=201)


def update_user(store: Store, request: Request, user_id: str) -> Response:
    user = store.by_id(user_id)
    if user is None:
        raise Rejected(error(404, "user not found"))
    payload = _decode_user_fields(request)
    if not payload["__present__"]:
        raise Rejected(error(400, "no fields to update"))
    changes = _changes(payload)
    if "token" in changes:
        owner = store.by_token(changes["token"])
        if owner is not None and owner is not user:
            raise Rejected(error(409, "user with this token already exists"))
    for name, value in changes.items():
        setattr(user, name, value)
    return json_response(200, {"code": 200, "message": "user updated successfully", "success": True})


def _user_not_found(user_id: str) -> Rejected:
    body = {
        "code": 404,
        "details": f"No user found with ID: {user_id}",
        "error": "user not found",
        "success": False,
    }
    return Rejected(json_response(404, body))


def delete_user(store: Store, request: Request, user_id: str) -> Response:
    """Delete the user row; the fake then stops accepting its token at once."""
    if store.remove(user_id) is None:
        raise _user_not_found(user_id)
    body = {
        "code": 200,
        "data": {"id": user_id},
        "details": "user deleted successfully",
        "success": True,
    }
    return json_response(200, body)


def delete_user_fully(store: Store, request: Request, user_id: str) -> Response:
    """Log out, disconnect and delete the user."""
    user = store.remove(user_id)
    if user is None:
        raise _user_not_found(user_id)
    body = {
        "code": 200,
        "data": {"id": user.id, "jid": user.jid, "name": user.name},
        "details": "user instance removed completely",
        "success": True,
    }
    user.has_client = user.connected = user.logged_in = False
    return json_response(200, body)
