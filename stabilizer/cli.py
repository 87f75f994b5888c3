"""``flask sessions …`` and ``flask wuzapi …`` commands for operators."""

from __future__ import annotations

import json

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .db import StoreUnavailable
from .wuzapi.errors import WuzapiError

sessions = AppGroup("sessions", help="Manage the session table.")
wuzapi = AppGroup("wuzapi", help="Check WUZAPI and the circuit breaker.")


def _database():
    return current_app.extensions["stabilizer"].database


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


@sessions.command("init-db")
def init_db() -> None:
    """Create the session table and its indexes (safe to run again)."""
    database = _database()
    try:
        database.migrate()
    except StoreUnavailable as exc:
        _fail(f"could not create the schema on {database.backend}: {exc}")
    click.echo(f"schema ready on {database.backend} (table {database.table})")


@sessions.command("prune")
@click.option("--batch-size", default=1000, show_default=True, type=click.IntRange(1, 100000),
              help="Rows deleted per statement.")
def prune(batch_size: int) -> None:
    """Delete expired sessions, in batches, and expired rate-limit counters now."""
    runtime = current_app.extensions["stabilizer"]
    try:
        result = runtime.database.prune(batch_size=batch_size)
    except StoreUnavailable as exc:
        _fail(f"pruning failed: {exc}")
    if result.skipped:
        click.echo("another pruner holds the lock; no session deleted")
    else:
        click.echo(f"deleted {result.deleted} expired sessions in {result.batches} batches")
    if not runtime.settings.ratelimit_in_database:
        return  # the login counters live elsewhere
    try:
        counters = runtime.database.ratelimit_prune()
    except StoreUnavailable as exc:
        _fail(f"pruning login rate-limit counters failed (does `flask sessions init-db` need to run?): {exc}")
    click.echo(f"deleted {counters} expired rate-limit counters")


@sessions.command("stats")
def stats() -> None:
    """Print row counts and table size as JSON."""
    try:
        numbers = _database().stats()
    except StoreUnavailable as exc:
        _fail(f"could not read statistics: {exc}")
    click.echo(json.dumps(numbers, indent=2))


@sessions.command("revoke")
@click.option("--user", "user_id", help="User id (as shown by /api/auth/status) whose sessions end.")
@click.option("--all", "revoke_all", is_flag=True, help="End every session.")
def revoke(user_id: str | None, revoke_all: bool) -> None:
    """End sessions: those of one user, or all of them."""
    if bool(user_id) == revoke_all:
        _fail("give exactly one of --user ID or --all")
    try:
        count = _database().revoke_all() if revoke_all else _database().revoke_user(user_id)
    except StoreUnavailable as exc:
        _fail(f"revoking failed: {exc}")
    click.echo(f"revoked {count} sessions")


@sessions.command("clear-login-limits")
def clear_login_limits() -> None:
    """Forget every login attempt counted so far, so that no address or token is held back."""
    runtime = current_app.extensions["stabilizer"]
    if not runtime.settings.ratelimit_in_database:
        _fail(f"login attempts are counted in {runtime.settings.ratelimit_storage_uri}, not in the session"
              " database; restarting the service clears memory://")
    try:
        count = runtime.database.ratelimit_clear()
    except StoreUnavailable as exc:
        _fail(f"clearing failed: {exc}")
    click.echo(f"cleared {count} login rate-limit counters")


@wuzapi.command("check")
def check() -> None:
    """Call WUZAPI's /health once; exit 1 when it does not answer 200."""
    runtime = current_app.extensions["stabilizer"]
    try:
        answer = runtime.client.call("GET", "/health")
    except WuzapiError as exc:
        _fail(f"WUZAPI at {runtime.settings.wuzapi_base_url} is down: {exc}")
    if answer.status != 200:
        _fail(f"WUZAPI at {runtime.settings.wuzapi_base_url} answered HTTP {answer.status}")
    click.echo(f"WUZAPI at {runtime.settings.wuzapi_base_url} is up ({answer.attempts} attempt(s))")


@wuzapi.command("circuit")
@click.option("--reset", is_flag=True, help="Close the circuit for every worker and instance.")
def circuit(reset: bool) -> None:
    """Show the shared circuit state as JSON; --reset closes it."""
    breaker = current_app.extensions["stabilizer"].breaker
    if breaker is None:
        _fail("the circuit breaker is disabled (WUZAPI_CIRCUIT_ENABLED=false)")
    try:
        if reset:
            breaker.reset()
            click.echo("circuit closed")
        breaker.refresh()
    except StoreUnavailable as exc:
        _fail(f"could not reach the circuit state database: {exc}")
    snapshot = breaker.snapshot()
    if not snapshot.get("shared", True):
        _fail(f"could not read the shared circuit state: {snapshot.get('note')}")
    click.echo(json.dumps(snapshot, indent=2))


def register(app: Flask) -> None:
    app.cli.add_command(sessions)
    app.cli.add_command(wuzapi)
