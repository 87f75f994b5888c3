"""Handlers for /chat/send/*, /chat/delete, /chat/react, /chat/presence, /chat/markread
and /status/set/text.

Checks run in this order: client exists ("no session"), body decodes, required fields,
recipient and ContextInfo, media format, then the whatsmeow send, which fails with
"not logged in" until the user is paired.
NOTE: the error texts come from WUZAPI's handlers, but their relative order is assumed.
"""

from __future__ import annotations

import time
from typing import Any

from .protocol import (
    BOOL,
    FLOAT,
    LIST,
    OBJECT,
    STRING,
    STRINGS,
    DecodeError,
    Rejected,
    Request,
    Response,
    decode_fields,
    decode_or_reject,
    error,
    ok,
)
from .state import User, new_message_id

# Fields accepted by every message send.
COMMON_FIELDS = {"Phone": STRING, "Id": STRING, "ContextInfo": OBJECT, "QuotedMessage": OBJECT}

CONTEXT_INFO_FIELDS = {
    "StanzaID": STRING,
    "Participant": STRING,
    "MentionedJID": STRINGS,
    "IsForwarded": BOOL,
}

BUTTON_FIELDS = {
    "type": STRING,
    "title": STRING,
    "text": STRING,
    "buttonText": STRING,
    "id": STRING,
    "buttonId": STRING,
    "url": STRING,
    "phone_number": STRING,
    "copy_code": STRING,
}
BUTTON_TYPES = ("reply", "cta_url", "cta_call", "copy")


def _start(user: User, request: Request, fields: dict[str, str],
           decode_message: str = "could not decode Payload") -> tuple[Any, dict[str, Any]]:
    if not user.has_client:
        raise Rejected(error(500, "no session"))
    return decode_or_reject(request.body, fields, decode_message)


def _require(payload: dict[str, Any], *names: str) -> None:
    for name in names:
        if not payload[name]:
            raise Rejected(error(400, f"missing {name} in Payload"))


def _check_recipient(phone: str) -> None:
    """Reject what WUZAPI's parseJID rejects: a JID with an empty user or server part."""
    phone = phone.removeprefix("+")
    if "@" in phone:
        user_part, _, server = phone.partition("@")
        if not user_part or not server:
            raise Rejected(error(400, "could not parse Phone"))


def _check_context_info(payload: dict[str, Any]) -> None:
    if payload.get("ContextInfo") is None:
        return
    try:
        info = decode_fields(payload["ContextInfo"], CONTEXT_INFO_FIELDS)
    except DecodeError:
        raise Rejected(error(400, "could not decode Payload")) from None
    if info["StanzaID"] and not info["Participant"]:
        raise Rejected(error(400, "missing Participant in ContextInfo"))
    if info["Participant"] and not info["StanzaID"]:
        raise Rejected(error(400, "missing StanzaID in ContextInfo"))


def _check_media(value: str, prefixes: tuple[str, ...], message: str) -> None:
    """Accept a data URL with one of `prefixes` or an http(s) URL, else reject with `message`."""
    if value.startswith(prefixes) or value.startswith(("http://", "https://")):
        return
    raise Rejected(error(400, message))


def _require_logged_in(user: User) -> None:
    # NOTE: the whatsmeow texts and the login-before-socket order are assumed, not verified.
    if not user.logged_in:
        raise Rejected(error(500, "error sending message: not logged in"))
    if not user.connected:
        raise Rejected(error(500, "error sending message: websocket not connected"))


def _record(user: User, request: Request, raw: Any, message_id: str | None) -> int:
    timestamp = int(time.time())
    user.outbox.append(
        {"path": request.path, "id": message_id, "payload": raw, "timestamp": timestamp}
    )
    return timestamp


def _sent(user: User, request: Request, raw: Any, message_id: str,
          details: str = "Sent") -> Response:
    timestamp = _record(user, request, raw, message_id)
    return ok({"Details": details, "Id": message_id, "Timestamp": timestamp})


def _finish_message(user: User, request: Request, raw: Any, payload: dict[str, Any],
                    media: tuple[str, tuple[str, ...], str] | None = None) -> Response:
    """Run the checks shared by message sends and return a reply with the sent message's id."""
    _check_recipient(payload["Phone"])
    _check_context_info(payload)
    if media is not None:
        name, prefixes, message = media
        _check_media(payload[name], prefixes, message)
    _require_logged_in(user)
    return _sent(user, request, raw, payload["Id"] or new_message_id())


