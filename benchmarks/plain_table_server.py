"""A tiny, strict ServiceNow Table API on a plain ``http.server``: keep-alive, Nagle on.

The benchmarks' second server, to show what the agent's client meets when the
server is not the project's stand-in. It is ``http.server`` as most people
would write it:

* ``ThreadingHTTPServer``, one thread per connection, HTTP/1.1 keep-alive
  (every answer has a ``Content-Length``);
* **Nagle on** (``disable_nagle_algorithm`` left at its default, ``False``),
  and the status line with headers and the body go out as two writes, so on a
  kept-alive connection the body waits for the client's (delayed) ACK of the
  headers;
* records in a dict in memory, lost when the process ends.

Strict where ServiceNow is: HTTP Basic auth (401 without it), JSON
``Content-Type`` and ``Accept`` on writes (400), a JSON object body (400),
every stored value a string, ``work_notes``/``comments`` journal fields that
read back empty, a v1 query without matches answers 404, resolving (state 6)
needs ``close_code`` and ``close_notes`` (403), unknown query fields are
ignored. Only ``/api/now/table/incident`` is served.

Run: ``python -m benchmarks.plain_table_server [--port 0]``; it reads
``user:password`` from the first line of stdin (never the command line) and
prints ``listening on URL`` when ready.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import http.server
import itertools
import json
import secrets
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

TABLE = "/api/now/table/incident"
JOURNAL_FIELDS = ("work_notes", "comments")
# Query terms on other fields are ignored, as ServiceNow ignores unknown fields.
INCIDENT_FIELDS = frozenset(
    [
        "active",
        "assignment_group",
        "caller_id",
        "category",
        "close_code",
        "close_notes",
        "cmdb_ci",
        "comments",
        "correlation_display",
        "correlation_id",
        "description",
        "impact",
        "number",
        "opened_at",
        "priority",
        "resolved_at",
        "short_description",
        "state",
        "subcategory",
        "sys_created_on",
        "sys_id",
        "sys_updated_on",
        "urgency",
        "work_notes",
    ]
)
# ServiceNow's default priority lookup from impact and urgency.
PRIORITY = {(i, u): str(min(5, i + u - 1)) for i in (1, 2, 3) for u in (1, 2, 3)}
READY_PREFIX = "listening on "


def error_body(message: str, detail: Optional[str] = None) -> Dict[str, Any]:
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def as_string(value: Any) -> str:
    """How ServiceNow reads a JSON value back: always a string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _set_priority(record: Dict[str, str]) -> None:
    try:
        record["priority"] = PRIORITY[(int(record.get("impact", 3)), int(record.get("urgency", 3)))]
    except (KeyError, ValueError):
        record["priority"] = "5"


