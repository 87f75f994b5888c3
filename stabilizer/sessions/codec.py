"""The session data contract: plain JSON, checked before anything reaches the database.

Accepted values are exactly ``dict`` (with ``str`` keys), ``list``, ``str``, ``int``,
finite ``float``, ``bool`` and ``None``. Anything else (tuples, datetimes, ``Markup``,
Flask-Babel's lazy strings, sets) is rejected with the key path that held it, because
``json`` would silently turn it into something else or fail later. Stored text is
decoded with ``json.loads`` only; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
from typing import Any


class SessionDataError(ValueError):
    """The session cannot be stored: a value outside the JSON contract, or too large."""

    code = "session_not_serializable"


class SessionTooLarge(SessionDataError):
    code = "session_too_large"


class SessionDecodeError(ValueError):
    """A stored row is not a JSON object."""


def _check(value: Any, path: str) -> None:
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return
    if kind is float:
        if not math.isfinite(value):
            raise SessionDataError(f"session key {path!r} holds a non-finite float, which JSON cannot store")
        return
    if kind is list:
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise SessionDataError(f"session key {path!r} has a non-string key {key!r}")
            _check(item, f"{path}.{key}")
        return
    raise SessionDataError(
        f"session key {path!r} holds a {kind.__module__}.{kind.__qualname__}, which is not a JSON type; "
        "store str, int, float, bool, None, list or dict (convert lazy strings with str())"
    )


def encode(data: dict[str, Any], max_bytes: int) -> str:
    """Return the JSON text of ``data``; raise SessionDataError when it breaks the contract."""
    for key, value in data.items():
        if type(key) is not str:
            raise SessionDataError(f"session has a non-string key {key!r}")
        _check(value, key)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise SessionTooLarge(f"session is {size} bytes serialized, above SESSION_MAX_BYTES={max_bytes}")
    return text


def decode(text: str | bytes) -> dict[str, Any]:
    """Parse stored session text; raise SessionDecodeError unless it is a JSON object."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise SessionDecodeError(f"stored session is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SessionDecodeError(f"stored session is a JSON {type(data).__name__}, not an object")
    return data
