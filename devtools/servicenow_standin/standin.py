"""The stand-in itself: a ServiceNow instance in a thread, and what a request means to it.

It ties the parts together: the incident table (:mod:`.table` over
:mod:`.store`), authentication (:mod:`.auth`), fault injection (:mod:`.faults`)
and the HTTP server (:mod:`.handler`); it keeps the counters and the request
log tests read, and routes each request to the right part.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qs, urlsplit

from .admin import AdminApi
from .auth import DEFAULT_TOKEN_TTL, Authenticator
from .cmdb import CmdbTable
from .events import EVENT_PATH, EventEndpoint
from .faults import Faults
from .handler import StandInServer
from .rate_rule import RateRule
from .records import TABLE, matches, parse_query, to_str
from .responses import Response, error_envelope, method_not_supported, unauthenticated
from .roles import ADMIN, event_refusal, table_refusal
from .store import IncidentStore
from .table import IncidentTable

LOG = logging.getLogger("edge_agent.standin")

_TABLE_PATH_RE = re.compile(r"^/api/now(?:/(v1|v2))?/table/([^/]+)(?:/([^/]+))?/?$")

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


class ServiceNowStandIn:
    """A ServiceNow instance in a thread.

    ``users`` maps user name to password for HTTP Basic and the OAuth password
    grant; ``oauth_clients`` maps client id to client secret for
    ``/oauth_token.do``. ``clock`` (epoch seconds) drives timestamps and token
    expiry, so tests can age tokens without sleeping. ``admin_token`` turns on
    the control API under ``/__standin/`` (see :mod:`.admin`).
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
        admin_token: Optional[str] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.faults = Faults(seed)
        self.clock = clock
        self._state_lock = threading.Lock()  # counters, log, connections
        self._counters: Dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._request_log: List[Tuple[float, str, str, Optional[int]]] = []
        self._connections: set = set()
        self._server: Optional[StandInServer] = None
        self._thread: Optional[threading.Thread] = None
        self.auth = Authenticator(
            {"admin": "admin"} if users is None else users,
            oauth_clients or {},
            token_ttl,
            clock,
            self.count,
        )
        self.store = IncidentStore(db_path)
        self.table = IncidentTable(self.store, clock, self.count, lambda: self.url)
        self.admin = AdminApi(self, admin_token) if admin_token else None
        self.cmdb = CmdbTable()
        self.events = EventEndpoint()
        self.rate_rule = RateRule(clock)
        self._roles: Dict[str, frozenset] = {}

    @property
    def db_path(self) -> str:
        return self.store.db_path

    @property
    def token_ttl(self) -> float:
        return self.auth.token_ttl

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> ServiceNowStandIn:
        """Bind and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the stand-in is already running")
        self.store.open()
        self._server = StandInServer((self.host, self.port), self)
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
        self.store.close()
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
        self.auth.set_users(users)

    def expire_tokens(self) -> None:
        """Expire every issued access token now (refresh tokens stay valid)."""
        self.auth.expire_tokens()

    def set_roles(self, user: str, roles: Any) -> None:
        """Give ``user`` (a user name, or an OAuth client id for its client-credentials
        tokens) exactly these roles; a user never given roles is an administrator."""
        with self._state_lock:
            self._roles[user] = frozenset(roles)

    def roles_of(self, user: str) -> frozenset:
        with self._state_lock:
            return self._roles.get(user, frozenset({ADMIN}))

    def alerts(self) -> List[Dict[str, Any]]:
        """The Event Management alerts derived from the events received (see :mod:`.events`)."""
        return self.events.alerts()

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        self.faults.fail_next(n, status)

    def rate_limit_next(self, n: int = 1, retry_after: Optional[int] = 30) -> None:
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
            return [entry[1:] for entry in self._request_log]

    @property
    def timed_request_log(self) -> List[Tuple[float, str, str, Optional[int]]]:
        """The request log with the stand-in clock's time each request was answered."""
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
        records = self.store.all()
        if isinstance(query, str):
            filters, _, _ = parse_query(query)
            records = [r for r in records if matches(r, filters)]
        elif query:
            wanted = {k: to_str(v) for k, v in query.items()}
            records = [r for r in records if all(r.get(k) == v for k, v in wanted.items())]
        return records

    # -- bookkeeping (called by the parts and the HTTP handler) ---------------------------
    def count(self, name: str, n: int = 1) -> None:
        with self._state_lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def record_request(
        self, method: Optional[str], path: str, status: Optional[int], started: float
    ) -> None:
        method = method or "-"
        with self._state_lock:
            self._counters["requests"] += 1
            self._request_log.append((self.clock(), method, path, status))
        elapsed_ms = (time.monotonic() - started) * 1000 if started else 0.0
        LOG.info(
            "%s %s -> %s (%.0f ms)",
            method,
            path,
            status if status is not None else "dropped",
            elapsed_ms,
        )

    def connection_opened(self, conn: socket.socket) -> None:
        with self._state_lock:
            self._counters["connections"] += 1
            self._connections.add(conn)

    def connection_closed(self, conn: socket.socket) -> None:
        with self._state_lock:
            self._connections.discard(conn)

    @staticmethod
    def is_table_path(path: str) -> bool:
        return bool(_TABLE_PATH_RE.match(path))

    @staticmethod
    def is_table_query(path: str) -> bool:
        """A path of the table's records as a list (not one record by sys_id)."""
        match = _TABLE_PATH_RE.match(path)
        return bool(match) and match.group(3) is None

    # -- the API ---------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> Response:
        """Answer one request: ``(status, JSON payload or None, extra headers)``."""
        split = urlsplit(raw_path)
        path = split.path
        if path.rstrip("/") == "/oauth_token.do":
            if method != "POST":
                return 405, error_envelope("Method not Supported", None), {}
            return self.auth.token_request(headers, body)
        if not path.startswith("/api/"):
            return (
                404,
                error_envelope("Requested URI does not represent any resource", None),
                {},
            )
        user = self.auth.authenticate(headers)
        if user is None:
            self.count("auth_failures")
            return unauthenticated()
        refused, limits = self.rate_rule.take(user)
        if refused is not None:
            self.count("rate_limited")
            return refused
        status, payload, extra = self._answer(method, path, split.query, user, headers, body)
        return status, payload, dict(limits, **extra)

    def _answer(
        self, method: str, path: str, query: str, user: str, headers: Any, body: bytes
    ) -> Response:
        roles = self.roles_of(user)
        if path.rstrip("/") == EVENT_PATH:
            if method != "POST":
                return method_not_supported(method)
            refused = event_refusal(roles)
            if refused is not None:
                return refused
            data = self.table.parse_write(headers, b"{}")  # the same header rules as the Table API
            if not isinstance(data, dict):
                return data
            return self.events.post(body)
        match = _TABLE_PATH_RE.match(path)
        if match is None:
            return (
                400,
                error_envelope("Requested URI does not represent any resource", None),
                {},
            )
        version, table, sys_id = match.groups()
        if table not in (TABLE, "cmdb_ci"):
            return 400, error_envelope(f"Invalid table {table}", None), {}
        refused = table_refusal(roles, table, method)
        if refused is not None:
            return refused
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        fields = [f.strip() for f in params.get("sysparm_fields", "").split(",") if f.strip()]
        if table == "cmdb_ci":
            if method != "GET":
                return method_not_supported(method)
            if sys_id is None:
                return self.cmdb.list(params, fields, version == "v2")
            return self.cmdb.read(sys_id, fields)

        if sys_id is None:
            if method == "GET":
                return self.table.list(params, fields, version == "v2")
            if method == "POST":
                data = self.table.parse_write(headers, body)
                if not isinstance(data, dict):
                    return data
                return self.cmdb.refuse_reference(data) or self.table.create(data, user)
            return method_not_supported(method)
        if method == "GET":
            return self.table.read(sys_id, fields)
        if method in ("PATCH", "PUT"):
            data = self.table.parse_write(headers, body)
            if not isinstance(data, dict):
                return data
            return self.cmdb.refuse_reference(data) or self.table.update(sys_id, data, user, fields)
        if method == "DELETE":
            return self.table.delete(sys_id)
        return method_not_supported(method)
