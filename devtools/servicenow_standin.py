"""A local stand-in for the part of the ServiceNow Table API the edge agent uses.

It speaks real HTTP on a real socket, so the agent's client (``requests``), the
``edge-agent simulate`` command and the test suite exercise the same code path
they use against an instance. Only the ``incident`` table is served, on both
``/api/now/table/incident`` (v1) and ``/api/now/v2/table/incident`` (v2), plus
``POST /oauth_token.do``. Behaviour copied from ServiceNow on purpose:

* every value in a record is a string; ``number`` is ``INC0010001``, ...;
  ``priority`` follows the default impact x urgency matrix;
* ``work_notes`` and ``comments`` are journal fields: they append and read back
  as ``""``;
* a query term naming an unknown field, or one it cannot parse, is silently
  ignored (so a typo widens the query instead of failing it);
* v1 answers a query without matches with 404, v2 with ``200 {"result": []}``;
* resolving (state 6) needs ``close_code`` and ``close_notes`` (403 otherwise);
  state 7 (closed) and 8 (canceled) make the record inactive, 6 does not;
* errors use the ``{"error": {"message", "detail"}, "status": "failure"}``
  envelope, 401 carries ``WWW-Authenticate: Basic realm="Service-now"``.

Faults can be injected at run time through :attr:`ServiceNowStandIn.faults`
(latency, 5xx, 429 with ``Retry-After``, dropped connections, a server that is
down, a write that commits but is never confirmed).

Run it on its own with ``python -m devtools.servicenow_standin --help``.
Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import functools
import http.server
import json
import logging
import random
import re
import secrets
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
import uuid
from http import HTTPStatus
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple, Union
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "Faults",
    "ServiceNowStandIn",
    "error_envelope",
    "main",
    "priority_for",
]

LOG = logging.getLogger("edge_agent.standin")

MAX_BODY_BYTES = 10 * 1024 * 1024
"""Request bodies above this size are answered with 413."""
_DRAIN_LIMIT = 64 * 1024 * 1024  # read and discard an oversized body up to this, to answer 413
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"
DEFAULT_TOKEN_TTL = 1799
DEFAULT_RATE_LIMIT = 5000
TABLE = "incident"
_FIRST_NUMBER_BASE = 10000  # the first incident is INC0010001, as on a fresh instance

JOURNAL_FIELDS = ("work_notes", "comments")
RESOLVED_STATE = "6"
INACTIVE_STATES = frozenset({"7", "8"})  # closed, canceled
PRIORITY_MATRIX = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}
# Set by the server; a client cannot write them.
SYSTEM_FIELDS = frozenset(
    {
        "sys_id",
        "number",
        "priority",
        "active",
        "sys_class_name",
        "sys_created_on",
        "sys_created_by",
        "sys_updated_on",
        "sys_updated_by",
        "sys_mod_count",
        "opened_at",
        "resolved_at",
        "closed_at",
    }
)
# The incident table's schema as far as queries are concerned: a query term on
# any other field is ignored, as ServiceNow does. Custom ``u_`` fields are known.
INCIDENT_FIELDS = frozenset(
    {
        "active",
        "approval",
        "assigned_to",
        "assignment_group",
        "business_service",
        "caller_id",
        "category",
        "close_code",
        "close_notes",
        "closed_at",
        "closed_by",
        "cmdb_ci",
        "comments",
        "company",
        "contact_type",
        "correlation_display",
        "correlation_id",
        "description",
        "escalation",
        "hold_reason",
        "impact",
        "incident_state",
        "knowledge",
        "location",
        "made_sla",
        "notify",
        "number",
        "opened_at",
        "opened_by",
        "parent_incident",
        "priority",
        "problem_id",
        "reopen_count",
        "resolved_at",
        "resolved_by",
        "service_offering",
        "severity",
        "short_description",
        "state",
        "subcategory",
        "sys_class_name",
        "sys_created_by",
        "sys_created_on",
        "sys_domain",
        "sys_id",
        "sys_mod_count",
        "sys_updated_by",
        "sys_updated_on",
        "urgency",
        "work_notes",
    }
)
_DEFAULT_FIELDS = (
    "short_description",
    "description",
    "category",
    "correlation_id",
    "correlation_display",
    "close_code",
    "close_notes",
)
_SYS_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_FIELD_RE = re.compile(r"^[a-z0-9_]+$")
_TABLE_PATH_RE = re.compile(r"^/api/now(?:/(v1|v2))?/table/([^/]+)(?:/([^/]+))?/?$")
_QUERY_TERM_RE = re.compile(
    r"^([a-z0-9_]+)(!=|=|ISNOTEMPTY|ISEMPTY|NOT IN|IN|LIKE|NOT LIKE|STARTSWITH|ENDSWITH)(.*)$",
    re.S,
)
_SECRET_PARAM_RE = re.compile(
    r"(?i)((?:^|[?&;])[^=&;]*(?:pass|secret|token|auth|api_?key|session)[^=&;]*=)[^&;]*"
)
_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})

COUNTER_NAMES = (
    "requests",
    "connections",
    "auth_failures",
    "oauth_failures",
    "tokens_issued",
    "created",
    "updated",
    "deleted",
    "dropped",
    "rate_limited",
    "injected_failures",
    "ignored_query_terms",
)

Response = Tuple[int, Optional[Dict[str, Any]], Dict[str, str]]


# ---------------------------------------------------------------------------
# Small pure helpers
# ---------------------------------------------------------------------------
def error_envelope(message: str, detail: Optional[str]) -> Dict[str, Any]:
    """ServiceNow's error body."""
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def _not_found() -> Response:
    return (
        404,
        error_envelope(
            "No Record found",
            "Records matching query not found. Check query parameter or offset parameter",
        ),
        {},
    )


