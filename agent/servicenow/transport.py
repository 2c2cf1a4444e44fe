"""HTTP calls with an overall deadline and a cap on the size of the answer.

``requests`` applies its timeout to the connect and to each socket read, not to
the whole answer: a server (or a proxy) sending one byte every few seconds never
times out, and an answer of any size is read whole and parsed. :func:`fetch`
bounds both:

* **a deadline** on the monotonic clock for the whole call: connect, TLS
  handshake, request, headers and body. One watchdog thread shuts down the
  socket of any call whose deadline has passed, which ends a blocked read at
  once in whichever phase it is (the connection classes below hand it each
  socket: a duplicate of the descriptor, so the connection's own socket object
  is never touched from another thread);
* **a size cap**: the answer is read as a stream, at most ``max_bytes``; a
  ``Content-Length`` above it is refused before reading, and the connection is
  dropped rather than drained.

Redirects are never followed: a login page is not the Table API, and
credentials must not follow a redirect. Name resolution itself (``getaddrinfo``)
cannot be interrupted; the resolver's own timeouts bound it.
"""

from __future__ import annotations

import heapq
import http.client
import socket
import threading
import time
from typing import Any, List, Optional, Tuple

from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectTimeout, ReadTimeout, RequestException
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError

from .answers import Answer, network_cause

CHUNK_BYTES = 65536


class NoAnswer(Exception):
    """No complete answer: ``cause`` in words; ``never_sent`` when the request never left;
    ``status`` when headers had arrived (an answer over the size cap); ``timed_out`` when
    the deadline passed."""

    def __init__(
        self,
        cause: str,
        never_sent: bool = False,
        status: Optional[int] = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.never_sent = never_sent
        self.status = status
        self.timed_out = timed_out


class Deadline:
    """One call's deadline and the sockets to shut down when it passes."""

    __slots__ = ("seconds", "at", "expired", "sent", "done", "_sockets", "_lock")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.sent = False  # the request was written; only its answer was awaited
        self.done = False
        self._sockets: List[socket.socket] = []
        self._lock = threading.Lock()

    def attach(self, sock: Any) -> None:
        """Watch ``sock`` (the call's connection) until :meth:`release`."""
        try:
            watched = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except (OSError, ValueError, AttributeError):
            return  # closed already, or not a socket: nothing left to interrupt
        with self._lock:
            if self.done:
                watched.close()
                return
            self._sockets.append(watched)
            if self.expired:
                _shut(watched)

    def fire(self) -> None:
        """The deadline passed: end every read of this call (the watchdog's thread)."""
        with self._lock:
            if self.done:
                return
            self.expired = True
            for watched in self._sockets:
                _shut(watched)

    def release(self) -> None:
        """The call is over: stop watching (closes only the duplicates)."""
        with self._lock:
            self.done = True
            sockets, self._sockets = self._sockets, []
            for watched in sockets:
                watched.close()


def _shut(watched: socket.socket) -> None:
    try:
        watched.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer went away meanwhile


class _Watchdog:
    """One daemon thread that fires each :class:`Deadline` when it passes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: List[Tuple[float, int, Deadline]] = []
        self._count = 0
        self._thread: Optional[threading.Thread] = None

    def add(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, self._count, deadline))
            self._count += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="servicenow-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._cond.notify()

    def remove(self, deadline: Deadline) -> None:
        """The call is over: forget it (calls are few at a time, so a scan is cheap)."""
        with self._cond:
            for index, entry in enumerate(self._heap):
                if entry[2] is deadline:
                    last = self._heap.pop()
                    if index < len(self._heap):
                        self._heap[index] = last
                        heapq.heapify(self._heap)
                    return

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    heapq.heappop(self._heap)[2].fire()
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


_WATCHDOG = _Watchdog()
_current = threading.local()  # the Deadline of the call this thread is making


def _watch(sock: Any, sent: bool = False) -> None:
    deadline: Optional[Deadline] = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.sent = deadline.sent or sent
        deadline.attach(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # from here on, a TLS handshake or a connect through a proxy is watched
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _watch(self.sock, sent=True)  # a kept-alive connection was not watched yet
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _watch(self.sock, sent=True)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter whose connections tell the watchdog their sockets."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pools()

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS has connection classes of its own
            manager.pool_classes_by_scheme = _pools()
        return manager


def _pools() -> Any:
    return {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def fetch(
    session: Any, method: str, url: str, seconds: float, max_bytes: int, **kwargs: Any
) -> Answer:
    """``method url`` through ``session``, answered in full within ``seconds``, at most
    ``max_bytes`` of body; raise :class:`NoAnswer` naming the cause otherwise."""
    deadline = Deadline(seconds)
    _WATCHDOG.add(deadline)
    outer = getattr(_current, "deadline", None)
    _current.deadline = deadline
    try:
        try:
            response = session.request(
                method,
                url,
                timeout=(seconds, seconds),
                stream=True,
                allow_redirects=False,
                **kwargs,
            )
        except RequestException as exc:
            raise _no_answer(exc, deadline) from None
        try:
            body = _read(response, deadline, max_bytes)
        finally:
            response.close()
        return Answer(response.status_code, response.headers, body, url)
    finally:
        _current.deadline = outer
        _WATCHDOG.remove(deadline)
        deadline.release()


def _read(response: Any, deadline: Deadline, max_bytes: int) -> bytes:
    status = response.status_code
    length = str(response.headers.get("Content-Length") or "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise NoAnswer(too_large(max_bytes), status=status)
    parts: List[bytes] = []
    total = 0
    while True:
        try:
            chunk = response.raw.read(min(CHUNK_BYTES, max_bytes + 1 - total), decode_content=True)
        except (OSError, HTTPError, http.client.HTTPException) as exc:
            if deadline.expired:
                raise NoAnswer(too_slow(deadline.seconds), status=status, timed_out=True) from None
            cause, _ = network_cause(exc)
            raise NoAnswer("the answer was cut short: " + cause, status=status) from None
        if deadline.expired:  # a read the watchdog ended can look like the end of the body
            raise NoAnswer(too_slow(deadline.seconds), status=status, timed_out=True)
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > max_bytes:
            raise NoAnswer(too_large(max_bytes), status=status)
        parts.append(chunk)


def _no_answer(exc: RequestException, deadline: Deadline) -> NoAnswer:
    if deadline.expired or isinstance(exc, ReadTimeout):
        sent = deadline.sent
        return NoAnswer(too_slow(deadline.seconds), never_sent=not sent, timed_out=sent)
    if isinstance(exc, ConnectTimeout):
        return NoAnswer(
            "no answer to the connection attempt within {:g} s".format(deadline.seconds),
            never_sent=True,
        )
    cause, never_sent = network_cause(exc)
    return NoAnswer(cause, never_sent=never_sent)


def too_slow(seconds: float) -> str:
    return "no complete answer within {:g} s (snowTimeout); gave up".format(seconds)


def too_large(max_bytes: int) -> str:
    return "an answer larger than {} bytes (snowMaxAnswerBytes); not read further".format(max_bytes)
