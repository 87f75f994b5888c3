"""The page forms. CSRFProtect checks every POST before a view runs, so the forms skip their own check."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    PasswordField,
    RadioField,
    SelectChoice,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Regexp,
    ValidationError,
)

from ..views.auth import TOKEN_MAX_LENGTH

# A phone number with its country code (8 to 15 digits, "+" allowed) or a full WhatsApp JID.
PHONE = re.compile(r"^(\+?\d{8,15}|[0-9A-Za-z.:_-]{1,64}@(s\.whatsapp\.net|g\.us|lid|newsletter))$")
PHONE_SEPARATORS = re.compile(r"[\s().-]")
MESSAGE_MAX_LENGTH = 4096
NAME_MAX_LENGTH = 64


class PageForm(FlaskForm):
    class Meta:
        csrf = False  # CSRFProtect has validated the token of every POST already


class LoginForm(PageForm):
    token = PasswordField(_l("Token"), validators=[InputRequired(message=_l("Enter the token."))])
    role = RadioField(_l("Log in as"),
                      choices=[SelectChoice("user", _l("WUZAPI user")), SelectChoice("admin", _l("Administrator"))],
                      default="user", validators=[InputRequired(message=_l("Choose user or administrator."))])


def _normalise_phone(value: str | None) -> str | None:
    """Drop the spaces, dots, dashes and brackets people type in phone numbers; keep JIDs as they are."""
    if value is None or "@" in value:
        return value.strip() if value else value
    return PHONE_SEPARATORS.sub("", value)


class SendMessageForm(PageForm):
    phone = StringField(_l("Phone number"), filters=[_normalise_phone], validators=[
        InputRequired(message=_l("Enter the phone number.")),
        Regexp(PHONE, message=_l("Enter the number with its country code, e.g. 5511999990000, or a full JID.")),
    ])
    body = TextAreaField(_l("Message"), validators=[
        InputRequired(message=_l("Enter the message text.")),
        Length(max=MESSAGE_MAX_LENGTH, message=_l("The message can have at most %(max)d characters.")),
    ])


def _no_spaces(form: PageForm, field: StringField) -> None:
    if field.data and any(ch.isspace() or ord(ch) < 32 for ch in field.data):
        raise ValidationError(_l("The token cannot contain spaces."))


class CreateUserForm(PageForm):
    name = StringField(_l("Name"), filters=[lambda value: value.strip() if value else value], validators=[
        DataRequired(message=_l("Enter a name.")),  # checks the stripped value, so blanks count as missing
        Length(max=NAME_MAX_LENGTH, message=_l("The name can have at most %(max)d characters.")),
    ])
    token = StringField(_l("Token"), validators=[
        InputRequired(message=_l("Enter a token.")),
        Length(max=TOKEN_MAX_LENGTH, message=_l("The token can have at most %(max)d characters.")),
        _no_spaces,
    ])


class DeleteUserForm(PageForm):
    full = BooleanField(_l("Also log this user out of WhatsApp and delete its files"))
