"""HTTP plumbing: a threading server whose handler reads requests, injects faults and answers.

HTTP/1.1 with keep-alive (every answer carries ``Content-Length``), Nagle off
(no delayed-ACK stalls between small writes), bodies up to 10 MB (413 above),
chunked uploads, and every error as ServiceNow's JSON envelope. What a request
means is the stand-in's business (:meth:`ServiceNowStandIn.handle`); here it is
only read, possibly sabotaged, and answered.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import struct
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from .events import EVENT_PATH
from .front import (
    HTML_TYPE,
    LOGIN_PATH,
    html_page,
    huge_list,
    login_page,
    raw_answer,
    redirect_page,
    trickle,
)
from .responses import error_envelope, redact_path

if TYPE_CHECKING:
    from .contracts import ServedStandIn

LOG = logging.getLogger("edge_agent.standin")

MAX_BODY_BYTES = 10 * 1024 * 1024
"""Request bodies above this size are answered with 413."""
_DRAIN_LIMIT = 64 * 1024 * 1024  # read and discard an oversized body up to this, to answer 413
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def _reset_on_close(sock: socket.socket) -> None:
    """Make the coming close() send a RST, like a crashed peer or a dropping proxy."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class _BodyError(Exception):
    def __init__(self, status: int, message: str, close: bool) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class StandInServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: Tuple[str, int], standin: ServedStandIn) -> None:
        self.standin = standin
        super().__init__(address, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "ServiceNowStandIn/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between small writes

    server: StandInServer
    _log_path = "-"
    _started = 0.0

    # -- connection bookkeeping ---------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.standin.connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin.connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the base class would print the raw request line to stderr.
        Requests are logged, redacted, by :meth:`_done`."""

    # -- entry points ----------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def send_error(
        self, code: int, message: Optional[str] = None, explain: Optional[str] = None
    ) -> None:
        """Malformed requests and unsupported methods, as JSON (the base sends HTML)."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._log_path = redact_path(getattr(self, "path", "") or "-")
        self._write(code, error_envelope(message or phrase, explain), {})

    # -- the request -----------------------------------------------------------------
    def _dispatch(self) -> None:
        standin = self.server.standin
        self._started = time.monotonic()
        self._log_path = redact_path(self.path)
        try:
            body = self._read_body()
        except _BodyError as exc:
            if exc.close:
                self.close_connection = True
            self._respond(exc.status, error_envelope(exc.message, None), {})
            return
        except OSError:
            self.close_connection = True
            standin.record_request(self.command, self._log_path, None, self._started)
            return

        if standin.admin is not None and standin.admin.handles(self.path):
            # The test's control channel: no faults, no latency, not logged.
            status, payload, headers = standin.admin.handle(
                self.command, self.path, self.headers, body
            )
            self._write(status, payload, headers, record=False)
            return
        path = urlsplit(self.path).path
        if path == LOGIN_PATH and self.command == "GET":
            # An instance's login page: where a single sign-on redirect leads.
            self._write_bytes(200, HTML_TYPE, login_page(), {})
            return
        # Events are writes too: a slow commit or a lost answer applies to them as to records.
        writes_record = self.command in _WRITE_METHODS and (
            standin.is_table_path(path) or path.rstrip("/") == EVENT_PATH
        )
        queries_table = self.command == "GET" and standin.is_table_query(path)
        kind, arg, detail = standin.faults.for_request(writes_record, queries_table)
        if kind == "drop":
            self._drop()
            return
        if kind == "redirect":
            standin.count("injected_failures")
            self._sleep_latency()
            self._write_bytes(arg, HTML_TYPE, redirect_page(detail), {"Location": detail})
            return
        if kind == "html":
            standin.count("injected_failures")
            self._sleep_latency()
            self._write_bytes(arg, HTML_TYPE, html_page(detail), {})
            return
        if kind == "huge":
            standin.count("injected_failures")
            self._write_huge(arg, chunked=bool(detail))
            return
        if kind == "rate_limit":
            standin.count("rate_limited")
            limit = standin.faults.rate_limit_limit
            envelope = error_envelope(
                "Too Many Requests",
                f"Rate limit of {limit} requests per hour exceeded (servicenow stand-in)",
            )
            if arg is None:  # a proxy's 429: no Retry-After, no rate-limit headers
                self._respond(429, envelope, {})
                return
            reset = int(standin.clock()) + arg
            self._respond(
                429,
                envelope,
                {
                    "Retry-After": str(arg),
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Reset": str(reset),
                },
            )
            return
        if kind == "fail":
            standin.count("injected_failures")
            try:
                phrase = HTTPStatus(arg).phrase
            except ValueError:
                phrase = "Server Error"
            self._respond(arg, error_envelope(phrase, "Injected fault (servicenow stand-in)"), {})
            return

        commit_delay = standin.faults.write_delay() if writes_record else 0.0
        if commit_delay > 0:
            time.sleep(commit_delay)  # a slow instance: the write is not stored before this
        try:
            status, payload, headers = standin.handle(self.command, self.path, self.headers, body)
        except Exception:  # the stand-in's own bug: answer like an instance would
            LOG.exception("stand-in failed on %s %s", self.command, self._log_path)
            status, payload, headers = 500, error_envelope("Internal Server Error", None), {}
        if kind == "commit_then_drop":
            self._drop()
            return
        if kind == "trickle":
            self._write_trickled(status, payload, headers, float(detail))
            return
        self._respond(status, payload, headers)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError:
            raise _BodyError(400, "Invalid Content-Length", close=True)
        if length > MAX_BODY_BYTES:
            if length > _DRAIN_LIMIT:
                raise _BodyError(413, "Request Entity Too Large", close=True)
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    raise OSError("client went away")
                remaining -= len(chunk)
            raise _BodyError(413, "Request Entity Too Large", close=False)
        data = self.rfile.read(length)
        if len(data) < length:
            raise OSError("client went away")
        return data

    def _read_chunked(self) -> bytes:
        parts: List[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "Invalid chunked encoding", close=True)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            total += size
            if total > _DRAIN_LIMIT:
                raise _BodyError(413, "Request Entity Too Large", close=True)
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise OSError("client went away")
            self.rfile.readline(65537)  # CRLF after the chunk
            if total <= MAX_BODY_BYTES:
                parts.append(chunk)
        if total > MAX_BODY_BYTES:
            raise _BodyError(413, "Request Entity Too Large", close=False)
        return b"".join(parts)

    # -- answers ---------------------------------------------------------------------
    def _sleep_latency(self) -> None:
        latency = self.server.standin.faults.latency
        if latency > 0:
            time.sleep(latency)

    def _respond(self, status: int, payload: Optional[Dict[str, Any]], headers: Dict[str, str]):
        self._sleep_latency()
        self._write(status, payload, headers)

    def _write(
        self,
        status: int,
        payload: Optional[Dict[str, Any]],
        headers: Dict[str, str],
        record: bool = True,
    ) -> None:
        body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        content_type = None if payload is None else JSON_CONTENT_TYPE
        self._write_bytes(status, content_type, body, headers, record)

    def _write_bytes(
        self,
        status: int,
        content_type: Optional[str],
        body: bytes,
        headers: Dict[str, str],
        record: bool = True,
    ) -> None:
        # Recorded before the answer leaves, so a client that has its answer
        # always finds the request in the log and the counters.
        if record:
            self.server.standin.record_request(self.command, self._log_path, status, self._started)
        try:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            if status != 204:
                self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if body:
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _write_trickled(
        self,
        status: int,
        payload: Optional[Dict[str, Any]],
        headers: Dict[str, str],
        interval: float,
    ) -> None:
        """The whole answer, status line first, one byte every ``interval`` seconds."""
        self._sleep_latency()
        body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        lines = [("Content-Type", JSON_CONTENT_TYPE)] if payload is not None else []
        lines += [("Content-Length", str(len(body))), ("Connection", "close")]
        lines += list(headers.items())
        self.close_connection = True
        self.server.standin.record_request(self.command, self._log_path, status, self._started)
        trickle(self.wfile, raw_answer(status, lines, body), interval)

    def _write_huge(self, size: int, chunked: bool) -> None:
        """200 and a list of about ``size`` bytes, written as fast as the client reads."""
        total, parts = huge_list(size)
        self.close_connection = True  # a client that stops reading leaves the rest unread
        self.server.standin.record_request(self.command, self._log_path, 200, self._started)
        try:
            self.send_response(200)
            self.send_header("Content-Type", JSON_CONTENT_TYPE)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(total))
            self.send_header("Connection", "close")
            self.end_headers()
            for part in parts:
                if chunked:
                    part = b"%x\r\n%s\r\n" % (len(part), part)
                self.wfile.write(part)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading: what a capped client does

    def _drop(self) -> None:
        self._sleep_latency()
        self.server.standin.count("dropped")
        self.server.standin.record_request(self.command, self._log_path, None, self._started)
        self.close_connection = True
        _reset_on_close(self.connection)  # the socket is closed once this returns