def send_text(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Body": STRING, "LinkPreview": BOOL, "QuotedText": STRING}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone", "Body")
    return _finish_message(user, request, raw, payload)


def send_image(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Image": STRING, "Caption": STRING, "MimeType": STRING}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone", "Image")
    media = ("Image", ("data:image",), 'Image data should start with "data:image/png;base64,"')
    return _finish_message(user, request, raw, payload, media)


def send_audio(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Audio": STRING, "ptt": BOOL, "mimetype": STRING,
              "Seconds": FLOAT, "Waveform": LIST}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone", "Audio")
    # NOTE: only the image message text is documented; the other media texts are modelled on it.
    media = ("Audio", ("data:audio/",), 'Audio data should start with "data:audio/"')
    return _finish_message(user, request, raw, payload, media)


def send_document(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Document": STRING, "FileName": STRING, "Caption": STRING,
              "MimeType": STRING}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone", "Document", "FileName")
    media = ("Document", ("data:",), 'Document data should start with "data:"')
    return _finish_message(user, request, raw, payload, media)


def send_video(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Video": STRING, "Caption": STRING, "JPEGThumbnail": STRING,
              "MimeType": STRING}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone", "Video")
    if len(payload["Video"]) <= 3:
        # WUZAPI's video handler panics on such short input and Go drops the connection.
        return Response(500, b"", drop_connection=True)
    media = ("Video", ("data:",), 'Video data should start with "data:"')
    return _finish_message(user, request, raw, payload, media)


def send_sticker(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Sticker": STRING, "PngThumbnail": STRING, "MimeType": STRING,
              "PackId": STRING, "PackName": STRING, "PackPublisher": STRING, "Emojis": STRINGS}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone", "Sticker")
    media = (
        "Sticker",
        ("data:image/webp", "data:video/mp4"),
        'Sticker data should start with "data:image/webp" or "data:video/mp4"',
    )
    return _finish_message(user, request, raw, payload, media)


