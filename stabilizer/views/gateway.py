"""The gateway: ``/api/wuzapi/<path>`` forwarded to ``WUZAPI_BASE_URL/<path>``.

Only plain relative paths are forwarded: no ``.`` or ``..`` segments, no empty segments
(``//host``), no scheme, no encoded slash, backslash or dot. The upstream URL is the
configured base URL plus the validated path, so no request can reach another host.
"""

from __future__ import annotations

import json
import re
import secrets

from flask import Blueprint, Response, g, request

from ..errors import ApiError
from ..wuzapi import routes
from ..wuzapi.errors import WuzapiError
from .common import current_user, require_json_body, runtime, session_token, wuzapi_error

bp = Blueprint("gateway", __name__, url_prefix="/api/wuzapi")

SEGMENT = re.compile(r"^[A-Za-z0-9_~@:+=,.!$'()*;-]+$")
ENCODED_FORBIDDEN = re.compile(r"%(2f|5c|2e|25|00)", re.IGNORECASE)
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept")
CREDENTIAL_HEADERS = ("Token", "Authorization")


def validate_path(subpath: str) -> str:
    """Return ``/subpath`` when it is a plain relative WUZAPI path; raise 400 invalid_path otherwise."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    raw_path = raw.split("?", 1)[0]
    if ENCODED_FORBIDDEN.search(raw_path) or "\\" in raw_path:
        raise ApiError("invalid_path")
    segments = subpath.split("/")
    if subpath.startswith("/") or any(not segment for segment in segments):
        raise ApiError("invalid_path")
    for segment in segments:
        if segment in {".", ".."} or not SEGMENT.match(segment):
            raise ApiError("invalid_path")
    if ":" in segments[0]:
        raise ApiError("invalid_path")  # "http:" and similar scheme forms
    return "/" + subpath


def new_message_id() -> str:
    """Return an id in WhatsApp's own format: 3EB0 and 18 upper-case hex digits."""
    return "3EB0" + secrets.token_hex(9).upper()


def ensure_message_id(path: str, body: bytes) -> tuple[bytes, str | None]:
    """Set ``Id`` on a send that lacks one, so an unknown outcome can be checked later."""
    if path not in routes.ID_SENDS:
        return body, None
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        return body, None
    if not isinstance(payload, dict):
        return body, None
    for key, value in payload.items():
        if key.lower() == "id" and isinstance(value, str) and value:
            return body, value
    payload = {key: value for key, value in payload.items() if key.lower() != "id"}
    payload["Id"] = new_message_id()
    return json.dumps(payload, ensure_ascii=False).encode("utf-8"), payload["Id"]


def upstream_credentials(path: str) -> dict[str, str]:
    """Return the credential header for WUZAPI: the caller's own, else the session's."""
    passed = {name: request.headers[name] for name in CREDENTIAL_HEADERS if name in request.headers}
    if passed:
        return passed

    user = current_user()
    token = session_token() if user else None
    if not user or not token:
        raise ApiError("not_authenticated")
    if request.method in {"POST", "PUT", "DELETE"}:
        require_json_body()  # cookie-authenticated writes must not be plain cross-site form posts
    if path.startswith("/admin/") or path == "/admin":
        if user.get("role") != "admin":
            raise ApiError("forbidden")
        return {"Authorization": token}
    return {"Token": token}


# merge_slashes off: "//host" must reach validate_path and be rejected, not be redirected.
@bp.route("/<path:subpath>", methods=["GET", "POST", "PUT", "DELETE"], merge_slashes=False)
def forward(subpath: str) -> Response:
    path = validate_path(subpath)
    headers = upstream_credentials(path)
    for name in FORWARDED_REQUEST_HEADERS:
        if name in request.headers:
            headers[name] = request.headers[name]
    headers["X-Request-ID"] = g.request_id

    body = request.get_data(cache=False) if request.method in {"POST", "PUT", "DELETE"} else None
    message_id = None
    if request.method == "POST" and body is not None:
        body, message_id = ensure_message_id(path, body)
    try:
        answer = runtime().client.call(request.method, path, query=list(request.args.items(multi=True)),
                                       body=body, headers=headers)
    except WuzapiError as exc:
        safety = routes.safety(request.method, path, request.args.to_dict())
        raise wuzapi_error(exc, message_id=message_id, repeatable=safety.repeatable) from exc

    response = Response(answer.body, status=answer.status,
                        content_type=answer.headers.get("Content-Type", "application/octet-stream"))
    for name, value in answer.headers.items():
        if name.lower() not in {"date", "server", "content-type"}:
            response.headers[name] = value
    response.headers["X-Upstream-Attempts"] = str(answer.attempts)
    return response


@bp.before_app_request
def reject_network_path() -> None:
    """Reject ``/api/wuzapi//host/...``, the scheme-relative form of an absolute URL.

    The router never matches it (a path variable cannot start with a slash), so it is
    caught before routing turns it into a 404.
    """
    if request.path.startswith(bp.url_prefix + "//"):
        raise ApiError("invalid_path")
