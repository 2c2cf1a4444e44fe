"""The bridge: a bounded spool in front of one connection at a time to the broker.

Delivery follows the Greengrass V1 core's spooler: every message for the
cloud goes into a bounded spool (:mod:`.spool`), the oldest is dropped when a
new one does not fit, and every drop is counted and logged. The spool is sent
in order, oldest first, so after a reconnect what waited goes before anything
newer.

A message leaves the spool only when the broker acknowledges it (PUBACK), not
when paho accepts it: paho's own queue is unbounded, in memory, and would
resend its copies next to the spool's after a reconnect. So the bridge hands
paho at most ``max_inflight`` messages at a time, makes a fresh paho client
for every connection (:mod:`.session`), and after a reconnect resends from the
oldest unacknowledged spool entry. Delivery is at least once, as QoS 1
promises, never silently at most once. An acknowledgement is applied the
moment paho reads it, on the one thread that also publishes and sees the
disconnect, so an ack the broker sent is an ack even if the connection drops
right after it. A message the broker refuses (an MQTT 5 PUBACK reason code of
0x80 or more, e.g. an ACL denial) is counted as rejected and logged at ERROR
with its topic.

Threads: the *network* thread connects (with a backoff of at most
``reconnect_delay[1]`` seconds), drives paho and feeds it from the spool; the
*inbound* thread hands messages from the broker to the functions, so a slow
function cannot stall the keepalive. :meth:`MqttBridge.publish` only appends
to the spool and pokes the network thread through a socket pair: a wake-up is
never mistaken for an acknowledgement.

(About 550 lines: the network thread, its paho callbacks and the spool's
bookkeeping share one lock and one set of invariants, kept in one place.)
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional

from ...clock import SYSTEM_CLOCK, Clock
from .address import AUTO, AWS_IOT_ALPN, tls_context
from .diagnosis import (
    Diagnosis,
    TlsFiles,
    describe_connect_error,
    describe_early_close,
    describe_refusal,
    is_protocol_refusal,
)
from .inbound import CloudHandler, Inbound
from .options import BridgeOptions
from .reporting import Reporter
from .session import Session, import_paho
from .spool import MemorySpool, Spool, SpoolError, SqliteSpool
from .stats import BridgeStats
from .suspects import Suspects

if TYPE_CHECKING:
    from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger("agent.standalone.mqtt_bridge")
_paho_log = logging.getLogger("agent.standalone.mqtt_bridge.paho")

CLOSING_RETRY_S = 0.25  # how often close() tries the broker while it waits for it
IO_TIMEOUT_S = 1.0  # the network thread wakes at least this often (keepalive)
LEAVE_TIMEOUT_S = 2.0  # how long a DISCONNECT may take before the socket is dropped
_PAHO_WARNING_OR_ERROR = (4, 8)  # MQTT_LOG_WARNING, MQTT_LOG_ERR

_COUNTERS = (
    "submitted",
    "carried_over",
    "published",
    "rejected",
    "dropped",
    "lost",
    "kept",
    "spooled",
    "resent",
    "connects",
    "reconnects",
    "disconnects",
    "connect_failures",
)


class MqttBridge:
    """One connection at a time to a broker, with a bounded spool in front of it.

    ``publish(topic, payload)`` is the core's cloud link: it never blocks on
    the network and never raises for a broker problem. Messages from the
    broker on ``subscriptions`` are handed to ``on_message(topic, payload)``.
    ``clock`` times the log rate limits and outage lengths; waiting in
    :meth:`flush` and :meth:`close` is real time, since the broker is.
    """

    def __init__(
        self,
        options: BridgeOptions,
        *,
        subscriptions: Iterable[str] = (),
        on_message: Optional[CloudHandler] = None,
        clock: Optional[Clock] = None,
    ) -> None:
        self.options = options
        self.address = options.address()
        self.clock = clock or SYSTEM_CLOCK
        self.subscriptions = tuple(dict.fromkeys(subscriptions))  # unique, in order
        self.qos = options.qos
        self.max_inflight = max(1, int(options.max_inflight))
        self._protocol = "3.1.1" if self.address.protocol == "3.1.1" else "5"
        self._tls = (
            tls_context(
                options.ca,
                options.cert,
                options.key,
                alpn=[AWS_IOT_ALPN]
                if self.address.port == 443 and self.address.host.endswith(".amazonaws.com")
                else None,
            )
            if self.address.tls
            else None
        )
        self._files = TlsFiles(options.ca, options.cert)
        import_paho()  # fail here, not in the background, if paho is missing

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # spool shrank or connection changed
        self._spool: Spool = (
            SqliteSpool(options.spool_path, options.spool_limit_bytes)
            if options.spool_path
            else MemorySpool(options.spool_limit_bytes)
        )
        self._counts: Dict[str, int] = {name: 0 for name in _COUNTERS}
        self._report = Reporter(self.address, self.clock)
        self._connected = False
        self._ever_connected = False
        self._subscribed = threading.Event()
        self._suspects = Suspects()
        self._highest_sent = 0  # spool ids up to this one were handed to paho before
        self._closing = False  # close() was called: retry fast, then stop
        self._stopping = False  # the network thread is to disconnect and end
        self._closed = False
        self.last_error: Optional[str] = None
        self._retry_now = threading.Event()  # cut a backoff short (close() wants the broker)
        self._wake_r, self._wake_w = socket.socketpair()  # publish() -> network thread
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._inbound = Inbound(on_message)
        self._network: Optional[threading.Thread] = None
        self._counts["carried_over"] = getattr(self._spool, "found_at_open", 0)
        self._counts["dropped"] = getattr(self._spool, "dropped_at_open", 0)
        self._report.spool_opened(self._spool, self._counts["dropped"])

    def start(self) -> MqttBridge:
        """Start connecting (in the background) and the network and inbound threads."""
        if self._network is not None:
            return self
        self._report.starting(self._files if self._tls else None, self._spool)
        self._inbound.start()
        self._network = threading.Thread(
            target=self._network_loop, name="mqtt-bridge-network", daemon=True
        )
        self._network.start()
        return self

    # -- what the core calls -----------------------------------------------------------------
    def publish(self, topic: str, payload: bytes) -> None:
        """Queue ``payload`` for ``topic``; sent as soon as (and in the order) the connection allows."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        with self._lock:
            self._counts["submitted"] += 1
            if self._closed:
                self._drop(1, "a message after close()")
                return
            try:
                entry_id, dropped = self._spool.append(topic, bytes(payload))
            except SpoolError as exc:
                self._counts["dropped"] += 1
                self._report.spool_error(exc)
                return
            if entry_id is None:
                self._drop(1, "a message bigger than the whole spool")
                return
            if dropped:
                self._drop(dropped, "full; the oldest go first")
            connected = self._connected
            if not connected:
                self._counts["spooled"] += 1
        if connected:
            self._wake()

    __call__ = publish

    def _drop(self, count: int, why: str) -> None:
        """Count ``count`` dropped messages (called with the lock held)."""
        self._counts["dropped"] += count
        self._report.dropped(count, why, self._counts["dropped"], self._spool.limit_bytes)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # already awake (the pair is full) or closed
            pass

    # -- state --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def pending(self) -> int:
        """Messages in the spool: waiting, or sent and not yet acknowledged."""
        with self._lock:
            return 0 if self._closed else len(self._spool)

    def stats(self) -> BridgeStats:
        """A snapshot of what happened to every message (see :mod:`.stats`)."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> BridgeStats:
        closed = self._closed
        return BridgeStats(
            broker=str(self.address),
            pending=0 if closed else len(self._spool),
            pending_bytes=0 if closed else self._spool.bytes,
            connected=self._connected,
            protocol=self._protocol,
            last_error=self.last_error,
            delivered_from_cloud=self._inbound.delivered,
            dropped_from_cloud=self._inbound.dropped,
            **self._counts,
        )

    def wait_connected(self, timeout: float, subscribed: bool = True) -> bool:
        """Wait until connected (and, by default, the subscriptions are acknowledged)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._connected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        if subscribed and self.subscriptions:
            return self._subscribed.wait(max(0.0, deadline - time.monotonic()))
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the broker has acknowledged everything spooled; return whether it has."""
        deadline = time.monotonic() + timeout
        self._wake()
        with self._lock:
            while not self._closed and len(self._spool):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))
            if self._closed:
                return self._counts["lost"] + self._counts["kept"] == 0
            return True

    def close(self, timeout: Optional[float] = None) -> BridgeStats:
        """Deliver what waits (up to ``timeout`` s, default ``options.close_timeout``), then stop.

        While it waits, a broker that is down is tried every quarter second, not
        after the backoff, so one that comes up within ``timeout`` gets every
        message. What is still unsent is counted: lost with a memory spool,
        kept for the next start with a spool file. Returns the final counts.
        """
        wait_for = self.options.close_timeout if timeout is None else max(0.0, timeout)
        with self._lock:
            if self._closing:
                return self._snapshot()
            self._closing = True
            waiting = len(self._spool) > 0
        started = time.monotonic()
        if waiting and wait_for > 0 and self._network is not None:
            self._retry_now.set()  # try the broker now, not after the backoff
            self.flush(wait_for)
        waited = time.monotonic() - started
        with self._lock:
            self._stopping = True
        self._retry_now.set()
        self._wake()
        if self._network is not None:
            self._network.join(self.options.connect_timeout + LEAVE_TIMEOUT_S)
        self._inbound.stop()
        with self._lock:
            left = len(self._spool)
            self._counts["kept" if self._spool.kind == "disk" else "lost"] += left
            self._closed = True
            final = self._snapshot()
            self._report.closed(final, waited, self._spool.kind)
            self._changed.notify_all()
            self._spool.close()
        # A connect() that outlived its timeout still holds them; that thread ends on its own.
        if self._network is None or not self._network.is_alive():
            self._wake_r.close()
            self._wake_w.close()
        return final

    def __enter__(self) -> MqttBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the network thread -------------------------------------------------------------------
    def _network_loop(self) -> None:
        failures = 0  # connection attempts failed in a row
        while True:
            with self._lock:
                if self._stopping:
                    return
                session = Session(self._protocol)
            try:
                self._run_session(session)
            except Exception:  # the network thread must outlive any bug
                log.exception(
                    "unexpected error in the MQTT bridge; reconnecting to %s", self.address
                )
                session.abandon()
                self._session_ended(session, "an unexpected error")
            with self._lock:
                if self._stopping:
                    return
                closing = self._closing
            if session.fallback:
                continue  # at once, with MQTT 3.1.1
            failures = 0 if session.accepted else failures + 1
            delay = self.options.retry_delay(failures)
            self._retry_now.wait(min(delay, CLOSING_RETRY_S) if closing else delay)
            self._retry_now.clear()

    def _run_session(self, session: Session) -> None:
        client = session.make_client(
            self.address, self._tls, self.max_inflight, self.options.connect_timeout
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_log = self._on_log
        try:
            session.connect(self.address, int(self.options.keepalive))
        except (OSError, ValueError) as exc:  # ssl errors are OSErrors
            self._connect_failed(session, describe_connect_error(exc, self.address, self._files))
            return
        connack_by = time.monotonic() + 2 * self.options.connect_timeout
        leave_by = None
        while not session.ended:
            with self._lock:
                stopping = self._stopping
            if stopping and leave_by is None:
                leave_by = time.monotonic() + LEAVE_TIMEOUT_S
                session.leave()
            if leave_by is not None and time.monotonic() > leave_by:
                session.abandon()
            elif not session.accepted and time.monotonic() > connack_by:
                self._connect_failed(
                    session,
                    Diagnosis(
                        f"{self.address} accepted the connection but sent no CONNACK in "
                        f"{2 * self.options.connect_timeout:g} s (is it an MQTT broker?)",
                        "no-connack",
                    ),
                )
                session.abandon()
            elif session.accepted and not stopping:
                self._pump(session)
            if not session.ended:
                session.step(self._wake_r, IO_TIMEOUT_S)
        self._session_ended(session, "connection closed")

    def _pump(self, session: Session) -> None:
        """Hand paho the next spooled messages, in order, while there is room in flight."""
        while True:
            with self._lock:
                if self._stopping or session.ended:
                    return
                limit = 1 if self._suspects else self.max_inflight  # see .suspects
                room = limit - len(session.inflight)
                if room <= 0:
                    return
                batch = self._spool.entries_after(session.cursor, room)
            if not batch:
                return
            for entry in batch:
                try:
                    rc, mid = session.publish(entry.topic, entry.payload, self.qos)
                except ValueError as exc:  # a topic or payload MQTT cannot carry
                    with self._lock:
                        session.cursor = entry.id
                        self._suspects.cleared(entry.id)
                        if self._spool.remove(entry.id):
                            self._counts["rejected"] += 1
                        self._changed.notify_all()
                    log.error("cannot publish to %r: %s; message dropped", entry.topic, exc)
                    continue
                with self._lock:
                    if rc != 0 or session.ended:  # the connection broke while writing
                        return
                    session.cursor = entry.id
                    if entry.id <= self._highest_sent:
                        self._counts["resent"] += 1
                    self._highest_sent = max(self._highest_sent, entry.id)
                    if mid in session.early_acks:
                        self._settle(entry.id, entry.topic, session.early_acks.pop(mid))
                    else:
                        session.inflight[mid] = (entry.id, entry.topic)

    # -- paho callbacks (all on the network thread) -----------------------------------------
    def _on_connect(
        self,
        client: Client,
        session: Session,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        if reason.is_failure:
            if (
                self.address.protocol == AUTO
                and session.protocol == "5"
                and is_protocol_refusal(reason)
            ):
                with self._lock:
                    session.reported = session.fallback = True
                    self._protocol = "3.1.1"
                    self._report.fell_back(reason)
            else:
                self._connect_failed(session, describe_refusal(reason, self.address))
            return
        with self._lock:
            session.accepted = True
            self._connected = True
            self._forget_gone_suspects()
            self._counts["connects"] += 1
            first = not self._ever_connected
            self._ever_connected = True
            if not first:
                self._counts["reconnects"] += 1
            self.last_error = None
            self._subscribed.clear()
            self._report.connected(
                first, len(self._spool), str(self.address.client_id), session.protocol
            )
            self._report.unlogged_drops(self._counts["dropped"])
            self._changed.notify_all()
        if self.subscriptions and not session.subscribe(self.subscriptions, self.qos):
            log.warning("could not subscribe to %s", ", ".join(self.subscriptions))

    def _on_subscribe(
        self,
        client: Client,
        session: Session,
        mid: int,
        reasons: List[ReasonCode],
        properties: Optional[Properties],
    ) -> None:
        failed = [s for s, r in zip(self.subscriptions, reasons) if r.is_failure]
        if failed:
            log.error("%s refused the subscription to %s", self.address, ", ".join(failed))
        else:
            log.info("subscribed to %s", ", ".join(self.subscriptions))
        if mid == session.subscribe_mid:
            self._subscribed.set()

    def _on_publish(
        self,
        client: Client,
        session: Session,
        mid: int,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        with self._lock:
            found = session.inflight.pop(mid, None)
            if found is None:  # acknowledged before publish() returned (QoS 0)
                session.early_acks[mid] = reason
                return
            self._settle(found[0], found[1], reason)

    def _settle(self, entry_id: int, topic: str, reason: Any) -> None:
        """The broker answered for a spool entry (called with the lock held)."""
        self._suspects.cleared(entry_id)
        if self._closed:
            return
        refused = reason is not None and bool(getattr(reason, "is_failure", False))
        if self._spool.remove(entry_id):
            self._counts["rejected" if refused else "published"] += 1
            if refused:
                self._report.refused(topic, reason)
        self._changed.notify_all()

    def _on_disconnect(
        self,
        client: Client,
        session: Session,
        flags: DisconnectFlags,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        self._session_ended(session, reason)

    def _session_ended(self, session: Session, reason: Any) -> None:
        with self._lock:
            if session.books_closed:
                return
            session.books_closed = True
            session.ended = True
            was_connected = session.accepted
            self._connected = False
            poison = None
            if was_connected:
                self._counts["disconnects"] += 1
                if session.inflight and not self._stopping:
                    poison = self._count_suspect(session)
            session.inflight.clear()
            stopping = self._stopping
            waiting = 0 if self._closed else len(self._spool)
            if poison is not None:
                self._report.poison(poison, self._suspects.limit)
            if was_connected and not stopping:
                self.last_error = f"connection lost: {reason}"
                self._report.connection_lost(reason, waiting)
            self._changed.notify_all()
        if was_connected and stopping:
            log.info("disconnected from %s", self.address)
        elif not was_connected and not session.reported and not stopping:
            self._connect_failed(
                session, describe_early_close(session.socket_error, self.address, self._files)
            )

    def _count_suspect(self, session: Session) -> Optional[str]:
        """A connection lost with messages in flight: the oldest may be to blame (.suspects).

        Only messages the broker has not acknowledged are in flight (acks are
        applied as paho reads them), so the blame falls on the right one.
        Returns the topic of a message dropped for it.
        """
        oldest_id, topic = min(session.inflight.values())
        if not self._suspects.connection_lost(oldest_id):
            return None
        if self._spool.remove(oldest_id):
            self._counts["rejected"] += 1
        return topic

    def _forget_gone_suspects(self) -> None:
        if not self._closed:
            oldest = self._spool.entries_after(0, 1)
            self._suspects.forget_below(oldest[0].id if oldest else self._highest_sent + 1)

    def _connect_failed(self, session: Session, failure: Diagnosis) -> None:
        with self._lock:
            session.reported = True
            self._counts["connect_failures"] += 1
            self.last_error = failure.text
            self._report.connect_failed(failure, 0 if self._closed else len(self._spool))
            self._changed.notify_all()

    def _on_message(self, client: Client, session: Session, message: MQTTMessage) -> None:
        self._inbound.offer(message.topic, bytes(message.payload))

    def _on_log(self, client: Client, session: Session, level: int, text: str) -> None:
        if text.startswith("Caught exception"):
            log.error("paho: %s", text)
            return
        if int(level) in _PAHO_WARNING_OR_ERROR and (not session.socket_error or "[SSL: " in text):
            # Explains a connection the broker closed early; a TLS alert beats
            # the EOF paho may log after it.
            session.socket_error = text
        _paho_log.debug("%s", text)