def send_location(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Latitude": FLOAT, "Longitude": FLOAT, "Name": STRING}
    raw, payload = _start(user, request, fields)
    # Zero coordinates are Go zero values, so WUZAPI reports them as missing.
    _require(payload, "Phone", "Latitude", "Longitude")
    return _finish_message(user, request, raw, payload)


def send_contact(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Name": STRING, "Vcard": STRING}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone", "Name", "Vcard")
    return _finish_message(user, request, raw, payload)


def _count_valid_buttons(buttons: list[Any]) -> int:
    count = 0
    for button in buttons:
        try:
            fields = decode_fields(button, BUTTON_FIELDS)
        except DecodeError:
            continue
        title = fields["title"] or fields["text"] or fields["buttonText"]
        if title and (fields["type"] or "reply") in BUTTON_TYPES:
            count += 1
    return count


def send_buttons(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Body": STRING, "text": STRING, "Buttons": LIST,
              "Title": STRING, "Footer": STRING, "Image": STRING}
    raw, payload = _start(user, request, fields)
    if not (payload["Phone"] and (payload["Body"] or payload["text"]) and payload["Buttons"]):
        raise Rejected(error(400, "missing Phone, Body or Buttons"))
    _check_recipient(payload["Phone"])
    if _count_valid_buttons(payload["Buttons"]) == 0:
        raise Rejected(error(400, "no valid buttons parsed"))
    _require_logged_in(user)
    return _sent(user, request, raw, payload["Id"] or new_message_id())


def send_list(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Desc": STRING, "Body": STRING, "text": STRING,
              "Sections": LIST, "List": LIST, "ButtonText": STRING, "TopText": STRING,
              "FooterText": STRING}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone")
    # NOTE: the two texts below are assumed; the docs name the fields but not the messages.
    if not (payload["Desc"] or payload["Body"] or payload["text"]):
        raise Rejected(error(400, "missing Desc in Payload"))
    if not (payload["Sections"] or payload["List"]):
        raise Rejected(error(400, "missing Sections in Payload"))
    return _finish_message(user, request, raw, payload)


def send_poll(user: User, request: Request) -> Response:
    fields = {"group": STRING, "header": STRING, "options": STRINGS, "Id": STRING}
    raw, payload = _start(user, request, fields, decode_message="could not decode payload")
    if not payload["group"]:
        raise Rejected(error(400, "missing Grouop in payload"))  # sic, as WUZAPI spells it
    # NOTE: the two texts below are assumed; only the group text is documented.
    if not payload["header"]:
        raise Rejected(error(400, "missing Header in payload"))
    if len(payload["options"]) < 2:
        raise Rejected(error(400, "at least 2 options are required"))
    _check_recipient(payload["group"])
    _require_logged_in(user)
    message_id = payload["Id"] or new_message_id()
    _record(user, request, raw, message_id)
    return ok({"Details": "Poll sent successfully", "Id": message_id})


def send_edit(user: User, request: Request) -> Response:
    fields = {**COMMON_FIELDS, "Body": STRING}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone", "Body", "Id")
    # The reply names the edited message, so `Id` is echoed.
    return _finish_message(user, request, raw, payload)


def delete_message(user: User, request: Request) -> Response:
    raw, payload = _start(user, request, {"Phone": STRING, "Id": STRING})
    _require(payload, "Phone", "Id")
    _check_recipient(payload["Phone"])
    _require_logged_in(user)
    return _sent(user, request, raw, payload["Id"], details="Deleted")


def react(user: User, request: Request) -> Response:
    fields = {"Phone": STRING, "Body": STRING, "Id": STRING, "Participant": STRING}
    raw, payload = _start(user, request, fields)
    _require(payload, "Phone", "Body", "Id")
    _check_recipient(payload["Phone"])
    _require_logged_in(user)
    # "me:" marks the caller's own message, and the reply names the bare target id.
    return _sent(user, request, raw, payload["Id"].removeprefix("me:"))


def chat_presence(user: User, request: Request) -> Response:
    raw, payload = _start(user, request, {"Phone": STRING, "State": STRING, "Media": STRING})
    _require(payload, "Phone", "State")
    # NOTE: the two texts below are assumed; the docs list the allowed values only.
    if payload["State"] not in ("composing", "paused"):
        raise Rejected(error(400, "invalid State in Payload: use composing or paused"))
    if payload["Media"] not in ("", "audio"):
        raise Rejected(error(400, "invalid Media in Payload: use audio or leave it empty"))
    _check_recipient(payload["Phone"])
    _require_logged_in(user)
    _record(user, request, raw, None)
    return ok({"Details": "Chat presence set successfuly"})  # sic, as WUZAPI spells it


def mark_read(user: User, request: Request) -> Response:
    fields = {"Id": STRINGS, "ChatPhone": STRING, "SenderPhone": STRING,
              "Chat": STRING, "Sender": STRING}
    raw, payload = _start(user, request, fields)
    if not payload["Id"]:
        raise Rejected(error(400, "missing Id in Payload"))
    chat = payload["ChatPhone"] or payload["Chat"]
    if not chat:
        raise Rejected(error(400, "missing ChatPhone in Payload"))
    _check_recipient(chat)
    _require_logged_in(user)
    _record(user, request, raw, None)
    return ok({"Details": "Message(s) marked as read"})


def set_status_text(user: User, request: Request) -> Response:
    raw, payload = _start(user, request, {"Body": STRING})
    _require(payload, "Body")
    _require_logged_in(user)
    _record(user, request, raw, None)
    return ok({"Details": "Set"})


ROUTES = {
    "/chat/send/text": send_text,
    "/chat/send/image": send_image,
    "/chat/send/audio": send_audio,
    "/chat/send/document": send_document,
    "/chat/send/video": send_video,
    "/chat/send/sticker": send_sticker,
    "/chat/send/location": send_location,
    "/chat/send/contact": send_contact,
    "/chat/send/buttons": send_buttons,
    "/chat/send/list": send_list,
    "/chat/send/poll": send_poll,
    "/chat/send/edit": send_edit,
    "/chat/delete": delete_message,
    "/chat/react": react,
    "/chat/presence": chat_presence,
    "/chat/markread": mark_read,
    "/status/set/text": set_status_text,
}
