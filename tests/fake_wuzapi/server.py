"""The HTTP layer of the fake WUZAPI server: connections, faults and the FakeWuzapi API."""

from __future__ import annotations

import select
import socket
import socketserver
import struct
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .app import WuzapiApp
from .control import CONTROL_PREFIX, RequestLog, handle_control
from .faults import FaultController, FaultRule
from .protocol import Request, Response, error
from .state import Store

DEFAULT_ADMIN_TOKEN = "fake-admin-token"
DEFAULT_CONNECT_HOLD_MS = 10000

PROXY_502_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
STATUS_429_BODY = b"<html><body><h1>429 Too Many Requests</h1></body></html>"

# How often a black-holed request checks whether its client went away.
_BLACKHOLE_POLL_SECONDS = 0.1


class _BadRequest(Exception):
    """Raised when the request body framing (Content-Length or chunks) is invalid."""


class _RequestHandler(BaseHTTPRequestHandler):
    """Read one request, decide its fault, run it through WuzapiApp and write the reply."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Go's net/http disables Nagle too; with it on, small writes wait for delayed ACKs.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing; tests read the request log instead."""

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # --- request -----------------------------------------------------------------------

    def _serve(self) -> None:
        fake = self.server.fake
        try:
            body = self._read_body()
        except _BadRequest as exc:
            self.close_connection = True
            self._deliver(Response(400, f"{exc}\n".encode(), "text/plain; charset=utf-8"), None)
            return

        split = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
        )
        if request.path.startswith(CONTROL_PREFIX):
            self._deliver(handle_control(fake, request), None)
            return

        entry = fake.log.add(request)
        rule = fake.faults.decide(request.path)
        if rule is None:
            self._deliver(self._process(request, entry), entry)
            return
        fake.log.update(entry, fault=rule.mode)
        self._apply_fault(rule, request, entry)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _BadRequest(f"invalid Content-Length {length_header!r}") from None
        if length < 0:
            raise _BadRequest(f"invalid Content-Length {length_header!r}")
        return self.rfile.read(length)

    def _read_chunked_body(self) -> bytes:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(f"invalid chunk size line {size_line!r}") from None
            if size == 0:
                # Skip trailer fields up to the blank line that ends the message.
                while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def _process(self, request: Request, entry: dict[str, Any]) -> Response:
        response = self.server.fake.app.handle(request)
        self.server.fake.log.update(entry, processed=True)
        return response

    # --- faults ------------------------------------------------------------------------

    def _apply_fault(self, rule: FaultRule, request: Request, entry: dict[str, Any]) -> None:
        mode = rule.mode
        seconds = rule.latency_ms / 1000

        if mode == "latency":
            if not self._sleep(seconds):
                self._drop_connection(reset=False)
                return
            self._deliver(self._process(request, entry), entry)
        elif mode == "proxy_502":
            self._deliver(Response(502, PROXY_502_BODY, "text/html", {"Server": "nginx"}), entry)
        elif mode == "status_429":
            headers = {"Server": "nginx", "Retry-After": rule.retry_after}
            self._deliver(Response(429, STATUS_429_BODY, "text/html", headers), entry)
        elif mode == "error_500":
            self._deliver(error(500, "no session"), entry)
        elif mode in ("reset", "close", "blackhole"):
            if rule.after_processing:
                self._process(request, entry)
            if mode == "blackhole":
                self._wait_for_client_to_leave()
            self._drop_connection(reset=mode == "reset")
        elif mode == "stall_body":
            self._deliver(self._process(request, entry), entry, stall_seconds=seconds)
        elif mode == "trickle":
            self._deliver(self._process(request, entry), entry, trickle_seconds=seconds)
        else:
            raise AssertionError(f"fault mode {mode!r} has no implementation")

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds`, returning False early if the server is stopping."""
        return not self.server.fake.stopping.wait(seconds)

    def _wait_for_client_to_leave(self) -> None:
        """Block until the client closes the connection or the server stops, discarding any input."""
        connection = self.connection
        while not self.server.fake.stopping.is_set():
            try:
                readable, _, _ = select.select([connection], [], [], _BLACKHOLE_POLL_SECONDS)
                if readable and not connection.recv(65536):
                    return
            except (OSError, ValueError):
                return

    def _drop_connection(self, reset: bool) -> None:
        """Close the connection without a response: a TCP reset if `reset`, else a clean FIN."""
        self.close_connection = True
        connection = self.connection
        try:
            if reset:
                # Linger time 0 makes close() send RST and discard unsent data.
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        # The socket closes for real only once the buffered reader made from it is closed too.
        self.rfile.close()
        connection.close()

    # --- response ----------------------------------------------------------------------

    def _deliver(
        self,
        response: Response,
        entry: dict[str, Any] | None,
        stall_seconds: float | None = None,
        trickle_seconds: float | None = None,
    ) -> None:
        """Write `response`, optionally stalling mid-body or trickling the body byte by byte."""
        if response.drop_connection:
            self._drop_connection(reset=False)
            return
        if response.hold_seconds and not self._sleep(response.hold_seconds):
            self._drop_connection(reset=False)
            return

        if entry is not None:
            self.server.fake.log.update(entry, status=response.status)

        head = self._head(response)
        # A reply to HEAD keeps the Content-Length of the full body but sends no body.
        body = b"" if self.command == "HEAD" else response.body
        if stall_seconds is not None:
            first_part = body[: len(body) // 2]
            self.wfile.write(head + first_part)
            if not self._sleep(stall_seconds):
                self._drop_connection(reset=False)
                return
            self.wfile.write(body[len(first_part):])
        elif trickle_seconds is not None and body:
            self.wfile.write(head)
            self._trickle(body, trickle_seconds)
        else:
            self.wfile.write(head + body)

    def _trickle(self, body: bytes, total_seconds: float) -> None:
        """Send one byte every total_seconds / len(body) seconds, the first after one interval."""
        interval = total_seconds / len(body)
        started = time.monotonic()
        for index in range(len(body)):
            # Schedule from the start time so the per-byte waits do not add up drift.
            delay = started + (index + 1) * interval - time.monotonic()
            if delay > 0 and not self._sleep(delay):
                self._drop_connection(reset=False)
                return
            self.wfile.write(body[index:index + 1])

    def _head(self, response: Response) -> bytes:
        """Build the status line and headers by hand so head and body can go out in one write."""
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [f"{self.protocol_version} {response.status} {reason}", f"Date: {self.date_time_string()}"]
        if response.content_type is not None:
            lines.append(f"Content-Type: {response.content_type}")
        lines.extend(f"{name}: {value}" for name, value in response.headers.items())
        lines.append(f"Content-Length: {len(response.body)}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so stop() can close them all."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], fake: FakeWuzapi) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.fake = fake
        self._connections_lock = threading.Lock()
        self._open_connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(), a reverse DNS lookup that can stall.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"fake-wuzapi-connection-{client_address[1]}",
            daemon=True,
        )
        with self._connections_lock:
            self._open_connections.add(request)
            self._handler_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._connections_lock:
                self._open_connections.discard(request)
                self._handler_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore socket errors, which mean the client went away. Print others: they are bugs."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down every open client connection so blocked handler threads return."""
        with self._connections_lock:
            connections = list(self._open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_threads(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._connections_lock:
            threads = list(self._handler_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class FakeWuzapi:
    """A fake WUZAPI server on a real socket, with fault injection and a request log.

    Use it as a context manager, or call start() and stop(). `users` maps user names to
    tokens. `connect_hold_ms` is how long POST /session/connect without "Immediate": true
    holds its reply (WUZAPI sleeps 10 s there).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_token: str = DEFAULT_ADMIN_TOKEN,
        users: dict[str, str] | None = None,
        connect_hold_ms: int = DEFAULT_CONNECT_HOLD_MS,
    ) -> None:
        if connect_hold_ms < 0:
            raise ValueError(f"connect_hold_ms must be >= 0, got {connect_hold_ms}")
        tokens = list((users or {}).values())
        if any(not token for token in tokens) or len(set(tokens)) != len(tokens):
            raise ValueError("every user needs its own non-empty token")
        self.host = host
        self._requested_port = port
        self.admin_token = admin_token
        self.store = Store(users)
        self.app = WuzapiApp(self.store, admin_token, connect_hold_ms)
        self.faults = FaultController()
        self.log = RequestLog()
        self.stopping = threading.Event()
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeWuzapi:
        """Bind the socket, serve in a daemon thread and return self."""
        if self._server is not None:
            raise RuntimeError("FakeWuzapi was already started; create a new instance")
        self._server = _HTTPServer((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-wuzapi-accept",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting, close every open connection (black-holed ones too) and return.

        Handler threads get up to `timeout` seconds to finish. Calling stop() again does nothing.
        """
        if self._server is None or self.stopping.is_set():
            return
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._server.join_threads(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> FakeWuzapi:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeWuzapi is not started; call start() first")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- faults and request log --------------------------------------------------------

    def set_fault(self, **rule: Any) -> dict[str, Any]:
        """Replace the fault rule (same fields as POST /__fake__/faults) and return it normalized.

        Raises ValueError for an invalid rule.
        """
        return self.faults.set(rule).to_dict()

    def clear_fault(self) -> None:
        self.faults.clear()

    def fault(self) -> dict[str, Any]:
        """Return the current fault rule, normalized."""
        return self.faults.current()

    def requests(self) -> list[dict[str, Any]]:
        """Return a copy of the request log, oldest first."""
        return self.log.entries()

    def clear_requests(self) -> int:
        """Empty the request log and return how many entries it had."""
        return self.log.clear()

    # --- users -------------------------------------------------------------------------

    def pair(self, token: str, phone: str | None = None) -> str:
        """Complete the pending QR pairing of the user with `token` and return its new JID.

        Raises PairingError when the token is unknown or the user has no connected,
        logged-out client.
        """
        return self.store.pair(token, phone).jid

    def users(self) -> list[dict[str, Any]]:
        """Return a snapshot of every user, including its outbox of sent messages."""
        with self.store.lock:
            return [user.snapshot() for user in self.store.all()]

    def user(self, token: str) -> dict[str, Any] | None:
        """Return a snapshot of the user with `token`, or None."""
        with self.store.lock:
            user = self.store.by_token(token)
            return user.snapshot() if user is not None else None
