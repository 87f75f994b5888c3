"""Tests for the fake WUZAPI server in tests/fake_wuzapi, run against a real loopback socket."""

from __future__ import annotations

import base64
import http.client
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.fake_wuzapi import FakeWuzapi, PairingError

REPO_ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "admin-secret-token"
ALICE = "alice-token-123"
BOB = "bob-token-456"
PHONE = "5491155553935"
GENERATED_ID = re.compile(r"^3EB0[0-9A-F]{18}$")
PAIRED_JID = re.compile(r"^\d{8,15}\.0:1@s\.whatsapp\.net$")

UNAUTHORIZED = b'{"code":401,"error":"unauthorized","success":false}\n'

# A valid payload for every send-like endpoint, and the "Details" its reply contains.
VALID_SENDS = {
    "/chat/send/text": ({"Phone": PHONE, "Body": "hello"}, "Sent"),
    "/chat/send/image": ({"Phone": PHONE, "Image": "data:image/png;base64,iVBORw0KGgo="}, "Sent"),
    "/chat/send/audio": ({"Phone": PHONE, "Audio": "data:audio/ogg;base64,T2dnUw=="}, "Sent"),
    "/chat/send/document": (
        {"Phone": PHONE, "Document": "data:application/pdf;base64,JVBERi0=", "FileName": "a.pdf"},
        "Sent",
    ),
    "/chat/send/video": ({"Phone": PHONE, "Video": "data:video/mp4;base64,AAAAIGZ0eXA="}, "Sent"),
    "/chat/send/sticker": ({"Phone": PHONE, "Sticker": "data:image/webp;base64,UklGRg=="}, "Sent"),
    "/chat/send/location": (
        {"Phone": PHONE, "Latitude": -34.6, "Longitude": -58.4, "Name": "Office"},
        "Sent",
    ),
    "/chat/send/contact": (
        {"Phone": PHONE, "Name": "Ana", "Vcard": "BEGIN:VCARD\nVERSION:3.0\nFN:Ana\nEND:VCARD"},
        "Sent",
    ),
    "/chat/send/buttons": (
        {"Phone": PHONE, "Body": "Pick one", "Buttons": [{"type": "reply", "title": "Yes", "id": "y"}]},
        "Sent",
    ),
    "/chat/send/list": (
        {
            "Phone": PHONE,
            "Desc": "Menu",
            "ButtonText": "Open",
            "Sections": [{"title": "Food", "rows": [{"title": "Pizza", "desc": "", "RowId": "1"}]}],
        },
        "Sent",
    ),
    "/chat/send/poll": (
        {"group": "120363000000000000@g.us", "header": "Lunch?", "options": ["Yes", "No"]},
        "Poll sent successfully",
    ),
    "/chat/send/edit": ({"Phone": PHONE, "Body": "fixed", "Id": "3EB0AAAAAAAAAAAAAAAAAA"}, "Sent"),
    "/chat/delete": ({"Phone": PHONE, "Id": "3EB0BBBBBBBBBBBBBBBBBB"}, "Deleted"),
    "/chat/react": ({"Phone": PHONE, "Body": "\U0001F44D", "Id": "me:3EB0CCCCCCCCCCCCCCCCCC"}, "Sent"),
    "/chat/presence": ({"Phone": PHONE, "State": "composing"}, "Chat presence set successfuly"),
    "/chat/markread": ({"Id": ["3EB0DDDDDDDDDDDDDDDDDD"], "ChatPhone": PHONE}, "Message(s) marked as read"),
    "/status/set/text": ({"Body": "Busy"}, "Set"),
}

# Endpoints whose reply carries {"Details", "Id", "Timestamp"}.
MESSAGE_REPLY_PATHS = [
    path
    for path, (_, details) in VALID_SENDS.items()
    if details in ("Sent", "Deleted")
]


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
def fake():
    server = FakeWuzapi(
        admin_token=ADMIN_TOKEN,
        users={"alice": ALICE, "bob": BOB},
        connect_hold_ms=300,
    ).start()
    yield server
    server.stop()


def call(fake, method, path, token=None, json_body=None, data=None, headers=None, timeout=5):
    headers = dict(headers or {})
    if token is not None:
        headers["Token"] = token
    return requests.request(
        method, fake.url + path, headers=headers, json=json_body, data=data, timeout=timeout
    )


def admin_call(fake, method, path, json_body=None, token=ADMIN_TOKEN):
    return call(fake, method, path, json_body=json_body, headers={"Authorization": token})


def connect(fake, token):
    response = call(fake, "POST", "/session/connect", token, {"Immediate": True})
    assert response.status_code == 200, response.text


def login(fake, token):
    connect(fake, token)
    return fake.pair(token)


def raw_connection(fake, timeout):
    return http.client.HTTPConnection("127.0.0.1", fake.port, timeout=timeout)


