"""Login, logout and status for API clients: ``/api/auth/*``."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from flask import Blueprint, jsonify, request, session

from ..errors import N_, ApiError
from ..wuzapi.errors import WuzapiError
from .common import require_json_body, runtime, user_id_for, wuzapi_error

logger = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, url_prefix="/api/auth")

TOKEN_MAX_LENGTH = 512
ROLES = ("user", "admin")


def parse_login(payload: Any) -> tuple[str, str]:
    """Return (token, role) from a login body, or raise 400 invalid_input naming the problem."""
    if not isinstance(payload, dict):
        raise ApiError("invalid_input", reason=N_("expected a JSON object with token and role"))
    token = payload.get("token")
    role = payload.get("role", "user")
    if token is not None and not isinstance(token, str):
        raise ApiError("invalid_input", reason=N_("the token must be a string"))
    if not isinstance(token, str) or not token.strip():
        raise ApiError("invalid_input", reason=N_("the token is missing"))
    if len(token) > TOKEN_MAX_LENGTH or any(ch.isspace() or ord(ch) < 32 for ch in token):
        raise ApiError("invalid_input", reason=N_("the token must be 1 to 512 characters without spaces"))
    if role not in ROLES:
        raise ApiError("invalid_input", reason=N_("the role must be user or admin"))
    return token, role


def _same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest())


def verify_token(token: str, role: str) -> dict[str, Any]:
    """Check the token with WUZAPI and return the user; raise ApiError otherwise.

    A wrong token is 401; WUZAPI down or the circuit open is 503, never 401.
    """
    client = runtime().client
    if role == "admin":
        admin_token = runtime().settings.wuzapi_admin_token
        if not admin_token:
            raise ApiError("admin_login_disabled")
        if not _same_secret(token, admin_token):
            raise ApiError("invalid_credentials")
        path, headers = "/admin/users", {"Authorization": token}
    else:
        path, headers = "/session/status", {"Token": token}

    try:
        answer = client.call("GET", path, headers=headers)
    except WuzapiError as exc:
        raise wuzapi_error(exc) from exc
    if answer.status == 401:
        raise ApiError("invalid_credentials")
    if answer.status != 200:
        logger.warning("login check %s returned HTTP %d", path, answer.status)
        raise ApiError("wuzapi_unavailable", headers={"Retry-After": "5"}, seconds=5)

    user: dict[str, Any] = {"id": user_id_for(token), "role": role, "name": "admin" if role == "admin" else "",
                            "jid": ""}
    if role == "user":
        try:
            data = answer.json().get("data") or {}
        except (ValueError, AttributeError):
            data = {}
        if isinstance(data, dict):
            user["name"] = str(data.get("name") or data.get("Name") or "")
            user["jid"] = str(data.get("jid") or data.get("JID") or "")
    return user


def start_session(user: dict[str, Any], token: str) -> None:
    """Log ``user`` in: clear the session, store the user and the encrypted token, rotate the id."""
    session.clear()
    session["user"] = user
    session["token"] = runtime().secrets.encrypt(token)
    session["login_at"] = int(time.time())
    runtime().session_interface.regenerate(session)


@bp.post("/login")
def login():
    require_json_body()
    token, role = parse_login(request.get_json(silent=True))
    user = verify_token(token, role)

    start_session(user, token)
    logger.info("login succeeded", extra={"user": user["id"][:12], "role": role})
    return jsonify(authenticated=True, user=user)


@bp.post("/logout")
def logout():
    require_json_body()
    user = session.get("user") if not getattr(session, "corrupted", False) else None
    session.clear()
    if isinstance(user, dict):
        logger.info("logout", extra={"user": str(user.get("id", ""))[:12]})
    return jsonify(authenticated=False)


@bp.get("/status")
def status():
    user = session.get("user")
    if getattr(session, "corrupted", False) or not isinstance(user, dict):
        return jsonify(authenticated=False)
    return jsonify(authenticated=True, user=user)
