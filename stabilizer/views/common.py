"""Helpers shared by the blueprints: the runtime, the logged-in user, WUZAPI error mapping."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import current_app, request, session

from ..errors import ApiError, retry_after_seconds
from ..wuzapi.errors import CircuitOpen, DeadlineExceeded, Throttled, UpstreamFailure, WuzapiError


def runtime() -> Any:
    return current_app.extensions["stabilizer"]


def user_id_for(token: str) -> str:
    """Return the public user id: the first 32 hex characters of SHA-256 of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


def current_user() -> dict[str, Any] | None:
    """Return the session's user, or None; raise 401 session_corrupted for a corrupt session."""
    user = session.get("user")
    if getattr(session, "corrupted", False):
        raise ApiError("session_corrupted")
    return user if isinstance(user, dict) else None


def session_token() -> str | None:
    """Return the WUZAPI token of the logged-in session, decrypted."""
    ciphertext = session.get("token")
    if not ciphertext:
        return None
    token = runtime().secrets.decrypt(ciphertext)
    if token is None:
        # Encrypted under a secret that is neither current nor a fallback: end the session.
        session.clear()
        raise ApiError("session_corrupted")
    return token


def require_json_body() -> None:
    """Reject a state-changing request that is not application/json (cross-site form posts)."""
    if not request.is_json:
        raise ApiError("unsupported_media_type")


def wuzapi_error(exc: WuzapiError, *, message_id: str | None = None, repeatable: bool = True) -> ApiError:
    """Translate a failed WUZAPI call into the problem the client receives.

    ``repeatable`` False marks a call with side effects: a failure after which the
    request may have reached WUZAPI is reported as an unknown outcome, never as a plain
    error the caller might retry blindly.
    """
    attempts = {"X-Upstream-Attempts": str(exc.attempts)}
    if isinstance(exc, CircuitOpen):
        seconds = retry_after_seconds(exc.retry_after)
        return ApiError("circuit_open", headers={"Retry-After": str(seconds), **attempts}, seconds=seconds)

    sent = getattr(exc, "sent", False)
    if not repeatable and sent:
        extra: dict[str, Any] = {"outcome": "unknown"}
        if message_id:
            extra["id"] = message_id
        return ApiError("outcome_unknown", headers=attempts, extra=extra)

    timed_out = isinstance(exc, DeadlineExceeded) or (isinstance(exc, UpstreamFailure) and exc.timed_out)
    if timed_out and sent:
        return ApiError("wuzapi_timeout", headers=attempts)

    retry_after = exc.retry_after if isinstance(exc, Throttled) else None
    if retry_after is None:
        breaker = runtime().breaker
        retry_after = breaker.seconds_until_trial() if breaker is not None else None
    seconds = retry_after_seconds(retry_after if retry_after is not None else 5)
    return ApiError("wuzapi_unavailable", headers={"Retry-After": str(seconds), **attempts}, seconds=seconds)
