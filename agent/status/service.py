"""The status function: takes messages into the model, answers HTTP, streams the live page.

It owns no state anyone else depends on and writes nothing: messages go into
:class:`~agent.status.model.StatusModel` (under one lock, briefly), the state
directory is read at most once a second (:mod:`agent.status.store`), and every
answer is built from a fresh document (:mod:`agent.status.document`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Iterator, Optional

from ..clock import SYSTEM_CLOCK, Clock
from ..errors import MessageError
from ..greengrass.base import subject_of
from ..schema import decode
from . import document, metrics
from .model import DEFAULT_HISTORY, StatusModel, columns_json, columns_json_parts
from .server import Request, Response, StatusServer, serve
from .settings import StatusSettings
from .store import OUTBOX_FILE, OutboxReader, locks, sensor_states

log = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE.txt": "text/plain; charset=utf-8",
}
VIEWS_MAX_AGE = 1.0  # seconds between reads of the state directory
KEEPALIVE = 15.0  # seconds between comments on an idle event stream
STATE_EVERY = 1.0  # at most one state event per second per page
DEFAULT_WINDOW = 3600.0
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class StatusService:
    """Everything the status function does; ``bind()`` then ``start()`` to serve."""

    def __init__(
        self,
        settings: StatusSettings,
        clock: Optional[Clock] = None,
        history: int = DEFAULT_HISTORY,
    ) -> None:
        self.settings = settings
        self.clock = clock or SYSTEM_CLOCK
        self.model = StatusModel(history)
        self._changed = threading.Condition(threading.Lock())
        self.outbox = OutboxReader(os.path.join(settings.state_dir, OUTBOX_FILE))
        self._views: Optional[Dict[str, Any]] = None
        self._views_at = float("-inf")
        self._views_clock = float("-inf")
        self._views_lock = threading.Lock()
        self._static: Dict[str, bytes] = {}
        self.server: Optional[StatusServer] = None
        self.counts = {"received": 0, "undecodable": 0}
        self.run: Optional[Dict[str, Any]] = None  # how the run ended, once it has

    def run_ended(self, exit_code: int, outcome: str) -> None:
        """The run this page serves has ended (``simulate --serve`` serves on): say so."""
        with self._changed:
            self.run = {"ended_at": self.clock.time(), "exit_code": exit_code, "outcome": outcome}
            self._changed.notify_all()

    # -- lifecycle ------------------------------------------------------------------
    def bind(self) -> Optional[int]:
        """Listen on ``statusBind:statusPort`` (not yet serving); the port, or None if unset."""
        if self.settings.port is None:
            log.warning("statusPort is not set: the status function serves no page")
            return None
        self.server = serve(self.settings.bind, self.settings.port, self.answer, self.stream)
        if not self.settings.loopback_only:
            log.warning(
                "the status page is reachable from the network on %s: it is read-only and has "
                "no authentication; put it behind a firewall or bind to 127.0.0.1",
                self.url,
            )
        return self.server.port

    @property
    def url(self) -> Optional[str]:
        if self.server is None:
            return None
        host = self.settings.bind
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        if ":" in host:
            host = "[{}]".format(host)
        return "http://{}:{}/".format(host, self.server.port)

    def start(self) -> StatusService:
        if self.server is not None:
            self.server.start()
            log.info("status page at %s", self.url)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.outbox.close()

    # -- messages ---------------------------------------------------------------------
    def handle(self, message: Any, topic: str = "") -> str:
        """Take one message (dict, bytes or str); return what it was. Never raises."""
        self.counts["received"] += 1
        try:
            decoded = decode(message)
        except MessageError as exc:
            self.counts["undecodable"] += 1
            log.debug("status: dropped a message on %s: %s", topic or "?", exc)
            return "dropped"
        with self._changed:
            try:
                kind = self.model.handle(decoded)
            except Exception:  # a model bug must not take the function down
                log.exception("status: could not take a message on %s", topic or "?")
                return "dropped"
            if kind != "dropped":
                self._changed.notify_all()
        return kind

    def function_handler(self, event: Any, context: Any) -> None:
        """The Greengrass V1 handler (and the local core's)."""
        self.handle(event, subject_of(context))

    # -- the document -----------------------------------------------------------------
    def views(self) -> Dict[str, Any]:
        """The state directory as last read (at most :data:`VIEWS_MAX_AGE` old)."""
        with self._views_lock:
            # Fresh after a second of wall time, or of the clock (virtual time moves faster).
            now = self.clock.time()
            if (
                self._views is None
                or time.monotonic() - self._views_at >= VIEWS_MAX_AGE
                or abs(now - self._views_clock) >= VIEWS_MAX_AGE
            ):
                state_dir = self.settings.state_dir
                self._views = {
                    "outbox": self.outbox.view(),
                    "sensor_state": sensor_states(state_dir),
                    "locks": locks(state_dir),
                }
                self._views_at, self._views_clock = time.monotonic(), now
            return self._views

    def document(self, window: Optional[float] = DEFAULT_WINDOW) -> Dict[str, Any]:
        views = self.views()
        with self._changed:
            return document.build(
                self.model, views, self.settings, self.clock.time(), window, run=self.run
            )

    def state_json(self, window: Optional[float] = DEFAULT_WINDOW) -> Iterator[bytes]:
        """``/api/state`` in parts, sent as they are made (chunked): the readings column
        by column, a block of numbers at a time, never the whole body in memory."""
        views = self.views()
        with self._changed:
            doc = document.build(
                self.model,
                views,
                self.settings,
                self.clock.time(),
                window,
                with_readings=False,
                run=self.run,
            )
            arrays = self.model.readings.arrays(since=document.window_start(self.model, window))
        meta = doc.pop("readings")
        yield _json(doc)[:-1] + b',"readings":'
        yield from columns_json_parts(arrays, meta)
        yield b"}"

    # -- HTTP ---------------------------------------------------------------------------
    def answer(self, request: Request) -> Optional[Response]:
        path = request.path
        if path in ("/", "/index.html"):
            return Response(200, "text/html; charset=utf-8", self._asset("index.html"), "no-cache")
        if path.startswith("/static/") and path[len("/static/") :] in STATIC_FILES:
            name = path[len("/static/") :]
            return Response(200, STATIC_FILES[name], self._asset(name), "max-age=300")
        if path == "/api/state":
            window = _window(request.query.get("readings", [""])[0])
            return Response(200, JSON, self.state_json(window))
        if path == "/metrics":
            return Response(200, metrics.CONTENT_TYPE, metrics.render(self.document(0.0)).encode())
        if path == "/healthz":
            health = self.document(0.0)["health"]
            if health["ok"]:
                return Response(200, TEXT, b"ok\n")
            text = "unhealthy: " + "\n".join(health["reasons"]) + "\n"
            return Response(503, TEXT, text.encode("utf-8"))
        if path == "/events":
            return None
        return Response(404, TEXT, b"not found\n")

    def stream(
        self, request: Request, write: Callable[[bytes], None], stopping: threading.Event
    ) -> None:
        """Server-Sent Events: ``readings`` (new readings, as columns) and ``state`` (the
        document without readings, when it changed), plus a comment every 15 s."""
        since = _since(request)
        write(b"retry: 2000\n\n")
        with self._changed:
            cursor = self.model.readings.total
            backlog = self.model.readings.arrays(since=since) if since is not None else None
        if backlog and len(backlog[0]):
            write(_event_raw("readings", columns_json(backlog), backlog[0][-1]))
        last_state = b""
        last_state_at = float("-inf")
        last_write = time.monotonic()
        while not stopping.is_set():
            with self._changed:
                if self.model.readings.total == cursor:
                    self._changed.wait(timeout=0.5)
                fresh = self.model.readings.arrays(after_total=cursor)
                cursor = self.model.readings.total
            if len(fresh[0]):
                write(_event_raw("readings", columns_json(fresh), fresh[0][-1]))
                last_write = time.monotonic()
            if time.monotonic() - last_state_at >= STATE_EVERY:
                state = self.document(window=0.0)
                state.pop("readings")
                digest = _json(_steady(state))
                if digest != last_state or time.monotonic() - last_state_at >= KEEPALIVE:
                    write(_event("state", state))
                    last_state, last_write = digest, time.monotonic()
                last_state_at = time.monotonic()
            if time.monotonic() - last_write >= KEEPALIVE:
                write(b": keep-alive\n\n")
                last_write = time.monotonic()
            stopping.wait(0.2)  # coalesce a burst of readings into one event

    def _asset(self, name: str) -> bytes:
        data = self._static.get(name)
        if data is None:
            with open(os.path.join(STATIC_DIR, name), "rb") as handle:
                data = self._static[name] = handle.read()
        return data


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str).encode("utf-8")