def _unauthenticated() -> Response:
    return (
        401,
        error_envelope("User Not Authenticated", "Required to provide Auth information"),
        {"WWW-Authenticate": 'Basic realm="Service-now"'},
    )


def priority_for(impact: Any, urgency: Any) -> str:
    """ServiceNow's default priority lookup; ``"5"`` when either value is off the scale."""
    return PRIORITY_MATRIX.get((str(impact).strip(), str(urgency).strip()), "5")


def _to_str(value: Any) -> str:
    """How a JSON value sent to ServiceNow reads back: always as a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "value" in value:  # {"value": ..., "display_value": ...}
        return _to_str(value["value"])
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def redact_path(path: str) -> str:
    """``path`` with the values of secret-looking query parameters replaced by ``***``."""
    return _SECRET_PARAM_RE.sub(r"\1***", path)


def _parse_query(
    query: str,
) -> Tuple[List[Tuple[str, str, str]], List[Tuple[str, bool]], List[str]]:
    """An encoded query as (filters, order, ignored terms)."""
    filters: List[Tuple[str, str, str]] = []
    order: List[Tuple[str, bool]] = []
    ignored: List[str] = []
    for term in query.split("^"):
        if not term:
            continue
        if term.startswith("ORDERBYDESC"):
            order.append((term[len("ORDERBYDESC") :], True))
            continue
        if term.startswith("ORDERBY"):
            order.append((term[len("ORDERBY") :], False))
            continue
        match = _QUERY_TERM_RE.match(term)
        if match is None:
            ignored.append(term)
            continue
        field, op, value = match.groups()
        if field not in INCIDENT_FIELDS and not field.startswith("u_"):
            ignored.append(term)
            continue
        filters.append((field, op, value))
    return filters, order, ignored


def _matches(record: Dict[str, Any], filters: Iterable[Tuple[str, str, str]]) -> bool:
    for field, op, value in filters:
        actual = str(record.get(field, ""))
        if op == "=":
            ok = actual == value
        elif op == "!=":
            ok = actual != value
        elif op == "ISEMPTY":
            ok = actual == ""
        elif op == "ISNOTEMPTY":
            ok = actual != ""
        elif op == "IN":
            ok = actual in value.split(",")
        elif op == "NOT IN":
            ok = actual not in value.split(",")
        elif op == "LIKE":
            ok = value.lower() in actual.lower()
        elif op == "NOT LIKE":
            ok = value.lower() not in actual.lower()
        elif op == "STARTSWITH":
            ok = actual.lower().startswith(value.lower())
        else:  # ENDSWITH
            ok = actual.lower().endswith(value.lower())
        if not ok:
            return False
    return True


def _sorted(records: List[Dict[str, Any]], order: List[Tuple[str, bool]]) -> List[Dict[str, Any]]:
    """``records`` (oldest first) sorted by the ORDERBY terms; ties go by creation
    order in the direction of the first term, so ``ORDERBYDESCsys_created_on``
    puts the newest of several created in the same second first."""

    def compare(a: Tuple[int, Dict[str, Any]], b: Tuple[int, Dict[str, Any]]) -> int:
        for field, descending in order:
            x, y = str(a[1].get(field, "")), str(b[1].get(field, ""))
            if x != y:
                return (1 if x > y else -1) * (-1 if descending else 1)
        return (a[0] - b[0]) * (-1 if order[0][1] else 1)

    ranked = sorted(enumerate(records), key=functools.cmp_to_key(compare))
    return [record for _, record in ranked]


def _public(record: Dict[str, Any], fields: Optional[List[str]] = None) -> Dict[str, str]:
    """A stored record as the API shows it: no private keys, optionally projected."""
    shown = {k: v for k, v in record.items() if not k.startswith("_")}
    if fields:
        return {f: shown[f] for f in fields if f in shown}
    return shown


def _reset_on_close(sock: socket.socket) -> None:
    """Make the coming close() send a RST, like a crashed peer or a dropping proxy."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