class Table:
    """The incident table in memory."""

    def __init__(self) -> None:
        self.records: Dict[str, Dict[str, str]] = {}
        self._numbers = itertools.count(10001)
        self._lock = threading.Lock()

    def create(self, fields: Dict[str, Any]) -> Dict[str, str]:
        record = {k: as_string(v) for k, v in fields.items() if k not in JOURNAL_FIELDS}
        now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with self._lock:
            record.update(
                sys_id=secrets.token_hex(16),
                number="INC{:07d}".format(next(self._numbers)),
                sys_created_on=now,
                sys_updated_on=now,
            )
            record.setdefault("state", "1")
            _set_priority(record)
            record["active"] = "false" if record["state"] in ("7", "8") else "true"
            record.update({name: "" for name in JOURNAL_FIELDS})
            self.records[record["sys_id"]] = record
        return dict(record)

    def update(self, sys_id: str, fields: Dict[str, Any]) -> Optional[Dict[str, str]]:
        with self._lock:
            record = self.records.get(sys_id)
            if record is None:
                return None
            for key, value in fields.items():
                if key not in JOURNAL_FIELDS and key not in ("sys_id", "number"):
                    record[key] = as_string(value)
            _set_priority(record)
            record["active"] = "false" if record.get("state") in ("7", "8") else "true"
            record["sys_updated_on"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            return dict(record)

    def query(self, encoded: str, limit: Optional[int]) -> List[Dict[str, str]]:
        filters: List[Tuple[str, str]] = []
        order: List[Tuple[str, bool]] = []
        for term in encoded.split("^"):
            if term.startswith("ORDERBYDESC"):
                order.append((term[len("ORDERBYDESC") :], True))
            elif term.startswith("ORDERBY"):
                order.append((term[len("ORDERBY") :], False))
            elif "=" in term:
                field, _, value = term.partition("=")
                if field in INCIDENT_FIELDS or field.startswith("u_"):
                    filters.append((field, value))
            # anything else is ignored, as ServiceNow ignores terms it cannot parse
        with self._lock:
            found = [
                dict(r) for r in self.records.values() if all(r.get(f, "") == v for f, v in filters)
            ]
        for field, descending in reversed(order):
            found.sort(key=lambda r, f=field: r.get(f, ""), reverse=descending)
        return found[:limit] if limit else found


class Handler(http.server.BaseHTTPRequestHandler):
    """The Table API. ``disable_nagle_algorithm`` stays ``False``, as in ``http.server``."""

    protocol_version = "HTTP/1.1"
    server_version = "PlainTableServer/1.0"
    timeout = 120

    server: Server
    _body = b""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the benchmark reads figures, not access logs."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def _dispatch(self) -> None:
        body = self._read_body()
        if body is None:
            return
        self._body = body
        if not self._authorised():
            self._send(401, error_body("User Not Authenticated", "Required to provide Auth"))
            return
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == TABLE:
            if self.command == "GET":
                self._list(params)
            elif self.command == "POST":
                self._write(lambda fields: (201, self.server.table.create(fields)))
            else:
                self._send(405, error_body("Method not Supported"))
        elif url.path.startswith(TABLE + "/"):
            sys_id = url.path[len(TABLE) + 1 :]
            if self.command == "GET":
                record = self.server.table.records.get(sys_id)
                self._record_or_404(dict(record) if record else None)
            elif self.command in ("PATCH", "PUT"):
                self._write(lambda fields: self._update(sys_id, fields))
            else:
                self._send(405, error_body("Method not Supported"))
        else:
            self._send(400, error_body("Invalid table", url.path))

    def _read_body(self) -> Optional[bytes]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            self._send(400, error_body("Invalid Content-Length"))
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _authorised(self) -> bool:
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.server.users.get(user)
        return expected is not None and secrets.compare_digest(expected, password)

    def _list(self, params: Dict[str, str]) -> None:
        try:
            limit = int(params["sysparm_limit"]) if "sysparm_limit" in params else None
        except ValueError:
            limit = None
        found = self.server.table.query(params.get("sysparm_query", ""), limit)
        if not found:  # the v1 API: a query without matches is a 404
            self._send(404, error_body("No Record found", "Records matching query not found"))
            return
        fields = [f for f in params.get("sysparm_fields", "").split(",") if f]
        if fields:
            found = [{f: r.get(f, "") for f in fields} for r in found]
        self._send(200, {"result": found})

    def _write(self, action: Any) -> None:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        accept = (self.headers.get("Accept") or "").lower()
        if content_type != "application/json" or "application/json" not in accept:
            self._send(400, error_body("Invalid request", "Content-Type and Accept must be JSON"))
            return
        try:
            fields = json.loads(self._body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._send(400, error_body("Exception while reading request", "not valid JSON"))
            return
        if not isinstance(fields, dict):
            self._send(400, error_body("Exception while reading request", "not an object"))
            return
        status, record = action(fields)
        if status == 201:
            self._send(201, {"result": record}, location=f"{TABLE}/{record['sys_id']}")
        elif record is None:
            self._record_or_404(None)
        else:
            self._send(status, record if status >= 400 else {"result": record})

    def _update(self, sys_id: str, fields: Dict[str, Any]) -> Tuple[int, Any]:
        if str(fields.get("state", "")) == "6" and not (
            fields.get("close_code") and fields.get("close_notes")
        ):
            return 403, error_body("Data Policy Exception", "Close code, Close notes are mandatory")
        return 200, self.server.table.update(sys_id, fields)

    def _record_or_404(self, record: Optional[Dict[str, str]]) -> None:
        if record is None:
            self._send(404, error_body("No Record found", "Record doesn't exist"))
        else:
            self._send(200, {"result": record})

    def _send(self, status: int, payload: Dict[str, Any], location: Optional[str] = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", f"http://{self.headers.get('Host', '')}{location}")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Service-now"')
        self.end_headers()  # first write: status line and headers
        self.wfile.write(body)  # second write: the body, held by Nagle until the ACK


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], users: Dict[str, str]) -> None:
        self.users = users
        self.table = Table()
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.plain_table_server",
        description="A plain http.server Table API (keep-alive, Nagle on); "
        "reads user:password from stdin.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    user, sep, password = sys.stdin.readline().rstrip("\n").partition(":")
    if not (user and sep and password):
        print("expected user:password on the first line of stdin", file=sys.stderr)
        return 2
    server = Server((args.host, args.port), {user: password})
    print(READY_PREFIX + server.url, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
