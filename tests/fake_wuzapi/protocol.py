"""Wire helpers shared by the fake: responses, WUZAPI envelopes and Go-style body decoding."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

JSON_TYPE = "application/json"


@dataclass
class Request:
    """One HTTP request as the fake's handlers see it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def query_value(self, name: str) -> str:
        """Return the first value of query parameter `name`, or "" like Go's URL.Query().Get."""
        values = self.query.get(name)
        return values[0] if values else ""


@dataclass
class Response:
    """A complete HTTP response produced by a handler.

    `hold_seconds` delays sending (the blocking connect). `drop_connection` closes the
    connection without any response, as Go's net/http does after a handler panic.
    """

    status: int
    body: bytes
    content_type: str | None = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    hold_seconds: float = 0.0
    drop_connection: bool = False


def encode_json(value: Any, sort_keys: bool = True) -> bytes:
    """Encode like Go's json.Encoder: compact, a trailing newline, map keys sorted."""
    text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def json_response(status: int, value: Any, sort_keys: bool = True) -> Response:
    return Response(status, encode_json(value, sort_keys=sort_keys))


def ok(data: Any, status: int = 200) -> Response:
    """Build WUZAPI's success envelope."""
    return json_response(status, {"code": status, "data": data, "success": True})


def error(status: int, message: str) -> Response:
    """Build WUZAPI's error envelope."""
    return json_response(status, {"code": status, "error": message, "success": False})


def not_found_text() -> Response:
    """Build Go's http.NotFound reply, which WUZAPI's static catch-all returns for unknown paths."""
    return Response(
        404,
        b"404 page not found\n",
        content_type="text/plain; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


class DecodeError(ValueError):
    """Raised when a body would fail Go's json.Decoder.Decode into the handler's struct."""


# Field kinds for decode_struct, named after the Go types they stand for.
STRING = "string"
BOOL = "bool"
FLOAT = "float64"
INT = "int"
STRINGS = "[]string"
LIST = "[]any"
OBJECT = "object"

_ZERO_VALUES: dict[str, Any] = {
    STRING: "",
    BOOL: False,
    FLOAT: 0.0,
    INT: 0,
    STRINGS: [],
    LIST: [],
    OBJECT: None,
}


def _has_kind(value: Any, kind: str) -> bool:
    if kind == STRING:
        return isinstance(value, str)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == FLOAT:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == INT:
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == STRINGS:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if kind == LIST:
        return isinstance(value, list)
    if kind == OBJECT:
        return isinstance(value, dict)
    raise ValueError(f"unknown field kind {kind!r}")


def parse_json_body(body: bytes) -> Any:
    """Parse a request body as JSON, raising DecodeError for an empty or invalid body."""
    if not body.strip():
        raise DecodeError("empty body")
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(str(exc)) from exc


def decode_fields(value: Any, fields: Mapping[str, str]) -> dict[str, Any]:
    """Decode a parsed JSON value into `fields` (name -> kind) the way Go fills a struct.

    Keys match field names case-insensitively and the last matching key wins. Unknown keys
    and null values are ignored, missing fields get the Go zero value, and a value of the
    wrong type raises DecodeError. The result also lists, under "__present__", the fields
    that were given a non-null value.
    """
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise DecodeError("body is not a JSON object")

    by_lower_name = {name.lower(): name for name in fields}
    result: dict[str, Any] = {name: _zero(kind) for name, kind in fields.items()}
    present: set[str] = set()
    for key, item in value.items():
        name = by_lower_name.get(key.lower())
        if name is None or item is None:
            continue
        if not _has_kind(item, fields[name]):
            raise DecodeError(f"field {key!r} has the wrong type")
        result[name] = int(item) if fields[name] == INT else item
        present.add(name)
    result["__present__"] = present
    return result


def decode_struct(body: bytes, fields: Mapping[str, str]) -> dict[str, Any]:
    """Parse `body` and decode it with decode_fields."""
    return decode_fields(parse_json_body(body), fields)


def _zero(kind: str) -> Any:
    zero = _ZERO_VALUES[kind]
    return list(zero) if isinstance(zero, list) else zero


class Rejected(Exception):
    """Raised by a handler to stop early and send `response` (usually an error envelope)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def decode_or_reject(
    body: bytes, fields: Mapping[str, str], message: str = "could not decode Payload"
) -> tuple[Any, dict[str, Any]]:
    """Parse and decode `body` into (raw JSON, decoded fields), or raise Rejected with a 400."""
    try:
        raw = parse_json_body(body)
        return raw, decode_fields(raw, fields)
    except DecodeError:
        raise Rejected(error(400, message)) from None