# ---------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------
class Faults:
    """Fault-injection knobs, safe to change from any thread while serving.

    One-shot faults (``fail_next`` and friends) are consumed in this order per
    request: ``down``, ``drop_next``, ``rate_limit_next``, ``fail_next``, then
    the random rates (``drop_rate``, ``rate_limit_rate``, ``fail_rate``).
    ``fail_after_commit_next`` only counts write requests on the table.
    Injected faults apply to every request, the token endpoint included, and
    come before authentication.
    """

    def __init__(self, seed: Optional[int] = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._latency = 0.0
        self._down = False
        self._fail: Deque[int] = collections.deque()
        self._rate_limit: Deque[int] = collections.deque()
        self._drop = 0
        self._commit_then_drop = 0
        self.fail_rate = 0.0
        self.fail_status = 503
        self.rate_limit_rate = 0.0
        self.retry_after = 30
        self.drop_rate = 0.0
        self.rate_limit_limit = DEFAULT_RATE_LIMIT

    @property
    def latency(self) -> float:
        """Seconds added before every response (and before every drop)."""
        with self._lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self._latency = float(seconds)

    @property
    def down(self) -> bool:
        """While true every request is answered by resetting the connection."""
        with self._lock:
            return self._down

    @down.setter
    def down(self, value: bool) -> None:
        with self._lock:
            self._down = bool(value)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` (a 5xx) and the error envelope."""
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status")
        with self._lock:
            self._fail.extend([status] * n)

    def rate_limit_next(self, n: int = 1, retry_after: int = 30) -> None:
        """Answer the next ``n`` requests with 429 and ``Retry-After: retry_after``."""
        with self._lock:
            self._rate_limit.extend([int(retry_after)] * n)

    def drop_next(self, n: int = 1) -> None:
        """Close the connection of the next ``n`` requests without answering."""
        with self._lock:
            self._drop += n

    def fail_after_commit_next(self, n: int = 1) -> None:
        """Perform the next ``n`` table writes, then drop the connection unanswered."""
        with self._lock:
            self._commit_then_drop += n

    def reset(self) -> None:
        """Clear every pending fault and rate, and the latency; bring the server up."""
        with self._lock:
            self._latency = 0.0
            self._down = False
            self._fail.clear()
            self._rate_limit.clear()
            self._drop = 0
            self._commit_then_drop = 0
            self.fail_rate = self.rate_limit_rate = self.drop_rate = 0.0

    def pending(self) -> Dict[str, int]:
        """How many one-shot faults are still queued, by kind."""
        with self._lock:
            return {
                "fail": len(self._fail),
                "rate_limit": len(self._rate_limit),
                "drop": self._drop,
                "fail_after_commit": self._commit_then_drop,
            }

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def decide(self, table_write: bool) -> Tuple[str, int]:
        """The fault for one request: ``(kind, arg)``; kind is one of ``ok``,
        ``drop``, ``rate_limit`` (arg: Retry-After), ``fail`` (arg: status),
        ``commit_then_drop``."""
        with self._lock:
            if self._down:
                return "drop", 0
            if self._drop > 0:
                self._drop -= 1
                return "drop", 0
            if self._rate_limit:
                return "rate_limit", self._rate_limit.popleft()
            if self._fail:
                return "fail", self._fail.popleft()
            if self._chance(self.drop_rate):
                return "drop", 0
            if self._chance(self.rate_limit_rate):
                return "rate_limit", int(self.retry_after)
            if self._chance(self.fail_rate):
                return "fail", int(self.fail_status)
            if table_write and self._commit_then_drop > 0:
                self._commit_then_drop -= 1
                return "commit_then_drop", 0
            return "ok", 0


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------
class _BodyError(Exception):
    def __init__(self, status: int, message: str, close: bool) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: Tuple[str, int], standin: ServiceNowStandIn) -> None:
        self.standin = standin
        super().__init__(address, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "ServiceNowStandIn/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between small writes

    server: _Server
    _log_path = "-"
    _started = 0.0

    # -- connection bookkeeping ---------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.standin._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.standin._connection_closed(self.connection)

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
            standin._record(self.command, self._log_path, None, self._started)
            return

        path = urlsplit(self.path).path
        table_write = self.command in _WRITE_METHODS and bool(_TABLE_PATH_RE.match(path))
        kind, arg = standin.faults.decide(table_write)
        if kind == "drop":
            self._drop()
            return
        if kind == "rate_limit":
            standin._count("rate_limited")
            limit = standin.faults.rate_limit_limit
            reset = int(standin._clock()) + arg
            self._respond(
                429,
                error_envelope(
                    "Too Many Requests",
                    f"Rate limit of {limit} requests per hour exceeded (servicenow stand-in)",
                ),
                {
                    "Retry-After": str(arg),
                    "X-RateLimit-Limit": str(limit),
                    "X-RateLimit-Reset": str(reset),
                },
            )
            return
        if kind == "fail":
            standin._count("injected_failures")
            try:
                phrase = HTTPStatus(arg).phrase
            except ValueError:
                phrase = "Server Error"
            self._respond(arg, error_envelope(phrase, "Injected fault (servicenow stand-in)"), {})
            return

        try:
            status, payload, headers = standin.handle(self.command, self.path, self.headers, body)
        except Exception:  # the stand-in's own bug: answer like an instance would
            LOG.exception("stand-in failed on %s %s", self.command, self._log_path)
            status, payload, headers = 500, error_envelope("Internal Server Error", None), {}
        if kind == "commit_then_drop":
            self._drop()
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

    def _write(self, status: int, payload: Optional[Dict[str, Any]], headers: Dict[str, str]):
        body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        # Recorded before the answer leaves, so a client that has its answer
        # always finds the request in the log and the counters.
        self.server.standin._record(self.command, self._log_path, status, self._started)
        try:
            self.send_response(status)
            if payload is not None:
                self.send_header("Content-Type", JSON_CONTENT_TYPE)
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

    def _drop(self) -> None:
        self._sleep_latency()
        self.server.standin._count("dropped")
        self.server.standin._record(self.command, self._log_path, None, self._started)
        self.close_connection = True
        _reset_on_close(self.connection)  # the socket is closed once this returns


# ---------------------------------------------------------------------------
# The stand-in
# ---------------------------------------------------------------------------
class ServiceNowStandIn:
    """A ServiceNow instance in a thread.

    ``users`` maps user name to password for HTTP Basic and the OAuth password
    grant; ``oauth_clients`` maps client id to client secret for
    ``/oauth_token.do``. ``clock`` (epoch seconds) drives timestamps and token
    expiry, so tests can age tokens without sleeping.
    """

    def __init__(
        self,
        db_path: str = ":memory:",
        users: Optional[Dict[str, str]] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        oauth_clients: Optional[Dict[str, str]] = None,
        *,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
        seed: Optional[int] = None,
    ) -> None:
        self.db_path = str(db_path)
        self.host = host
        self.port = port
        self.token_ttl = token_ttl
        self.faults = Faults(seed)
        self._clock = clock
        self._state_lock = threading.Lock()  # users, tokens, counters, log, connections
        self._db_lock = threading.RLock()
        self._users: Dict[str, str] = dict({"admin": "admin"} if users is None else users)
        self._oauth_clients: Dict[str, str] = dict(oauth_clients or {})
        self._access_tokens: Dict[str, Tuple[str, float]] = {}
        self._refresh_tokens: Dict[str, Tuple[str, str]] = {}
        self._counters: Dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._request_log: List[Tuple[str, str, Optional[int]]] = []
        self._connections: set = set()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._db: Optional[sqlite3.Connection] = None
        self._open_db()

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> ServiceNowStandIn:
        """Bind and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self._open_db()
        self._server = _Server((self.host, self.port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="servicenow-standin",
            daemon=True,
        )
        self._thread.start()
        LOG.info("ServiceNow stand-in listening on %s (db %s)", self.url, self.db_path)
        return self

    def stop(self) -> None:
        """Stop serving, reset open connections, close a file database."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._state_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if not self._in_memory:
            with self._db_lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None
        LOG.info("ServiceNow stand-in stopped")

    def __enter__(self) -> ServiceNowStandIn:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> Tuple[str, int]:
        """The bound (host, port)."""
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (a wildcard bind shows as 127.0.0.1)."""
        host, port = self.address
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    # -- knobs and observations ------------------------------------------------------
    def set_users(self, users: Dict[str, str]) -> None:
        """Replace the users (e.g. rotate a password). Issued tokens stay valid."""
        with self._state_lock:
            self._users = dict(users)

    def set_oauth_clients(self, clients: Dict[str, str]) -> None:
        with self._state_lock:
            self._oauth_clients = dict(clients)

    def expire_tokens(self) -> None:
        """Expire every issued access token now (refresh tokens stay valid)."""
        with self._state_lock:
            self._access_tokens.clear()

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        self.faults.fail_next(n, status)

    def rate_limit_next(self, n: int = 1, retry_after: int = 30) -> None:
        self.faults.rate_limit_next(n, retry_after)

    def drop_next(self, n: int = 1) -> None:
        self.faults.drop_next(n)

    def fail_after_commit_next(self, n: int = 1) -> None:
        self.faults.fail_after_commit_next(n)

    @property
    def latency(self) -> float:
        return self.faults.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.faults.latency = seconds

    @property
    def down(self) -> bool:
        return self.faults.down

    @down.setter
    def down(self, value: bool) -> None:
        self.faults.down = value

    @property
    def counters(self) -> Dict[str, int]:
        """A snapshot of the counters (see ``COUNTER_NAMES``)."""
        with self._state_lock:
            return dict(self._counters)

    @property
    def auth_failures(self) -> int:
        """Table API requests answered 401."""
        with self._state_lock:
            return self._counters["auth_failures"]

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        with self._state_lock:
            return self._counters["connections"]

    @property
    def request_log(self) -> List[Tuple[str, str, Optional[int]]]:
        """Every request as ``(method, redacted path with query, status)``;
        status is ``None`` when the connection was dropped instead."""
        with self._state_lock:
            return list(self._request_log)

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log (the records stay)."""
        with self._state_lock:
            self._counters = dict.fromkeys(COUNTER_NAMES, 0)
            self._request_log.clear()

    def incidents(self, query: Union[Dict[str, Any], str, None] = None) -> List[Dict[str, Any]]:
        """Stored incidents, oldest first, each with its ``_journal`` (a list of
        ``{"field", "value", "at", "by"}``). ``query`` is a dict of exact
        matches (any key) or an encoded query string as the API takes it."""
        records = self._all_records()
        if isinstance(query, str):
            filters, _, _ = _parse_query(query)
            records = [r for r in records if _matches(r, filters)]
        elif query:
            wanted = {k: _to_str(v) for k, v in query.items()}
            records = [r for r in records if all(r.get(k) == v for k, v in wanted.items())]
        return records

    # -- internal bookkeeping --------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        with self._state_lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def _record(
        self, method: Optional[str], path: str, status: Optional[int], started: float
    ) -> None:
        method = method or "-"
        with self._state_lock:
            self._counters["requests"] += 1
            self._request_log.append((method, path, status))
        elapsed_ms = (time.monotonic() - started) * 1000 if started else 0.0
        LOG.info(
            "%s %s -> %s (%.0f ms)",
            method,
            path,
            status if status is not None else "dropped",
            elapsed_ms,
        )

    def _connection_opened(self, conn: socket.socket) -> None:
        with self._state_lock:
            self._counters["connections"] += 1
            self._connections.add(conn)

    def _connection_closed(self, conn: socket.socket) -> None:
        with self._state_lock:
            self._connections.discard(conn)

    def _now(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self._clock()))

    # -- storage ---------------------------------------------------------------------
    @property
    def _in_memory(self) -> bool:
        return self.db_path in (":memory:", "")

    def _open_db(self) -> None:
        with self._db_lock:
            if self._db is not None:
                return
            db = sqlite3.connect(self.db_path, check_same_thread=False, timeout=10.0)
            if not self._in_memory:
                db.execute("PRAGMA journal_mode=WAL")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS incident (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    sys_id TEXT NOT NULL UNIQUE,
                    data TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS incident_correlation
                    ON incident (json_extract(data, '$.correlation_id'));
                CREATE TABLE IF NOT EXISTS meta (
                    name TEXT PRIMARY KEY,
                    value INTEGER NOT NULL
                );
                """
            )
            db.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('incident_number', ?)",
                (_FIRST_NUMBER_BASE,),
            )
            db.commit()
            self._db = db

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._open_db()
        assert self._db is not None
        return self._db

    def _all_records(self) -> List[Dict[str, Any]]:
        with self._db_lock:
            rows = self._conn().execute("SELECT data FROM incident ORDER BY seq").fetchall()
        return [json.loads(row[0]) for row in rows]

    def _candidates(self, filters: List[Tuple[str, str, str]]) -> List[Dict[str, Any]]:
        """Records that may match: for an exact, non-empty match on a field, only those
        SQLite finds with that value (by index for correlation_id), not every record
        decoded in Python. ``_matches`` still decides."""
        for field, op, value in filters:
            if op == "=" and value and _FIELD_RE.match(field):
                sql = "SELECT data FROM incident WHERE json_extract(data, '$.{}') = ? ORDER BY seq"
                with self._db_lock:
                    rows = self._conn().execute(sql.format(field), (value,)).fetchall()
                return [json.loads(row[0]) for row in rows]
        return self._all_records()

    def _get_record(self, sys_id: str) -> Optional[Dict[str, Any]]:
        with self._db_lock:
            row = (
                self._conn()
                .execute("SELECT data FROM incident WHERE sys_id = ?", (sys_id,))
                .fetchone()
            )
        return json.loads(row[0]) if row else None

    def _insert_record(self, record: Dict[str, Any]) -> Dict[str, Any]:
        """Give the record its number and store it, atomically."""
        with self._db_lock:
            db = self._conn()
            with db:
                db.execute("UPDATE meta SET value = value + 1 WHERE name = 'incident_number'")
                (value,) = db.execute(
                    "SELECT value FROM meta WHERE name = 'incident_number'"
                ).fetchone()
                record["number"] = f"INC{value:07d}"
                db.execute(
                    "INSERT INTO incident (sys_id, data) VALUES (?, ?)",
                    (record["sys_id"], json.dumps(record)),
                )
        return record

    def _save_record(self, record: Dict[str, Any]) -> None:
        with self._db_lock:
            db = self._conn()
            with db:
                db.execute(
                    "UPDATE incident SET data = ? WHERE sys_id = ?",
                    (json.dumps(record), record["sys_id"]),
                )

    def _delete_record(self, sys_id: str) -> bool:
        with self._db_lock:
            db = self._conn()
            with db:
                cursor = db.execute("DELETE FROM incident WHERE sys_id = ?", (sys_id,))
        return cursor.rowcount > 0

    # -- auth ------------------------------------------------------------------------
    def _authenticate(self, headers: Any) -> Optional[str]:
        """The authenticated principal, or None. Never logs the credentials."""
        scheme, _, credentials = (headers.get("Authorization") or "").strip().partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
            user, sep, password = decoded.partition(":")
            with self._state_lock:
                expected = self._users.get(user)
            if (
                sep
                and expected is not None
                and secrets.compare_digest(expected.encode("utf-8"), password.encode("utf-8"))
            ):
                return user
            return None
        if scheme == "bearer" and credentials:
            with self._state_lock:
                entry = self._access_tokens.get(credentials)
                if entry is None:
                    return None
                principal, expires = entry
                if self._clock() >= expires:
                    del self._access_tokens[credentials]
                    return None
            return principal
        return None

    def _client_ok(self, client_id: str, client_secret: str) -> bool:
        with self._state_lock:
            expected = self._oauth_clients.get(client_id)
        return expected is not None and secrets.compare_digest(
            expected.encode("utf-8"), client_secret.encode("utf-8")
        )

    def _user_ok(self, user: str, password: str) -> bool:
        with self._state_lock:
            expected = self._users.get(user)
        return expected is not None and secrets.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8")
        )

    def _oauth(self, headers: Any, body: bytes) -> Response:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        client_id = form.get("client_id", "")
        client_secret = form.get("client_secret", "")
        scheme, _, credentials = (headers.get("Authorization") or "").partition(" ")
        if not client_id and scheme.lower() == "basic":  # client_secret_basic
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
                client_id, _, client_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                pass
        grant = form.get("grant_type", "")

        def denied(description: str) -> Response:
            self._count("oauth_failures")
            return 401, {"error": "access_denied", "error_description": description}, {}

        if grant not in ("password", "client_credentials", "refresh_token"):
            self._count("oauth_failures")
            return (
                400,
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant"},
                {},
            )
        if not self._client_ok(client_id, client_secret):
            return denied("Invalid client credentials")
        if grant == "password":
            principal = form.get("username", "")
            if not self._user_ok(principal, form.get("password", "")):
                return denied("Invalid user credentials")
            refresh = secrets.token_urlsafe(48)
        elif grant == "client_credentials":
            principal = client_id
            refresh = secrets.token_urlsafe(48)
        else:
            refresh = form.get("refresh_token", "")
            with self._state_lock:
                entry = self._refresh_tokens.get(refresh)
            if entry is None or entry[1] != client_id:
                return denied("Invalid refresh token")
            principal = entry[0]
        access = secrets.token_urlsafe(64)
        with self._state_lock:
            self._access_tokens[access] = (principal, self._clock() + self.token_ttl)
            self._refresh_tokens[refresh] = (principal, client_id)
            self._counters["tokens_issued"] += 1
        return (
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": int(self.token_ttl),
            },
            {"Cache-Control": "no-store"},
        )

    # -- the API ---------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> Response:
        """Answer one request: ``(status, JSON payload or None, extra headers)``."""
        split = urlsplit(raw_path)
        path = split.path
        if path.rstrip("/") == "/oauth_token.do":
            if method != "POST":
                return 405, error_envelope("Method not Supported", None), {}
            return self._oauth(headers, body)
        if not path.startswith("/api/"):
            return (
                404,
                error_envelope("Requested URI does not represent any resource", None),
                {},
            )
        user = self._authenticate(headers)
        if user is None:
            self._count("auth_failures")
            return _unauthenticated()
        match = _TABLE_PATH_RE.match(path)
        if match is None:
            return (
                400,
                error_envelope("Requested URI does not represent any resource", None),
                {},
            )
        version, table, sys_id = match.groups()
        if table != TABLE:
            return 400, error_envelope(f"Invalid table {table}", None), {}
        params = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        fields = [f.strip() for f in params.get("sysparm_fields", "").split(",") if f.strip()]

        if sys_id is None:
            if method == "GET":
                return self._list(params, fields, version == "v2")
            if method == "POST":
                return self._write_request(headers, body, lambda data: self._create(data, user))
            return self._method_not_supported(method)
        if method == "GET":
            record = self._get_record(sys_id)
            if record is None:
                return _not_found()
            return 200, {"result": _public(record, fields)}, {}
        if method in ("PATCH", "PUT"):
            return self._write_request(
                headers, body, lambda data: self._update(sys_id, data, user, fields)
            )
        if method == "DELETE":
            if not self._delete_record(sys_id):
                return _not_found()
            self._count("deleted")
            return 204, None, {}
        return self._method_not_supported(method)

    @staticmethod
    def _method_not_supported(method: str) -> Response:
        return (
            405,
            error_envelope("Method not Supported", f"{method} method not supported for API"),
            {},
        )

    def _write_request(
        self, headers: Any, body: bytes, action: Callable[[Dict[str, Any]], Response]
    ) -> Response:
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        accept = (headers.get("Accept") or "").lower()
        if content_type != "application/json" or "application/json" not in accept:
            return (
                400,
                error_envelope(
                    "Invalid request",
                    "Content-Type and Accept must both be application/json",
                ),
                {},
            )
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return (
                400,
                error_envelope("Exception while reading request", "The payload is not valid JSON."),
                {},
            )
        if not isinstance(data, dict):
            return (
                400,
                error_envelope("Exception while reading request", "The payload is not an object."),
                {},
            )
        return action(data)

    def _list(self, params: Dict[str, str], fields: List[str], v2: bool) -> Response:
        filters, order, ignored = _parse_query(params.get("sysparm_query", ""))
        if ignored:
            self._count("ignored_query_terms", len(ignored))
            LOG.info("ignored %d query term(s) ServiceNow would ignore", len(ignored))
        records = [r for r in self._candidates(filters) if _matches(r, filters)]
        if order:
            records = _sorted(records, order)
        try:
            offset = max(0, int(params.get("sysparm_offset") or 0))
        except ValueError:
            offset = 0
        try:
            limit = max(0, int(params.get("sysparm_limit") or 10000))
        except ValueError:
            limit = 10000
        records = records[offset : offset + limit]
        if not records and not v2:
            return _not_found()
        return 200, {"result": [_public(r, fields) for r in records]}, {}

    @staticmethod
    def _data_policy(record: Dict[str, Any]) -> Optional[Response]:
        if record.get("state") != RESOLVED_STATE:
            return None
        missing = []
        if not str(record.get("close_code", "")).strip():
            missing.append("Close code is mandatory")
        if not str(record.get("close_notes", "")).strip():
            missing.append("Close notes is mandatory")
        if not missing:
            return None
        detail = "Data Policy Exception: " + "".join("\n " + m for m in missing)
        return 403, error_envelope("Operation Failed", detail), {}

    def _apply(
        self, record: Dict[str, Any], data: Dict[str, Any], user: str, now: str
    ) -> List[Dict[str, str]]:
        """Copy client fields onto ``record``; return the journal entries to append."""
        entries = []
        for key, value in data.items():
            if key.startswith("_") or key in SYSTEM_FIELDS:
                continue
            text = _to_str(value)
            if key in JOURNAL_FIELDS:
                if text.strip():
                    entries.append({"field": key, "value": text, "at": now, "by": user})
                continue
            record[key] = text
        return entries

    @staticmethod
    def _derive(record: Dict[str, Any], previous_state: Optional[str], now: str) -> None:
        """Fields the instance computes: priority, active, resolved_at, closed_at."""
        record["priority"] = priority_for(record.get("impact", "3"), record.get("urgency", "3"))
        state = record.get("state", "1")
        record["incident_state"] = state
        record["active"] = "false" if state in INACTIVE_STATES else "true"
        if state != previous_state:
            if state == RESOLVED_STATE:
                record["resolved_at"] = now
            if state in INACTIVE_STATES:
                record["closed_at"] = now

    def _create(self, data: Dict[str, Any], user: str) -> Response:
        now = self._now()
        record: Dict[str, Any] = {
            "sys_id": uuid.uuid4().hex,
            "number": "",
            "state": "1",
            "impact": "3",
            "urgency": "3",
            "priority": "5",
            "active": "true",
            **dict.fromkeys(_DEFAULT_FIELDS, ""),
            "work_notes": "",
            "comments": "",
            "resolved_at": "",
            "closed_at": "",
            "opened_at": now,
            "sys_class_name": TABLE,
            "sys_created_on": now,
            "sys_created_by": user,
            "sys_updated_on": now,
            "sys_updated_by": user,
            "sys_mod_count": "0",
        }
        journal = self._apply(record, data, user, now)
        self._derive(record, None, now)
        refused = self._data_policy(record)
        if refused is not None:
            return refused
        record["_journal"] = journal
        record = self._insert_record(record)
        self._count("created")
        return (
            201,
            {"result": _public(record)},
            {"Location": f"{self.url}/api/now/table/{TABLE}/{record['sys_id']}"},
        )

    def _update(self, sys_id: str, data: Dict[str, Any], user: str, fields: List[str]) -> Response:
        with self._db_lock:  # read-modify-write of one record is atomic
            record = self._get_record(sys_id)
            if record is None:
                return _not_found()
            before = dict(record)
            now = self._now()
            journal = self._apply(record, data, user, now)
            self._derive(record, before.get("state"), now)
            refused = self._data_policy(record)
            if refused is not None:
                return refused
            if journal or record != before:
                record["_journal"] = list(record.get("_journal", [])) + journal
                record["sys_updated_on"] = now
                record["sys_updated_by"] = user
                record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
                self._save_record(record)
                self._count("updated")
        return 200, {"result": _public(record, fields)}, {}


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def _credential(text: str) -> Tuple[str, str]:
    name, sep, secret = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME:SECRET")
    return name, secret


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a rate is between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.servicenow_standin",
        description="Serve a local stand-in for the ServiceNow Table API (incident table).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port, 0 for any free one (default %(default)s)"
    )
    parser.add_argument(
        "--db",
        default="./servicenow-standin.sqlite3",
        help="SQLite file, or :memory: (default %(default)s)",
    )
    parser.add_argument(
        "--user",
        action="append",
        type=_credential,
        metavar="USER:PASSWORD",
        help="a user for Basic auth and the OAuth password grant; repeatable (default admin:admin)",
    )
    parser.add_argument(
        "--oauth-client",
        action="append",
        type=_credential,
        metavar="CLIENT_ID:SECRET",
        help="an OAuth client for /oauth_token.do; repeatable",
    )
    parser.add_argument(
        "--token-ttl",
        type=_non_negative,
        default=DEFAULT_TOKEN_TTL,
        help="access token lifetime in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--latency", type=_non_negative, default=0.0, help="seconds added to every response"
    )
    parser.add_argument(
        "--fail-rate", type=_rate, default=0.0, help="share of requests answered with a 5xx"
    )
    parser.add_argument(
        "--fail-status", type=int, default=503, help="status of those (default %(default)s)"
    )
    parser.add_argument(
        "--rate-limit-rate", type=_rate, default=0.0, help="share of requests answered with 429"
    )
    parser.add_argument(
        "--retry-after",
        type=int,
        default=30,
        help="Retry-After seconds on a 429 (default %(default)s)",
    )
    parser.add_argument(
        "--drop-rate", type=_rate, default=0.0, help="share of connections dropped unanswered"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the random faults")
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Serve until Ctrl-C (or SIGTERM). Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 500 <= args.fail_status <= 599:
        parser.error("--fail-status must be a 5xx status")
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    users = dict(args.user) if args.user else {"admin": "admin"}
    clients = dict(args.oauth_client) if args.oauth_client else {}
    standin = ServiceNowStandIn(
        db_path=args.db,
        users=users,
        host=args.host,
        port=args.port,
        oauth_clients=clients,
        token_ttl=args.token_ttl,
        seed=args.seed,
    )
    faults = standin.faults
    faults.latency = args.latency
    faults.fail_rate = args.fail_rate
    faults.fail_status = args.fail_status
    faults.rate_limit_rate = args.rate_limit_rate
    faults.retry_after = args.retry_after
    faults.drop_rate = args.drop_rate
    try:
        standin.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Usernames and client ids only: passwords and secrets are never printed.
    print(f"ServiceNow stand-in listening on {standin.url}", flush=True)
    print(f"  users: {', '.join(sorted(users))}", flush=True)
    if clients:
        print(f"  oauth clients: {', '.join(sorted(clients))}", flush=True)
    print(f"  database: {args.db}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