def raw_send_text(fake, token, timeout=5, message_id=None):
    """Send a text with http.client so connection errors surface unwrapped."""
    payload = {"Phone": PHONE, "Body": "hi"}
    if message_id is not None:
        payload["Id"] = message_id
    connection = raw_connection(fake, timeout)
    try:
        connection.request(
            "POST",
            "/chat/send/text",
            body=json.dumps(payload),
            headers={"Token": token, "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_go_json(body: bytes):
    """Assert the body is compact JSON with sorted keys at every level and a trailing newline."""
    assert body.endswith(b"\n")
    parsed = json.loads(body)
    expected = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    assert body == expected.encode("utf-8")
    return parsed


def error_body(status, message):
    envelope = {"code": status, "error": message, "success": False}
    return json.dumps(envelope, separators=(",", ":")).encode() + b"\n"


def last_log_entry(fake, path):
    entries = [entry for entry in fake.requests() if entry["path"] == path]
    assert entries, f"no request to {path} in the log"
    return entries[-1]


def wait_for_log_entry(fake, path, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(entry["path"] == path for entry in fake.requests()):
            return
        time.sleep(0.02)
    raise AssertionError(f"no request to {path} logged within {timeout} s")


# --- routing, auth and envelope --------------------------------------------------------


def test_health_needs_no_auth_and_keeps_field_order(fake):
    response = call(fake, "GET", "/health")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.content.endswith(b"\n")
    body = json.loads(response.content, object_pairs_hook=lambda pairs: pairs)
    keys = [key for key, _ in body]
    assert keys == [
        "status", "timestamp", "uptime", "active_connections", "total_users",
        "connected_users", "logged_in_users", "memory_stats", "goroutines", "version",
    ]
    data = response.json()
    assert data["status"] == "ok"
    assert data["total_users"] == 2
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["timestamp"])
    assert re.fullmatch(r"(\d+h)?(\d+m)?\d+(\.\d)?s", data["uptime"])
    assert list(data["memory_stats"]) == ["alloc_mb", "num_gc", "sys_mb", "total_alloc_mb"]


def test_health_counts_connected_and_logged_in(fake):
    login(fake, ALICE)
    connect(fake, BOB)
    data = call(fake, "GET", "/health").json()
    assert data["connected_users"] == 2
    assert data["logged_in_users"] == 1


def test_unknown_path_is_go_plain_404(fake):
    for method, path in [("GET", "/nope"), ("GET", "/chat/send/text"), ("POST", "/session/status")]:
        response = call(fake, method, path, ALICE)
        assert response.status_code == 404, (method, path)
        assert response.content == b"404 page not found\n"
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_head_and_options_get_go_404(fake):
    head = call(fake, "HEAD", "/session/status", ALICE)
    assert head.status_code == 404
    assert head.content == b""
    assert head.headers["Content-Length"] == "19"
    assert call(fake, "OPTIONS", "/session/status", ALICE).content == b"404 page not found\n"


def test_user_auth_token_header_and_query(fake):
    assert call(fake, "GET", "/session/status", ALICE).status_code == 200
    lowercase = call(fake, "GET", "/session/status", headers={"token": ALICE})
    assert lowercase.status_code == 200
    by_query = call(fake, "GET", f"/session/status?token={ALICE}")
    assert by_query.status_code == 200
    assert by_query.json()["data"]["name"] == "alice"


def test_user_auth_rejects_missing_wrong_and_authorization(fake):
    cases = [
        {},
        {"Token": "wrong"},
        {"Authorization": ALICE},
        {"Authorization": f"Bearer {ALICE}"},
    ]
    for headers in cases:
        response = call(fake, "GET", "/session/status", headers=headers)
        assert response.status_code == 401, headers
        assert response.content == UNAUTHORIZED
        assert response.headers["Content-Type"] == "application/json"


def test_admin_auth(fake):
    assert admin_call(fake, "GET", "/admin/users").status_code == 200
    for headers in [{}, {"Authorization": "wrong"}, {"Authorization": f"Bearer {ADMIN_TOKEN}"},
                    {"Token": ADMIN_TOKEN}, {"Authorization": ALICE}]:
        response = call(fake, "GET", "/admin/users", headers=headers)
        assert response.status_code == 401, headers
        assert response.content == UNAUTHORIZED


def test_envelope_sorted_compact_with_newline(fake):
    login(fake, ALICE)
    for method, path, body in [
        ("GET", "/session/status", None),
        ("POST", "/chat/send/text", {"Phone": PHONE, "Body": "x"}),
        ("POST", "/chat/send/text", {"Phone": PHONE}),
        ("GET", "/webhook", None),
    ]:
        response = call(fake, method, path, ALICE, body)
        assert response.headers["Content-Type"] == "application/json"
        parsed = assert_go_json(response.content)
        assert parsed["code"] == response.status_code
        assert parsed["success"] is (response.status_code == 200)
    admin = admin_call(fake, "GET", "/admin/users")
    assert_go_json(admin.content)


def test_keep_alive_serves_several_requests(fake):
    connection = raw_connection(fake, timeout=5)
    try:
        for _ in range(3):
            connection.request("GET", "/session/status", headers={"Token": ALICE})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200
            assert int(response.getheader("Content-Length")) == len(body)
            assert response.getheader("Server") is None
    finally:
        connection.close()


def test_body_decoding_errors(fake):
    connect(fake, ALICE)
    for data in [b"", b"{not json", b"[1, 2]", b'"text"', b'{"Phone": 123, "Body": "x"}']:
        response = call(fake, "POST", "/chat/send/text", ALICE, data=data)
        assert response.status_code == 400, data
        assert response.content == error_body(400, "could not decode Payload")
    poll = call(fake, "POST", "/chat/send/poll", ALICE, data=b"")
    assert poll.content == error_body(400, "could not decode payload")
    empty_connect = call(fake, "POST", "/session/connect", BOB, data=b"")
    assert empty_connect.content == error_body(400, "could not decode Payload")


def test_chunked_request_body(fake):
    login(fake, ALICE)
    chunks = iter([b'{"Phone": "', PHONE.encode(), b'", "Body": "chunked"}'])
    response = call(fake, "POST", "/chat/send/text", ALICE, data=chunks)
    assert response.status_code == 200
    assert fake.user(ALICE)["outbox"][0]["payload"]["Body"] == "chunked"
    assert last_log_entry(fake, "/chat/send/text")["headers"]["Transfer-Encoding"] == "chunked"


def test_connection_close_is_honoured(fake):
    connection = raw_connection(fake, timeout=5)
    connection.request("GET", "/health", headers={"Connection": "close"})
    response = connection.getresponse()
    response.read()
    assert response.getheader("Connection") == "close"
    assert response.will_close
    connection.close()


def test_field_names_match_case_insensitively(fake):
    login(fake, ALICE)
    response = call(fake, "POST", "/chat/send/text", ALICE, {"pHoNe": PHONE, "BODY": "x", "id": "MYID"})
    assert response.status_code == 200
    assert response.json()["data"]["Id"] == "MYID"


# --- session ---------------------------------------------------------------------------


def test_status_without_client(fake):
    response = call(fake, "GET", "/session/status", ALICE)
    data = response.json()["data"]
    assert set(data) == {
        "connected", "events", "history", "hmac_configured", "id", "jid", "loggedIn", "name",
        "proxy_config", "proxy_url", "qrcode", "s3_config", "token", "webhook",
    }
    assert data["connected"] is False
    assert data["loggedIn"] is False
    assert re.fullmatch(r"[0-9a-f]{12}", data["id"])
    assert data["name"] == "alice"
    assert data["token"] == ALICE
    assert data["jid"] == ""
    assert data["s3_config"]["access_key"] == "***"


def test_connect_immediate_then_already_connected(fake):
    started = time.monotonic()
    response = call(fake, "POST", "/session/connect", ALICE, {"Immediate": True})
    assert time.monotonic() - started < 0.25
    assert response.content == (
        b'{"code":200,"data":{"details":"Connected!","events":"","jid":"","webhook":""},"success":true}\n'
    )
    status = call(fake, "GET", "/session/status", ALICE).json()["data"]
    assert status["connected"] is True
    assert status["loggedIn"] is False

    again = call(fake, "POST", "/session/connect", ALICE, {"Immediate": True})
    assert again.status_code == 500
    assert again.content == error_body(500, "already connected")


def test_connect_without_immediate_holds_reply(fake):
    for body in [{}, {"Immediate": False}]:
        started = time.monotonic()
        response = call(fake, "POST", "/session/connect", ALICE, body)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert 0.28 <= elapsed < 3.0
        call(fake, "POST", "/session/disconnect", ALICE)


def test_connect_filters_subscriptions_and_keeps_them(fake):
    body = {"Subscribe": ["Message", "Bogus", "ReadReceipt"], "Immediate": True}
    response = call(fake, "POST", "/session/connect", ALICE, body)
    assert response.json()["data"]["events"] == "Message,ReadReceipt"
    call(fake, "POST", "/session/disconnect", ALICE)
    response = call(fake, "POST", "/session/connect", ALICE, {"Immediate": True})
    assert response.json()["data"]["events"] == "Message,ReadReceipt"


def test_qr_errors_and_code_after_connect(fake):
    assert call(fake, "GET", "/session/qr", ALICE).content == error_body(500, "no session")
    connect(fake, ALICE)
    response = call(fake, "GET", "/session/qr", ALICE)
    assert response.status_code == 200
    qr_code = response.json()["data"]["QRCode"]
    prefix = "data:image/png;base64,"
    assert qr_code.startswith(prefix)
    assert base64.b64decode(qr_code[len(prefix):]).startswith(b"\x89PNG\r\n\x1a\n")
    assert call(fake, "GET", "/session/status", ALICE).json()["data"]["qrcode"] == qr_code

    fake.pair(ALICE)
    assert call(fake, "GET", "/session/qr", ALICE).content == error_body(500, "already logged in")


def test_pair_control_endpoint(fake):
    not_connected = call(fake, "POST", "/__fake__/pair", json_body={"token": ALICE})
    assert not_connected.status_code == 409
    assert "connect" in not_connected.json()["error"]

    connect(fake, ALICE)
    response = call(fake, "POST", "/__fake__/pair", json_body={"token": ALICE})
    assert response.status_code == 200
    assert PAIRED_JID.match(response.json()["jid"])
    status = call(fake, "GET", "/session/status", ALICE).json()["data"]
    assert status["loggedIn"] is True
    assert status["jid"] == response.json()["jid"]
    assert status["qrcode"] == ""

    again = call(fake, "POST", "/__fake__/pair", json_body={"token": ALICE})
    assert again.status_code == 409
    assert "already logged in" in again.json()["error"]
    unknown = call(fake, "POST", "/__fake__/pair", json_body={"token": "nobody"})
    assert unknown.status_code == 404
    missing = call(fake, "POST", "/__fake__/pair", json_body={})
    assert missing.status_code == 400


def test_pair_python_api(fake):
    with pytest.raises(PairingError) as info:
        fake.pair(BOB)
    assert info.value.status == 409
    connect(fake, BOB)
    assert fake.pair(BOB, phone="5511988887777") == "5511988887777.0:1@s.whatsapp.net"
    assert fake.user(BOB)["logged_in"] is True


def test_disconnect_keeps_pairing_and_reconnect_logs_in(fake):
    assert call(fake, "POST", "/session/disconnect", ALICE).content == error_body(500, "no session")
    jid = login(fake, ALICE)
    response = call(fake, "POST", "/session/disconnect", ALICE)
    assert response.json()["data"] == {"Details": "Disconnected"}
    status = call(fake, "GET", "/session/status", ALICE).json()["data"]
    assert (status["connected"], status["loggedIn"], status["jid"]) == (False, False, jid)
    assert call(fake, "POST", "/chat/send/text", ALICE, {"Phone": PHONE, "Body": "x"}).content == (
        error_body(500, "no session")
    )

    connect(fake, ALICE)
    status = call(fake, "GET", "/session/status", ALICE).json()["data"]
    assert status["loggedIn"] is True
    assert call(fake, "GET", "/session/qr", ALICE).content == error_body(500, "already logged in")


def test_disconnect_clear_drops_events(fake):
    call(fake, "POST", "/session/connect", ALICE, {"Subscribe": ["Message"], "Immediate": True})
    call(fake, "POST", "/session/disconnect?clear=true", ALICE)
    assert call(fake, "GET", "/session/status", ALICE).json()["data"]["events"] == ""


def test_logout(fake):
    assert call(fake, "POST", "/session/logout", ALICE).content == error_body(500, "no session")
    connect(fake, ALICE)
    not_logged_in = call(fake, "POST", "/session/logout", ALICE)
    assert not_logged_in.content == error_body(500, "could not logout as it was not logged in")

    fake.pair(ALICE)
    response = call(fake, "POST", "/session/logout", ALICE)
    assert response.json()["data"] == {"Details": "Logged out"}
    status = call(fake, "GET", "/session/status", ALICE).json()["data"]
    assert (status["connected"], status["loggedIn"], status["jid"]) == (False, False, "")
    assert call(fake, "POST", "/session/logout", ALICE).content == error_body(500, "no session")

    connect(fake, ALICE)
    assert call(fake, "GET", "/session/qr", ALICE).status_code == 200


def test_pairphone(fake):
    assert call(fake, "POST", "/session/pairphone", ALICE, {"Phone": PHONE}).content == (
        error_body(500, "no session")
    )
    connect(fake, ALICE)
    assert call(fake, "POST", "/session/pairphone", ALICE, {}).content == (
        error_body(400, "missing Phone in Payload")
    )
    response = call(fake, "POST", "/session/pairphone", ALICE, {"Phone": PHONE})
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", response.json()["data"]["LinkingCode"])
    fake.pair(ALICE)
    assert call(fake, "POST", "/session/pairphone", ALICE, {"Phone": PHONE}).content == (
        error_body(400, "already paired")
    )


# --- sends -----------------------------------------------------------------------------


def test_send_text_echoes_caller_id(fake):
    login(fake, ALICE)
    before = int(time.time())
    body = {"Phone": PHONE, "Body": "Hello", "Id": "3EB0A1B2C3D4E5F6A7B8C9"}
    response = call(fake, "POST", "/chat/send/text", ALICE, body)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["Details"] == "Sent"
    assert data["Id"] == "3EB0A1B2C3D4E5F6A7B8C9"
    assert isinstance(data["Timestamp"], int)
    assert before <= data["Timestamp"] <= int(time.time())
    outbox = fake.user(ALICE)["outbox"]
    assert [(item["path"], item["id"]) for item in outbox] == [("/chat/send/text", data["Id"])]


def test_send_text_generates_whatsmeow_id(fake):
    login(fake, ALICE)
    ids = set()
    for _ in range(5):
        data = call(fake, "POST", "/chat/send/text", ALICE, {"Phone": PHONE, "Body": "x"}).json()["data"]
        assert GENERATED_ID.match(data["Id"]), data["Id"]
        ids.add(data["Id"])
    assert len(ids) == 5


def test_every_send_without_client_is_no_session(fake):
    for path, (payload, _) in VALID_SENDS.items():
        response = call(fake, "POST", path, ALICE, payload)
        assert response.status_code == 500, path
        assert response.content == error_body(500, "no session"), path


def test_every_send_before_pairing_is_not_logged_in(fake):
    connect(fake, ALICE)
    for path, (payload, _) in VALID_SENDS.items():
        response = call(fake, "POST", path, ALICE, payload)
        assert response.status_code == 500, path
        assert response.content == error_body(500, "error sending message: not logged in"), path
    assert fake.user(ALICE)["outbox"] == []


def test_every_send_succeeds_when_logged_in(fake):
    login(fake, ALICE)
    for path, (payload, details) in VALID_SENDS.items():
        response = call(fake, "POST", path, ALICE, payload)
        assert response.status_code == 200, (path, response.text)
        data = assert_go_json(response.content)["data"]
        assert data["Details"] == details, path
        if path in MESSAGE_REPLY_PATHS:
            assert set(data) == {"Details", "Id", "Timestamp"}, path
            assert isinstance(data["Timestamp"], int), path
    assert len(fake.user(ALICE)["outbox"]) == len(VALID_SENDS)


def test_send_reply_ids(fake):
    login(fake, ALICE)
    poll = call(fake, "POST", "/chat/send/poll", ALICE, VALID_SENDS["/chat/send/poll"][0]).json()["data"]
    assert set(poll) == {"Details", "Id"}
    assert GENERATED_ID.match(poll["Id"])
    react = call(fake, "POST", "/chat/react", ALICE, VALID_SENDS["/chat/react"][0]).json()["data"]
    assert react["Id"] == "3EB0CCCCCCCCCCCCCCCCCC"
    edit = call(fake, "POST", "/chat/send/edit", ALICE, VALID_SENDS["/chat/send/edit"][0]).json()["data"]
    assert edit["Id"] == "3EB0AAAAAAAAAAAAAAAAAA"
    delete = call(fake, "POST", "/chat/delete", ALICE, VALID_SENDS["/chat/delete"][0]).json()["data"]
    assert delete["Id"] == "3EB0BBBBBBBBBBBBBBBBBB"


@pytest.mark.parametrize(
    ("path", "payload", "message"),
    [
        ("/chat/send/text", {"Phone": PHONE}, "missing Body in Payload"),
        ("/chat/send/text", {"Body": "x"}, "missing Phone in Payload"),
        ("/chat/send/image", {"Phone": PHONE}, "missing Image in Payload"),
        ("/chat/send/image", {"Phone": PHONE, "Image": "iVBORw0KGgo="},
         'Image data should start with "data:image/png;base64,"'),
        ("/chat/send/audio", {"Phone": PHONE}, "missing Audio in Payload"),
        ("/chat/send/document", {"Phone": PHONE, "Document": "data:;base64,AA=="},
         "missing FileName in Payload"),
        ("/chat/send/video", {"Phone": PHONE}, "missing Video in Payload"),
        ("/chat/send/sticker", {"Phone": PHONE}, "missing Sticker in Payload"),
        ("/chat/send/location", {"Phone": PHONE, "Latitude": 0, "Longitude": 1.5},
         "missing Latitude in Payload"),
        ("/chat/send/contact", {"Phone": PHONE, "Name": "Ana"}, "missing Vcard in Payload"),
        ("/chat/send/buttons", {"Phone": PHONE, "Body": "x"}, "missing Phone, Body or Buttons"),
        ("/chat/send/buttons", {"Phone": PHONE, "Body": "x", "Buttons": [{"type": "bogus"}]},
         "no valid buttons parsed"),
        ("/chat/send/list", {"Phone": PHONE, "Desc": "x"}, "missing Sections in Payload"),
        ("/chat/send/poll", {"header": "h", "options": ["a", "b"]}, "missing Grouop in payload"),
        ("/chat/send/edit", {"Phone": PHONE, "Body": "x"}, "missing Id in Payload"),
        ("/chat/delete", {"Phone": PHONE}, "missing Id in Payload"),
        ("/chat/react", {"Phone": PHONE, "Body": "x"}, "missing Id in Payload"),
        ("/chat/markread", {"ChatPhone": PHONE}, "missing Id in Payload"),
        ("/chat/markread", {"Id": ["x"]}, "missing ChatPhone in Payload"),
        ("/status/set/text", {}, "missing Body in Payload"),
        ("/chat/send/text", {"Phone": "@s.whatsapp.net", "Body": "x"}, "could not parse Phone"),
        ("/chat/send/text", {"Phone": PHONE, "Body": "x", "ContextInfo": {"StanzaId": "ABC"}},
         "missing Participant in ContextInfo"),
        ("/chat/send/text", {"Phone": PHONE, "Body": "x", "ContextInfo": {"Participant": "1@s.whatsapp.net"}},
         "missing StanzaID in ContextInfo"),
    ],
)
def test_send_validation_errors(fake, path, payload, message):
    connect(fake, ALICE)
    response = call(fake, "POST", path, ALICE, payload)
    assert response.status_code == 400
    assert response.content == error_body(400, message)


def test_send_video_too_short_drops_connection(fake):
    login(fake, ALICE)
    connection = raw_connection(fake, timeout=5)
    body = json.dumps({"Phone": PHONE, "Video": "abc"})
    connection.request("POST", "/chat/send/video", body=body, headers={"Token": ALICE})
    with pytest.raises(http.client.RemoteDisconnected):
        connection.getresponse()
    connection.close()


# --- user and webhook ------------------------------------------------------------------


def test_user_check(fake):
    body = {"Phone": ["5491155553934", "5491155550000"]}
    assert call(fake, "POST", "/user/check", ALICE, body).content == error_body(500, "no session")
    login(fake, ALICE)
    assert call(fake, "POST", "/user/check", ALICE, {}).content == error_body(400, "missing Phone in Payload")
    users = call(fake, "POST", "/user/check", ALICE, body).json()["data"]["Users"]
    assert users == [
        {
            "IsInWhatsapp": True,
            "JID": "5491155553934@s.whatsapp.net",
            "Query": "5491155553934",
            "VerifiedName": "",
        },
        {
            "IsInWhatsapp": False,
            "JID": "5491155550000@s.whatsapp.net",
            "Query": "5491155550000",
            "VerifiedName": "",
        },
    ]


def test_user_info(fake):
    connect(fake, ALICE)
    jid = f"{PHONE}@s.whatsapp.net"
    not_logged_in = call(fake, "POST", "/user/info", ALICE, {"Phone": [jid]})
    assert not_logged_in.status_code == 500
    assert not_logged_in.content == b'{"code":500,"success":true}\n'
    fake.pair(ALICE)
    bare_number = call(fake, "POST", "/user/info", ALICE, {"Phone": [PHONE]})
    assert bare_number.status_code == 200
    assert bare_number.content == b""
    users = call(fake, "POST", "/user/info", ALICE, {"Phone": [jid]}).json()["data"]["Users"]
    assert list(users) == [jid]
    assert {"Devices", "PictureID", "Status", "VerifiedName"} <= set(users[jid])


def test_user_avatar_and_contacts(fake):
    connect(fake, ALICE)
    assert call(fake, "GET", "/user/contacts", ALICE).json()["data"] == {}
    fake.pair(ALICE)
    avatar = call(fake, "POST", "/user/avatar", ALICE, {"Phone": PHONE, "Preview": True}).json()["data"]
    assert set(avatar) == {"DirectPath", "ID", "Type", "URL"}
    assert avatar["Type"] == "preview"
    missing = call(fake, "POST", "/user/avatar", ALICE, {"Phone": "5491155550000"})
    assert missing.content == error_body(500, "no avatar found")
    contacts = call(fake, "GET", "/user/contacts", ALICE).json()["data"]
    assert contacts
    for jid, contact in contacts.items():
        assert jid.endswith("@s.whatsapp.net")
        assert set(contact) == {"BusinessName", "FirstName", "Found", "FullName", "PushName"}


def test_webhook_crud(fake):
    assert call(fake, "GET", "/webhook", ALICE).json()["data"] == {"subscribe": [""], "webhook": ""}

    body = {"webhookURL": "https://hooks.example.com/wa", "events": ["Message", "Nope", "ReadReceipt"]}
    response = call(fake, "POST", "/webhook", ALICE, body)
    assert response.json()["data"] == {"webhook": "https://hooks.example.com/wa"}
    assert call(fake, "GET", "/webhook", ALICE).json()["data"] == {
        "subscribe": ["Message", "ReadReceipt"],
        "webhook": "https://hooks.example.com/wa",
    }

    call(fake, "POST", "/webhook", ALICE, {"webhookurl": "https://other.example.com"})
    data = call(fake, "GET", "/webhook", ALICE).json()["data"]
    assert data == {"subscribe": ["Message", "ReadReceipt"], "webhook": "https://other.example.com"}

    update = {"webhook": "https://third.example.com", "events": ["All"], "active": True}
    assert call(fake, "PUT", "/webhook", ALICE, update).json()["data"] == {
        "active": True, "events": ["All"], "webhook": "https://third.example.com",
    }
    inactive = call(fake, "PUT", "/webhook", ALICE, {"webhook": "https://x.example.com"})
    assert inactive.json()["data"] == {"active": False, "events": [], "webhook": ""}

    call(fake, "POST", "/webhook", ALICE, {"webhookURL": "https://again.example.com"})
    deleted = call(fake, "DELETE", "/webhook", ALICE)
    assert deleted.json()["data"] == {"Details": "Webhook and events deleted successfully"}
    assert call(fake, "GET", "/webhook", ALICE).json()["data"] == {"subscribe": [""], "webhook": ""}

    assert call(fake, "POST", "/webhook", ALICE, data=b"").content == (
        error_body(400, "could not decode payload")
    )


# --- admin -----------------------------------------------------------------------------


def test_admin_list_and_get(fake):
    users = admin_call(fake, "GET", "/admin/users").json()["data"]
    assert [user["name"] for user in users] == ["alice", "bob"]
    assert set(users[0]) == {
        "connected", "events", "expiration", "id", "jid", "loggedIn", "name", "proxy_config",
        "proxy_url", "qrcode", "s3_config", "token", "webhook",
    }
    alice_id = users[0]["id"]
    by_id = admin_call(fake, "GET", f"/admin/users/{alice_id}")
    assert by_id.status_code == 200
    assert [user["token"] for user in by_id.json()["data"]] == [ALICE]
    unknown = admin_call(fake, "GET", "/admin/users/000000000000")
    assert unknown.content == b'{"code":200,"data":[],"success":true}\n'


def test_admin_add_user_and_duplicate(fake):
    body = {"name": "gateway", "token": "TOKEN123", "events": "Message"}
    response = admin_call(fake, "POST", "/admin/users", body)
    assert response.status_code == 201
    parsed = assert_go_json(response.content)
    assert parsed["code"] == 201
    assert parsed["success"] is True
    data = parsed["data"]
    assert set(data) == {
        "events", "expiration", "hmac_key", "id", "name", "proxy_config", "s3_config", "token", "webhook",
    }
    assert data["name"] == "gateway"
    assert data["token"] == "TOKEN123"
    assert data["events"] == "Message"
    assert data["hmac_key"] is False
    assert re.fullmatch(r"[0-9a-f]{12}", data["id"])
    assert call(fake, "GET", "/session/status", "TOKEN123").status_code == 200

    duplicate = admin_call(fake, "POST", "/admin/users", body)
    assert duplicate.status_code == 409
    assert duplicate.content == error_body(409, "user with this token already exists")


def test_admin_add_user_bad_input(fake):
    body = {"name": "x", "token": "t", "events": "Message,Bogus"}
    invalid_event = admin_call(fake, "POST", "/admin/users", body)
    assert invalid_event.status_code == 400
    assert invalid_event.content == (
        b'{"code":400,"details":"invalid event: Bogus","error":"invalid event type","success":false}\n'
    )
    bad_payload = call(fake, "POST", "/admin/users", data=b"{", headers={"Authorization": ADMIN_TOKEN})
    assert bad_payload.content == error_body(400, "invalid request payload")
    assert len(admin_call(fake, "GET", "/admin/users").json()["data"]) == 2


def test_admin_update_user(fake):
    alice_id = fake.user(ALICE)["id"]
    body = {"webhook": "https://h.example.com", "events": "All"}
    response = admin_call(fake, "PUT", f"/admin/users/{alice_id}", body)
    assert response.content == b'{"code":200,"message":"user updated successfully","success":true}\n'
    status = call(fake, "GET", "/session/status", ALICE).json()["data"]
    assert (status["webhook"], status["events"]) == ("https://h.example.com", "All")

    assert admin_call(fake, "PUT", "/admin/users/000000000000", {"name": "x"}).content == (
        error_body(404, "user not found")
    )
    no_fields = admin_call(fake, "PUT", f"/admin/users/{alice_id}", {})
    assert no_fields.content == error_body(400, "no fields to update")
    token_conflict = admin_call(fake, "PUT", f"/admin/users/{alice_id}", {"token": BOB})
    assert token_conflict.status_code == 409


def test_admin_delete_user(fake):
    bob_id = fake.user(BOB)["id"]
    response = admin_call(fake, "DELETE", f"/admin/users/{bob_id}")
    expected = {"code": 200, "data": {"id": bob_id}, "details": "user deleted successfully", "success": True}
    assert response.status_code == 200
    assert assert_go_json(response.content) == expected
    assert call(fake, "GET", "/session/status", BOB).content == UNAUTHORIZED

    again = admin_call(fake, "DELETE", f"/admin/users/{bob_id}")
    assert again.status_code == 404
    assert again.content == (
        b'{"code":404,"details":"No user found with ID: ' + bob_id.encode()
        + b'","error":"user not found","success":false}\n'
    )


def test_admin_delete_user_fully(fake):
    jid = login(fake, ALICE)
    alice_id = fake.user(ALICE)["id"]
    response = admin_call(fake, "DELETE", f"/admin/users/{alice_id}/full")
    assert response.status_code == 200
    assert assert_go_json(response.content) == {
        "code": 200,
        "data": {"id": alice_id, "jid": jid, "name": "alice"},
        "details": "user instance removed completely",
        "success": True,
    }
    assert admin_call(fake, "DELETE", f"/admin/users/{alice_id}/full").status_code == 404


# --- faults ----------------------------------------------------------------------------


def test_fault_reset_gives_connection_reset(fake):
    fake.set_fault(mode="reset")
    connection = raw_connection(fake, timeout=5)
    with pytest.raises(ConnectionResetError) as info:
        connection.request("GET", "/health")
        connection.getresponse()
    connection.close()
    assert not isinstance(info.value, http.client.RemoteDisconnected)
    with pytest.raises(requests.ConnectionError):
        call(fake, "GET", "/health")
    entry = last_log_entry(fake, "/health")
    assert (entry["fault"], entry["status"], entry["processed"]) == ("reset", None, False)


def test_fault_close_gives_remote_disconnected(fake):
    fake.set_fault(mode="close")
    connection = raw_connection(fake, timeout=5)
    with pytest.raises(http.client.RemoteDisconnected):
        connection.request("GET", "/health")
        connection.getresponse()
    connection.close()
    assert last_log_entry(fake, "/health")["fault"] == "close"


def test_fault_proxy_502(fake):
    fake.set_fault(mode="proxy_502")
    response = call(fake, "GET", "/session/status", ALICE)
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"
    assert response.content == b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    entry = last_log_entry(fake, "/session/status")
    assert (entry["fault"], entry["status"]) == ("proxy_502", 502)


def test_fault_error_500(fake):
    login(fake, ALICE)
    fake.set_fault(mode="error_500")
    response = call(fake, "GET", "/session/status", ALICE)
    assert response.status_code == 500
    assert response.content == b'{"code":500,"error":"no session","success":false}\n'
    assert response.headers["Content-Type"] == "application/json"


def test_fault_blackhole_times_out(fake):
    fake.set_fault(mode="blackhole")
    connection = raw_connection(fake, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        connection.request("GET", "/health")
        connection.getresponse()
    elapsed = time.monotonic() - started
    connection.close()
    assert 0.4 <= elapsed < 3.0
    entry = last_log_entry(fake, "/health")
    assert (entry["fault"], entry["status"]) == ("blackhole", None)


def test_fault_status_429_retry_after(fake):
    fake.set_fault(mode="status_429", retry_after="7")
    response = call(fake, "GET", "/health")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    fake.set_fault(mode="status_429")
    assert call(fake, "GET", "/health").headers["Retry-After"] == "1"


def test_fault_latency(fake):
    fake.set_fault(mode="latency", latency_ms=400)
    started = time.monotonic()
    response = call(fake, "GET", "/session/status", ALICE)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["data"]["name"] == "alice"
    assert 0.38 <= elapsed < 3.0


def test_fault_stall_body(fake):
    fake.set_fault(mode="stall_body", latency_ms=1500)
    connection = raw_connection(fake, timeout=5)
    started = time.monotonic()
    connection.request("GET", "/session/status", headers={"Token": ALICE})
    response = connection.getresponse()
    headers_after = time.monotonic() - started
    body = response.read()
    total = time.monotonic() - started
    connection.close()

    assert response.status == 200
    assert headers_after < 1.0
    assert 1.4 <= total < 5.0
    assert int(response.getheader("Content-Length")) == len(body)
    assert json.loads(body)["data"]["name"] == "alice"


def test_fault_stall_body_trips_read_timeout(fake):
    fake.set_fault(mode="stall_body", latency_ms=3000)
    connection = raw_connection(fake, timeout=0.5)
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises(TimeoutError):
        response.read()
    connection.close()


def test_fault_trickle_beats_read_timeout(fake):
    fake.set_fault(mode="trickle", latency_ms=1000)
    connection = raw_connection(fake, timeout=0.5)
    started = time.monotonic()
    connection.request("GET", "/session/status", headers={"Token": ALICE})
    response = connection.getresponse()
    length = int(response.getheader("Content-Length"))
    chunks = []
    first_byte_at = None
    while len(b"".join(chunks)) < length:
        chunk = response.read(1)
        assert chunk, "connection closed before the whole body arrived"
        if first_byte_at is None:
            first_byte_at = time.monotonic() - started
        chunks.append(chunk)
    total = time.monotonic() - started
    connection.close()

    assert first_byte_at < 0.5
    assert 0.9 <= total < 5.0
    assert json.loads(b"".join(chunks))["data"]["name"] == "alice"


def test_fault_rate_with_seed_is_reproducible(fake):
    def run():
        fake.set_fault(mode="error_500", rate=0.5, seed=1234)
        with requests.Session() as session:
            return [session.get(fake.url + "/health", timeout=5).status_code for _ in range(200)]

    first = run()
    hits = first.count(500)
    assert 70 <= hits <= 130
    assert set(first) == {200, 500}
    assert run() == first
    faulted = [entry for entry in fake.requests() if entry["fault"] == "error_500"]
    assert len(faulted) == 2 * hits


def test_fault_rate_zero_hits_nothing(fake):
    fake.set_fault(mode="error_500", rate=0)
    assert all(call(fake, "GET", "/health").status_code == 200 for _ in range(20))


def test_fault_paths_restrict(fake):
    login(fake, ALICE)
    fake.set_fault(mode="error_500", paths=["/chat/send/*"])
    assert call(fake, "GET", "/session/status", ALICE).status_code == 200
    assert call(fake, "POST", "/chat/delete", ALICE, VALID_SENDS["/chat/delete"][0]).status_code == 200
    response = call(fake, "POST", "/chat/send/text", ALICE, {"Phone": PHONE, "Body": "x"})
    assert response.content == error_body(500, "no session")
    assert last_log_entry(fake, "/chat/send/text")["fault"] == "error_500"
    assert last_log_entry(fake, "/session/status")["fault"] is None


def test_faulted_request_leaves_state_unchanged(fake):
    fake.set_fault(mode="error_500", paths=["/session/connect"])
    call(fake, "POST", "/session/connect", ALICE, {"Immediate": True})
    assert fake.user(ALICE)["connected"] is False

    fake.clear_fault()
    login(fake, ALICE)
    for mode in ["proxy_502", "status_429", "error_500"]:
        fake.set_fault(mode=mode, paths=["/chat/send/text"])
        status, _ = raw_send_text(fake, ALICE)
        assert status >= 400, mode
        entry = last_log_entry(fake, "/chat/send/text")
        assert (entry["fault"], entry["processed"]) == (mode, False)
    for mode in ["close", "reset"]:
        fake.set_fault(mode=mode, paths=["/chat/send/text"])
        with pytest.raises(ConnectionError):
            raw_send_text(fake, ALICE)
        entry = last_log_entry(fake, "/chat/send/text")
        assert (entry["fault"], entry["processed"]) == (mode, False)
    assert fake.user(ALICE)["outbox"] == []


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_fault_after_processing_sends_then_drops(fake, mode):
    login(fake, ALICE)
    fake.set_fault(mode=mode, after_processing=True, paths=["/chat/send/text"])
    with pytest.raises(ConnectionError):
        raw_send_text(fake, ALICE, message_id="3EB0000000000000000001")
    outbox = fake.user(ALICE)["outbox"]
    assert [item["id"] for item in outbox] == ["3EB0000000000000000001"]
    entry = last_log_entry(fake, "/chat/send/text")
    assert (entry["fault"], entry["status"], entry["processed"]) == (mode, None, True)

    fake.set_fault(mode=mode, paths=["/chat/send/text"])
    with pytest.raises(ConnectionError):
        raw_send_text(fake, ALICE, message_id="3EB0000000000000000002")
    assert len(fake.user(ALICE)["outbox"]) == 1


def test_fault_blackhole_after_processing_changes_state(fake):
    fake.set_fault(mode="blackhole", after_processing=True, paths=["/session/connect"])
    connection = raw_connection(fake, timeout=0.5)
    with pytest.raises(TimeoutError):
        connection.request("POST", "/session/connect", body=b'{"Immediate":true}', headers={"Token": ALICE})
        connection.getresponse()
    connection.close()
    assert fake.user(ALICE)["connected"] is True

    fake.set_fault(mode="blackhole", paths=["/session/connect"])
    connection = raw_connection(fake, timeout=0.5)
    with pytest.raises(TimeoutError):
        connection.request("POST", "/session/connect", body=b'{"Immediate":true}', headers={"Token": BOB})
        connection.getresponse()
    connection.close()
    assert fake.user(BOB)["connected"] is False


def test_control_endpoints_ignore_faults(fake):
    fake.set_fault(mode="blackhole")
    current = call(fake, "GET", "/__fake__/faults", timeout=2)
    assert current.json()["mode"] == "blackhole"
    assert call(fake, "GET", "/__fake__/requests", timeout=2).status_code == 200
    cleared = call(fake, "POST", "/__fake__/faults", json_body={"mode": "ok"}, timeout=2)
    assert cleared.json()["mode"] == "ok"
    assert call(fake, "GET", "/health", timeout=2).status_code == 200


def test_fault_rule_over_http_and_normalized(fake):
    body = {"mode": "latency", "rate": 0.25, "latency_ms": 50, "paths": ["/chat/*"], "seed": 7}
    response = call(fake, "POST", "/__fake__/faults", json_body=body)
    assert response.status_code == 200
    assert response.json() == {
        "after_processing": False, "latency_ms": 50, "mode": "latency", "paths": ["/chat/*"],
        "rate": 0.25, "retry_after": "1", "seed": 7,
    }
    assert call(fake, "GET", "/__fake__/faults").json() == response.json()
    assert fake.set_fault(mode="stall_body")["latency_ms"] == 60000


@pytest.mark.parametrize(
    "rule",
    [
        {"mode": "explode"},
        {"mode": "reset", "rate": 2},
        {"mode": "latency", "latency_ms": -1},
        {"mode": "proxy_502", "after_processing": True},
        {"mode": "reset", "pathz": ["/x"]},
        {"mode": "reset", "paths": [1]},
    ],
)
def test_invalid_fault_rules_rejected(fake, rule):
    response = call(fake, "POST", "/__fake__/faults", json_body=rule)
    assert response.status_code == 400
    assert response.json()["error"]
    with pytest.raises(ValueError):
        fake.set_fault(**rule)
    assert fake.fault()["mode"] == "ok"


# --- request log -----------------------------------------------------------------------


def test_request_log_records_and_masks(fake):
    call(fake, "POST", f"/webhook?token={ALICE}&x=1", json_body={"webhookURL": "https://h.example.com"},
         headers={"Cookie": "session=abc"})
    call(fake, "GET", "/admin/users", headers={"Authorization": ADMIN_TOKEN})
    call(fake, "POST", "/chat/send/text", ALICE, data=b"not json")
    call(fake, "GET", "/__fake__/faults")

    entries = fake.requests()
    assert [entry["path"] for entry in entries] == ["/webhook", "/admin/users", "/chat/send/text"]
    webhook, admin, text = entries
    assert webhook["method"] == "POST"
    assert webhook["query"] == {"token": "al***", "x": "1"}
    assert webhook["body"] == {"webhookURL": "https://h.example.com"}
    assert webhook["headers"]["Cookie"] == "se***"
    assert webhook["status"] == 200
    assert webhook["fault"] is None
    assert isinstance(webhook["time"], float)
    assert admin["headers"]["Authorization"] == "ad***"
    assert text["headers"]["Token"] == "al***"
    assert text["body"] == "not json"
    assert text["status"] == 500
    serialized = json.dumps(entries)
    assert ALICE not in serialized
    assert ADMIN_TOKEN not in serialized

    over_http = call(fake, "GET", "/__fake__/requests").json()
    assert [entry["path"] for entry in over_http] == ["/webhook", "/admin/users", "/chat/send/text"]
    assert call(fake, "DELETE", "/__fake__/requests").json() == {"cleared": 3}
    assert fake.requests() == []


def test_users_control_endpoint_masks_tokens(fake):
    login(fake, ALICE)
    call(fake, "POST", "/chat/send/text", ALICE, {"Phone": PHONE, "Body": "x"})
    users = call(fake, "GET", "/__fake__/users").json()
    assert [user["name"] for user in users] == ["alice", "bob"]
    assert users[0]["token"] == "al***"
    assert users[0]["logged_in"] is True
    assert len(users[0]["outbox"]) == 1


def test_unknown_control_endpoint(fake):
    response = call(fake, "GET", "/__fake__/nothing")
    assert response.status_code == 404
    assert "/__fake__/faults" in response.json()["error"]


# --- lifecycle and CLI -----------------------------------------------------------------


def test_stop_is_prompt_with_open_blackhole():
    server = FakeWuzapi(users={"alice": ALICE}).start()
    server.set_fault(mode="blackhole")
    errors = queue.Queue()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            connection.request("GET", "/health")
            connection.getresponse()
            errors.put(None)
        except Exception as exc:  # the error type is what the test checks
            errors.put(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    wait_for_log_entry(server, "/health")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2.0
    thread.join(3)
    assert not thread.is_alive()
    assert isinstance(errors.get(timeout=1), ConnectionError)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_stop_is_prompt_with_held_connect():
    server = FakeWuzapi(users={"alice": ALICE}, connect_hold_ms=30000).start()
    thread = threading.Thread(
        target=lambda: _ignore_errors(call, server, "POST", "/session/connect", ALICE, {}, timeout=10),
        daemon=True,
    )
    thread.start()
    wait_for_log_entry(server, "/session/connect")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2.0
    thread.join(3)
    assert not thread.is_alive()


def _ignore_errors(function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except requests.RequestException:
        pass


def test_context_manager_and_url():
    with FakeWuzapi(users={"alice": ALICE}) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert call(server, "GET", "/health").status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/health", timeout=2)


def test_constructor_rejects_duplicate_tokens():
    with pytest.raises(ValueError):
        FakeWuzapi(users={"a": "same", "b": "same"})
    with pytest.raises(ValueError):
        FakeWuzapi(users={"a": ""})


def _read_line(stream, timeout):
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def test_cli_runs_and_exits_on_sigterm():
    command = [
        sys.executable, "-m", "tests.fake_wuzapi", "--port", "0", "--admin-token", "cli-admin",
        "--user", "cli:cli-token", "--user", "other:other-token", "--connect-hold-ms", "200",
    ]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = _read_line(process.stdout, timeout=10)
        match = re.fullmatch(r"fake WUZAPI listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        url = match.group(1)
        assert int(match.group(2)) > 0

        assert requests.get(url + "/health", timeout=5).json()["total_users"] == 2
        status = requests.get(url + "/session/status", headers={"Token": "cli-token"}, timeout=5)
        assert status.json()["data"]["name"] == "cli"
        admin = requests.get(url + "/admin/users", headers={"Authorization": "cli-admin"}, timeout=5)
        assert admin.status_code == 200
        started = time.monotonic()
        held_connect = requests.post(
            url + "/session/connect", headers={"Token": "cli-token"}, json={}, timeout=5
        )
        assert held_connect.status_code == 200
        assert time.monotonic() - started >= 0.18

        # Broken connections must not print tracebacks.
        requests.post(url + "/__fake__/faults", json={"mode": "reset"}, timeout=5)
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/health", timeout=5)
        requests.post(url + "/__fake__/faults", json={"mode": "trickle", "latency_ms": 2000}, timeout=5)
        with socket.create_connection(("127.0.0.1", int(match.group(2))), timeout=5) as raw:
            raw.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.recv(1).startswith(b"H")
        time.sleep(0.3)

        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=5)
        assert process.returncode == 0
        assert "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)


def test_cli_rejects_bad_user_argument():
    result = subprocess.run(
        [sys.executable, "-m", "tests.fake_wuzapi", "--user", "no-colon"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
    )
    assert result.returncode == 2
    assert "expected NAME:TOKEN" in result.stderr
