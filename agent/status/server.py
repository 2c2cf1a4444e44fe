"""The status service's HTTP server: GET and HEAD only, Server-Sent Events for the live page.

Built on ``socketserver`` rather than ``http.server``: ``http.server`` imports
``http.client``, ``email`` and ``ssl`` (OpenSSL), which cost ~7 MB of resident
memory on the device for nothing this server does (measured: a bare
interpreter with them 19.7 MB, without 12.7 MB). What it needs of HTTP/1.1 is
small: a request line, headers (bounded), fixed-length answers on a kept-alive
connection, and one long-lived ``text/event-stream`` answer.

Every answer carries a Content-Security-Policy that allows only this server's
own scripts and styles (no inline script, no other origin), so even a string
that slipped past escaping could not run. No endpoint changes any state.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192
MAX_HEADERS = 64
MAX_REQUESTS_PER_CONNECTION = 200
READ_TIMEOUT = 15.0  # seconds a client may take to send a request
MAX_EVENT_STREAMS = 16
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Response(NamedTuple):
    status: int
    content_type: str
    body: Any  # bytes, or an iterator of bytes sent as they come (chunked)
    cache: str = "no-store"


class Request(NamedTuple):
    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]


# What an application gives the server: answer(request) -> Response, or None for the
# event stream, which stream(request, write, stopping) then serves until it returns.
Answer = Callable[[Request], Optional[Response]]
Stream = Callable[[Request, Callable[[bytes], None], threading.Event], None]


class StatusServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """One thread per connection (daemon threads: a stuck client never blocks a stop)."""

    daemon_threads = True
    block_on_close = False  # a stop never waits for an idle kept-alive client
    allow_reuse_address = True
    request_queue_size = 32

    def __init__(self, host: str, port: int, answer: Answer, stream: Stream) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.answer = answer
        self.stream = stream
        self.stopping = threading.Event()
        self.streams = threading.BoundedSemaphore(MAX_EVENT_STREAMS)
        self._thread: Optional[threading.Thread] = None
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> StatusServer:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.25}, name="status-http"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # event streams end at their next wake-up
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5.0)
        self.server_close()


class _Handler(socketserver.StreamRequestHandler):
    # Headers and body go out in one write; with Nagle on, a kept-alive client's
    # delayed ACK would stall every answer by ~40 ms.
    disable_nagle_algorithm = True
    timeout = READ_TIMEOUT

    def handle(self) -> None:
        server: StatusServer = self.server  # type: ignore[assignment]
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                request, keep_alive = self._read_request()
            except _BadRequest as exc:
                self._send(Response(exc.status, "text/plain; charset=utf-8", exc.text), False)
                return
            except (OSError, ValueError):
                return  # the client went away or timed out
            if request is None:
                return
            if request.method not in ("GET", "HEAD"):
                self._send(
                    Response(405, "text/plain; charset=utf-8", b"read-only: GET and HEAD only\n"),
                    False,
                    extra=(("Allow", "GET, HEAD"),),
                )
                return
            try:
                response = server.answer(request)
            except Exception:
                log.exception("status: answering %s failed", request.path)
                response = Response(500, "text/plain; charset=utf-8", b"internal error\n")
            if response is None:
                self._event_stream(server, request)
                return
            if not self._send(response, keep_alive, head=request.method == "HEAD"):
                return
            if not keep_alive:
                return

    def _read_request(self) -> Tuple[Optional[Request], bool]:
        line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not line:
            return None, False
        if len(line) > MAX_REQUEST_LINE:
            raise _BadRequest(414, b"request line too long\n")
        parts = line.decode("latin-1").strip().split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, b"bad request line\n")
        method, target, version = parts
        headers: Dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            raw = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise _BadRequest(400, b"bad header line\n")
            headers[name.strip().lower()] = value.strip()
        else:
            raise _BadRequest(431, b"too many header lines\n")
        if method in ("GET", "HEAD") and (
            headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
        ):
            raise _BadRequest(400, b"a request body is not accepted here\n")
        url = urlsplit(target)
        connection = headers.get("connection", "").lower()
        keep_alive = version == "HTTP/1.1" and connection != "close"
        return Request(method, url.path or "/", parse_qs(url.query), headers), keep_alive

    def _send(
        self,
        response: Response,
        keep_alive: bool,
        head: bool = False,
        extra: Tuple[Tuple[str, str], ...] = (),
    ) -> bool:
        chunked = not isinstance(response.body, bytes)
        lines = [
            "HTTP/1.1 {} {}".format(response.status, REASONS.get(response.status, "")),
            "Content-Type: " + response.content_type,
            "Transfer-Encoding: chunked"
            if chunked
            else "Content-Length: {}".format(len(response.body)),
            "Cache-Control: " + response.cache,
            "Connection: " + ("keep-alive" if keep_alive else "close"),
        ]
        lines += ["{}: {}".format(k, v) for k, v in SECURITY_HEADERS + extra]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if head:
                self.wfile.write(data)
            elif not chunked:
                self.wfile.write(data + response.body)  # one write: see disable_nagle_algorithm
            else:
                self.wfile.write(data)
                for part in response.body:
                    if part:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            return False
        return True

    def _event_stream(self, server: StatusServer, request: Request) -> None:
        if not server.streams.acquire(blocking=False):
            self._send(
                Response(503, "text/plain; charset=utf-8", b"too many live pages open\n"), False
            )
            return
        try:
            head = [
                "HTTP/1.1 200 OK",
                "Content-Type: text/event-stream; charset=utf-8",
                "Cache-Control: no-store",
                "Connection: close",
                "X-Accel-Buffering: no",
            ] + ["{}: {}".format(k, v) for k, v in SECURITY_HEADERS]
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            self.wfile.flush()
            if request.method == "HEAD":
                return

            def write(data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

            server.stream(request, write, server.stopping)
        except OSError:
            pass  # the page was closed
        finally:
            server.streams.release()


class _BadRequest(Exception):
    def __init__(self, status: int, text: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.text = text


def serve(host: str, port: int, answer: Answer, stream: Stream) -> StatusServer:
    """Bind (raises ``OSError`` naming the address) and return the server, not yet serving."""
    try:
        return StatusServer(host, port, answer, stream)
    except OSError as exc:
        raise OSError(
            exc.errno,
            "the status service cannot listen on {}:{}: {} (choose another statusPort, "
            "or stop what uses it)".format(host, port, exc.strerror or exc),
        ) from None