def _event(name: str, data: Any, event_id: Optional[float] = None) -> bytes:
    return _event_raw(name, _json(data), event_id)


def _event_raw(name: str, data: bytes, event_id: Optional[float] = None) -> bytes:
    head = "event: {}\n".format(name)
    if event_id is not None:
        head += "id: {!r}\n".format(float(event_id))
    return head.encode("ascii") + b"data: " + data + b"\n\n"


def _steady(state: Dict[str, Any]) -> Dict[str, Any]:
    """The state without what changes by itself every second (times and ages)."""
    steady = dict(state, generated_at=None)
    steady["sensor"] = dict(state["sensor"], last_reading_age_seconds=None)
    outbox = dict(state["delivery"]["outbox"])
    outbox.update(oldest_pending_age_seconds=None, oldest_dead_age_seconds=None)
    steady["delivery"] = dict(state["delivery"], outbox=outbox)
    return steady


def _window(text: str) -> Optional[float]:
    if text == "all":
        return None
    try:
        seconds = float(text)
    except ValueError:
        return DEFAULT_WINDOW
    return DEFAULT_WINDOW if seconds != seconds else min(max(seconds, 0.0), 1e9)


def _since(request: Request) -> Optional[float]:
    text = request.headers.get("last-event-id") or request.query.get("since", [""])[0]
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value else None
