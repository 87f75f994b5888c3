"""Command line: run the fake WUZAPI server until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import DEFAULT_ADMIN_TOKEN, DEFAULT_CONNECT_HOLD_MS, FakeWuzapi


def _user(value: str) -> tuple[str, str]:
    name, separator, token = value.partition(":")
    if not separator or not name or not token:
        raise argparse.ArgumentTypeError(f"invalid --user {value!r}: expected NAME:TOKEN")
    return name, token


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_wuzapi",
        description="Run a fake WUZAPI server with fault injection (control API under /__fake__/).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="TCP port, or 0 to pick a free one (default: 0)")
    parser.add_argument(
        "--admin-token",
        default=DEFAULT_ADMIN_TOKEN,
        help="token expected in the Authorization header of /admin/** (default: %(default)s)",
    )
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        type=_user,
        metavar="NAME:TOKEN",
        help="create a user with this name and token (repeat the option for more users)",
    )
    parser.add_argument(
        "--connect-hold-ms",
        type=int,
        default=DEFAULT_CONNECT_HOLD_MS,
        help='milliseconds POST /session/connect holds its reply without "Immediate": true '
        "(default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.connect_hold_ms < 0:
        parser.error(f"invalid --connect-hold-ms {args.connect_hold_ms}: must be >= 0")
    names = [name for name, _ in args.user]
    tokens = [token for _, token in args.user]
    if len(set(names)) != len(names) or len(set(tokens)) != len(tokens):
        parser.error("invalid --user list: every user needs its own name and its own token")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    users = dict(args.user)
    fake = FakeWuzapi(
        host=args.host,
        port=args.port,
        admin_token=args.admin_token,
        users=users,
        connect_hold_ms=args.connect_hold_ms,
    )

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        fake.start()
    except OSError as exc:
        print(f"fake WUZAPI failed to listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"fake WUZAPI listening on {fake.url}", flush=True)

    # A timed wait lets the main thread run the signal handler promptly.
    while not stop_requested.wait(0.2):
        pass
    fake.stop()
    print("fake WUZAPI stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
