"""WUZAPI users, for admin logins: list, create, and delete after a confirmation page."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from flask import abort, redirect, url_for
from flask_babel import gettext

from ..errors import ApiError
from .common import (
    bp,
    call_wuzapi,
    envelope,
    login_required,
    notify,
    problem_text,
    render_page,
    wuzapi_error_text,
)
from .forms import CreateUserForm, DeleteUserForm

logger = logging.getLogger(__name__)

# WUZAPI user ids are random hex strings (older servers: integers). Anything else never reaches a WUZAPI path.
USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class WuzapiUser:
    """One row of ``GET /admin/users``; the token is left out on purpose."""

    id: str
    name: str
    connected: bool
    logged_in: bool
    jid: str


def parse_users(data: Any) -> list[WuzapiUser]:
    users = []
    for row in data if isinstance(data, list) else []:
        if not isinstance(row, dict) or row.get("id") is None:
            continue
        users.append(WuzapiUser(
            id=str(row["id"]),
            name=str(row.get("name") or ""),
            connected=bool(row.get("connected") or row.get("Connected")),
            logged_in=bool(row.get("loggedIn") or row.get("LoggedIn")),
            jid=str(row.get("jid") or ""),
        ))
    return sorted(users, key=lambda user: (user.name.lower(), user.id))


def read_users(path: str = "/admin/users") -> tuple[list[WuzapiUser] | None, str | None]:
    """Return (users, None), or (None, a sentence saying why they could not be read)."""
    try:
        upstream = call_wuzapi("GET", path, admin=True)
    except ApiError as error:
        return None, problem_text(error)
    if upstream.status != 200:
        return None, wuzapi_error_text(upstream)
    return parse_users(envelope(upstream).get("data")), None


def checked_user_id(user_id: str) -> str:
    if not USER_ID.match(user_id):
        abort(404)
    return user_id


def render_users(form: CreateUserForm | None = None, status: int = 200):
    users, problem = read_users()
    return render_page("admin_users.html", status=status, users=users, problem=problem,
                       form=form or CreateUserForm(formdata=None))


@bp.get("/admin/users")
@login_required(role="admin")
def admin_users():
    return render_users()


@bp.post("/admin/users")
@login_required(role="admin")
def create_user():
    form = CreateUserForm()
    if not form.validate():
        return render_users(form, status=400)
    try:
        upstream = call_wuzapi("POST", "/admin/users", payload={"name": form.name.data, "token": form.token.data},
                             admin=True, repeatable=False)
    except ApiError as error:
        notify("error", problem_text(error))
        return redirect(url_for("web.admin_users"))

    if upstream.status == 409:
        form.token.errors = [gettext("Another WUZAPI user already has this token.")]
        return render_users(form, status=409)
    if upstream.status not in (200, 201):
        form.form_errors.append(wuzapi_error_text(upstream))
        return render_users(form, status=400 if upstream.status < 500 else 502)

    data = envelope(upstream).get("data")
    new_id = str(data.get("id", "")) if isinstance(data, dict) else ""
    logger.info("WUZAPI user created", extra={"wuzapi_user": new_id})
    notify("success", gettext("User %(name)s created.", name=form.name.data), code=new_id or None)
    return redirect(url_for("web.admin_users"))


@bp.get("/admin/users/<user_id>/delete")
@login_required(role="admin")
def confirm_delete_user(user_id: str):
    users, problem = read_users(f"/admin/users/{checked_user_id(user_id)}")
    if users is not None and not users:
        abort(404)
    return render_page("admin_user_delete.html", target=None if users is None else users[0], user_id=user_id,
                       problem=problem, form=DeleteUserForm(formdata=None))


@bp.post("/admin/users/<user_id>/delete")
@login_required(role="admin")
def delete_user(user_id: str):
    form = DeleteUserForm()
    path = f"/admin/users/{checked_user_id(user_id)}" + ("/full" if form.full.data else "")
    try:
        upstream = call_wuzapi("DELETE", path, admin=True, repeatable=False)
    except ApiError as error:
        notify("error", problem_text(error))
        return redirect(url_for("web.admin_users"))

    if upstream.status == 200:
        logger.info("WUZAPI user deleted", extra={"wuzapi_user": user_id, "full": bool(form.full.data)})
        notify("success", gettext("User deleted."), code=user_id)
    elif upstream.status == 404:
        notify("info", gettext("No WUZAPI user has this id any more; it was already deleted."), code=user_id)
    else:
        notify("error", wuzapi_error_text(upstream))
    return redirect(url_for("web.admin_users"))
