"""The bridge itself: one connection to a broker, fed from the spool.

Delivery follows the Greengrass V1 core's spooler: every message for the
cloud goes into a bounded spool (see :mod:`.spool`), the oldest message is
dropped when a new one does not fit, and every drop is counted and logged
(at most once a minute, with the count). The spool is sent in order, oldest
first, so after a reconnect what waited is delivered before anything newer.

A message leaves the spool only when the broker acknowledges it (PUBACK, seen
as paho's ``on_publish``), not when paho accepts it: paho keeps unacknowledged
messages in an unbounded memory queue of its own, which would defeat the
bound, lose them on a restart and, after a reconnect, resend them next to the
spool's copy. So the bridge hands paho at most ``max_inflight`` messages at a
time, and on every (re)connect tells paho to forget what it still held and
resends from the oldest unacknowledged spool entry. A message whose PUBACK was
lost with the connection is therefore sent again: delivery is at least once,
as QoS 1 promises, never silently at most once. A broker that refuses a
message (an MQTT 5 PUBACK failure reason, e.g. not authorised) gets it once;
it is counted in ``stats["rejected"]``.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ...clock import SYSTEM_CLOCK, Clock
from ...errors import RuntimeUnavailable
from .address import AWS_IOT_ALPN, tls_context
from .options import BridgeOptions
from .spool import MemorySpool, SqliteSpool

log = logging.getLogger("agent.greengrass.mqtt_bridge")
_paho_log = logging.getLogger("agent.greengrass.mqtt_bridge.paho")

# Connections lost in a row while the same message was the oldest unacknowledged
# one before it is dropped as one the broker will never take.
POISON_DISCONNECTS = 5
DEFAULT_INBOUND_QUEUE = 1000
DROP_LOG_INTERVAL_S = 60.0
CONNECT_FAIL_LOG_INTERVAL_S = 600.0

CloudHandler = Callable[[str, bytes], Any]

_STAT_NAMES = (
    "published",  # acknowledged by the broker
    "spooled",  # handed over while not connected, so they waited in the spool
    "dropped",  # pushed out of the full spool (or alone bigger than it)
    "rejected",  # refused by the broker (MQTT 5 PUBACK failure) or not publishable
    "resent",  # sent again after a reconnect because no PUBACK had arrived
    "delivered_from_cloud",  # broker messages handed to the core
    "dropped_from_cloud",  # broker messages lost because the inbound queue was full
    "connects",
    "reconnects",
    "disconnects",
    "connect_failures",
)


class MqttBridge:
    """One connection to a broker, with a bounded spool in front of it.

    ``publish(topic, payload)`` is the core's cloud link: it never blocks on
    the network and never raises for a broker problem. Messages from the
    broker on ``subscriptions`` are handed to ``on_message(topic, payload)``
    on a worker thread of their own, so a slow function cannot stall the
    connection's keepalive.

    ``clock`` times the log rate limits and outage lengths; waiting in
    :meth:`flush` and :meth:`close` is always real time, since the broker is.
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
        address = options.address()
        self.address = address
        qos = options.qos
        ca, cert, key = options.ca, options.cert, options.key
        reconnect_delay = options.reconnect_delay
        keepalive = options.keepalive
        max_inflight = options.max_inflight
        spool_path = options.spool_path
        spool_limit_bytes = options.spool_limit_bytes
        self.qos = qos
        self.keepalive = int(keepalive)
        self.clock = clock or SYSTEM_CLOCK
        self.subscriptions = tuple(dict.fromkeys(subscriptions))  # unique, in order
        self.on_message = on_message
        self.max_inflight = max(1, int(max_inflight))
        self._reconnect_delay = (float(reconnect_delay[0]), float(reconnect_delay[1]))
        self._tls = (
            tls_context(
                ca,
                cert,
                key,
                alpn=[AWS_IOT_ALPN]
                if address.port == 443 and address.host.endswith(".amazonaws.com")
                else None,
            )
            if address.tls
            else None
        )
        self._tls_files = (ca, cert)
        self._client = self._make_client()  # before the spool: fails if paho is missing

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # spool shrank or connection changed
        self._spool: MemorySpool = (
            SqliteSpool(spool_path, spool_limit_bytes)
            if spool_path
            else MemorySpool(spool_limit_bytes)
        )
        self._stats: Dict[str, int] = {name: 0 for name in _STAT_NAMES}
        self._connected = False
        self._ever_connected = False
        self._failing = False  # the last connection attempt failed; no connection is coming soon
        self._generation = 0  # bumped on every connect and disconnect
        self._cursor = 0  # last spool id handed to paho on this connection
        self._inflight: Dict[int, Tuple[int, str]] = {}  # paho mid -> (spool id, topic)
        # spool id -> connections lost while it was the oldest unacknowledged message
        self._suspects: Dict[int, int] = {}
        self._highest_sent = 0  # spool ids up to this one were handed to paho before
        self._events: queue.Queue = queue.Queue()  # acks and wake-ups for the sender thread
        self._inbound: queue.Queue = queue.Queue(maxsize=DEFAULT_INBOUND_QUEUE)
        self._subscribe_mid: Optional[int] = None
        self._subscribed = threading.Event()
        self._stopping = False
        self._closed = False
        self._down_since: Optional[float] = None
        self._drops_unlogged = 0
        self._last_drop_log = float("-inf")
        self._last_fail_text = ""
        self._last_fail_log = float("-inf")
        self.last_error: Optional[str] = None
        self._socket_error = ""
        self._refused = False
        self._threads: List[threading.Thread] = []
        dropped_at_open = getattr(self._spool, "dropped_at_open", 0)
        if dropped_at_open:
            self._stats["dropped"] += dropped_at_open
            log.warning(
                "spool file over its %d-byte limit: dropped its %d oldest messages",
                self._spool.limit_bytes,
                dropped_at_open,
            )
        if len(self._spool):
            log.info(
                "%d messages (%d bytes) from an earlier run wait in the spool",
                len(self._spool),
                self._spool.bytes,
            )

    # -- set-up ----------------------------------------------------------------------------
    def _make_client(self) -> Any:
        try:
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError:
            raise RuntimeUnavailable(
                "the MQTT bridge needs paho-mqtt 2.x: pip install 'edge-agent[mqtt]'"
            )
        if self.address.protocol == "5":
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=self.address.client_id,
                protocol=mqtt.MQTTv5,
            )
        else:
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=self.address.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=True,
            )
        client.on_log = self._on_log
        client.reconnect_delay_set(
            min_delay=self._reconnect_delay[0], max_delay=self._reconnect_delay[1]
        )  # type: ignore[arg-type]
        client.max_inflight_messages_set(self.max_inflight)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def start(self) -> MqttBridge:
        """Start connecting (in the background) and the sender and inbound threads."""
        if self._threads:
            return self
        log.info(
            "MQTT bridge to %s as %s (MQTT %s%s); spool %s, %d bytes max",
            self.address,
            self.address.client_id,
            self.address.protocol,
            self._tls_description(),
            self._spool.kind,
            self._spool.limit_bytes,
        )
        for target, name in (
            (self._send_loop, "mqtt-bridge-send"),
            (self._inbound_loop, "mqtt-bridge-inbound"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.address.protocol == "5":
            # A clean start every time: the subscriptions are made again on
            # every connect and the spool, not the session, keeps what is unsent.
            self._client.connect_async(
                self.address.host, self.address.port, keepalive=self.keepalive, clean_start=True
            )
        else:
            self._client.connect_async(
                self.address.host, self.address.port, keepalive=self.keepalive
            )
        self._client.loop_start()
        return self

    def _tls_description(self) -> str:
        if self._tls is None:
            return ""
        ca, cert = self._tls_files
        return ", TLS, CA {}, {}".format(
            ca or "system store", f"client certificate {cert}" if cert else "no client certificate"
        )

    # -- what the core calls -----------------------------------------------------------------
    def publish(self, topic: str, payload: bytes) -> None:
        """Queue ``payload`` for ``topic``; sent as soon as (and in the order) the connection allows."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        with self._lock:
            if self._closed:
                self._count_drops(1, "a message after close()")
                return
            entry_id, dropped = self._spool.append(topic, bytes(payload))
            if entry_id is None:
                self._count_drops(1, "a message bigger than the whole spool")
                return
            if dropped:
                self._count_drops(dropped, "full; the oldest go first")
            if not self._connected:
                self._stats["spooled"] += 1
        log.debug("queued %d bytes for %s", len(payload), topic)
        self._events.put(None)

    __call__ = publish

    # -- state --------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stats(self) -> Dict[str, int]:
        """A snapshot of the counters (see ``_STAT_NAMES``) plus the spool's size."""
        with self._lock:
            snapshot = dict(self._stats)
            snapshot["pending"] = len(self._spool)
            snapshot["pending_bytes"] = self._spool.bytes
            return snapshot

    @property
    def pending(self) -> int:
        """Messages in the spool: waiting, or sent and not yet acknowledged."""
        with self._lock:
            return len(self._spool)

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
        self._events.put(None)
        with self._lock:
            while len(self._spool):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.5))
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush for up to ``timeout`` seconds (unless the broker is unreachable), then disconnect.

        Messages still spooled are lost with a memory spool (logged) and kept
        for the next start with a disk spool.
        """
        if self._closed:
            return
        with self._lock:
            waiting = len(self._spool) > 0
            hopeless = self._failing and not self._connected
        if waiting and not hopeless:
            self.flush(timeout)
        with self._lock:
            self._closed = True
            self._stopping = True
            left = len(self._spool)
        self._events.put(None)
        try:
            self._inbound.put_nowait(None)
        except queue.Full:
            pass
        try:
            self._client.disconnect()
        except Exception:  # closing must not fail
            log.debug("disconnect failed", exc_info=True)
        self._client.loop_stop()
        _forget_unacked(self._client)
        for thread in self._threads:
            thread.join(2.0)
        self._log_unlogged_drops()
        if left:
            if self._spool.kind == "disk":
                log.warning(
                    "MQTT bridge closed with %d messages unsent; they stay in the spool file for the next start",
                    left,
                )
            else:
                log.warning("MQTT bridge closed with %d messages unsent; they are lost", left)
        self._spool.close()
        log.info(
            "MQTT bridge closed: %d published, %d dropped, %d delivered from the cloud",
            self._stats["published"],
            self._stats["dropped"],
            self._stats["delivered_from_cloud"],
        )

    def __enter__(self) -> MqttBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paho callbacks (on paho's network thread; never call back into paho while holding _lock) --
    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._refused = True
            self._connect_failed(
                "broker refused the connection: {}{}".format(
                    reason,
                    " (AWS IoT policies usually allow iot:Connect only for client id = thing name)"
                    if "authori" in str(reason).lower()
                    else "",
                )
            )
            return
        # Forget what paho still holds from the last connection: the spool resends it in order.
        _forget_unacked(client)
        now = self.clock.monotonic()
        with self._lock:
            self._generation += 1
            self._inflight.clear()
            self._cursor = 0
            self._connected = True
            self._failing = False
            self._stats["connects"] += 1
            reconnect = self._ever_connected
            self._ever_connected = True
            if reconnect:
                self._stats["reconnects"] += 1
            waiting = len(self._spool)
            down_for = None if self._down_since is None else now - self._down_since
            self._down_since = None
            self._subscribed.clear()
            self._changed.notify_all()
        self.last_error = None
        self._last_fail_text = ""
        self._socket_error = ""
        self._log_unlogged_drops()
        if reconnect:
            log.info(
                "reconnected to %s after %.1f s; sending %d spooled messages first",
                self.address,
                down_for or 0.0,
                waiting,
            )
        else:
            log.info(
                "connected to %s as %s%s",
                self.address,
                self.address.client_id,
                f"; sending {waiting} spooled messages" if waiting else "",
            )
        if self.subscriptions:
            self._subscribe(client)
        self._events.put(None)

    def _subscribe(self, client: Any) -> None:
        if self.address.protocol == "5":
            from paho.mqtt.subscribeoptions import SubscribeOptions

            # noLocal: never receive our own publishes back (MQTT 5 only).
            topics: List[Tuple[str, Any]] = [
                (s, SubscribeOptions(qos=self.qos, noLocal=True)) for s in self.subscriptions
            ]
        else:
            topics = [(s, self.qos) for s in self.subscriptions]
        result, mid = client.subscribe(topics)
        if result != 0:
            log.warning("could not subscribe to %s (%s)", ", ".join(self.subscriptions), result)
            return
        self._subscribe_mid = mid

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        failed = [s for s, r in zip(self.subscriptions, reasons) if r.is_failure]
        if failed:
            log.error("broker refused the subscription to %s", ", ".join(failed))
        else:
            log.info("subscribed to %s", ", ".join(self.subscriptions))
        if mid == self._subscribe_mid:
            self._subscribed.set()

    def _on_log(self, client: Any, userdata: Any, level: int, text: str) -> None:
        # paho reports every failed reconnect at its ERROR level; the bridge
        # logs those itself, once, so only a bug in a callback stays loud.
        if text.startswith("Caught exception"):
            log.error("paho: %s", text)
            return
        if level >= 4:  # MQTT_LOG_WARNING, MQTT_LOG_ERR: kept to explain a refused connection
            self._socket_error = text
        _paho_log.debug("%s", text)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        exc = sys.exc_info()[1]  # paho calls this from its except block
        self._refused = False
        self._connect_failed(
            "cannot connect to {}: {}".format(self.address, exc or "connection failed")
        )

    def _connect_failed(self, text: str) -> None:
        now = self.clock.monotonic()
        with self._lock:
            self._failing = True
            self._stats["connect_failures"] += 1
            if self._down_since is None:
                self._down_since = now
            self._changed.notify_all()
        self.last_error = text
        if text != self._last_fail_text or now - self._last_fail_log >= CONNECT_FAIL_LOG_INTERVAL_S:
            self._last_fail_text = text
            self._last_fail_log = now
            log.warning("%s; retrying with backoff (%g-%g s)", text, *self._reconnect_delay)
        else:
            log.debug("%s; retrying", text)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        poison = None
        with self._lock:
            was_connected = self._connected
            self._connected = False
            self._generation += 1
            if was_connected and self._inflight:
                poison = self._count_suspect()
            self._inflight.clear()
            self._cursor = 0
            if was_connected:
                self._stats["disconnects"] += 1
                self._down_since = self.clock.monotonic()
            waiting = len(self._spool)
            stopping = self._stopping
            self._changed.notify_all()
        if poison is not None:
            log.error(
                "the broker closed the connection %d times while a message on %s was the oldest "
                "unacknowledged one; dropped it (is the topic allowed by the device's policy?)",
                POISON_DISCONNECTS,
                poison,
            )
        if stopping:
            log.info("disconnected from %s", self.address)
        elif self._refused:
            self._refused = False  # already reported by _on_connect
        elif not was_connected:
            # Closed before CONNACK: with TLS 1.3 a broker refuses a client
            # certificate only after the handshake, on the first read.
            self._connect_failed(
                "connection to {} closed before the broker accepted it: {}".format(
                    self.address, self._socket_error or reason
                )
            )
        elif was_connected:
            self.last_error = f"connection lost: {reason}"
            log.warning(
                "lost the connection to %s (%s); spooling messages (%d waiting) and reconnecting "
                "with backoff (%g-%g s)",
                self.address,
                reason,
                waiting,
                *self._reconnect_delay,
            )

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        # Only note it: the sender thread owns the in-flight table, so an ack
        # that overtakes the sender's bookkeeping is still matched.
        self._events.put((self._generation, mid, reason))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            self._inbound.put_nowait((message.topic, bytes(message.payload)))
        except queue.Full:
            with self._lock:
                self._stats["dropped_from_cloud"] += 1
            log.warning(
                "inbound queue full; a message from the cloud on %s was dropped", message.topic
            )

    # -- sender thread ---------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stopping:
            try:
                item = self._events.get(timeout=1.0)
            except queue.Empty:
                item = None
            try:
                self._handle_event(item)
                while True:  # take everything that is waiting before sending more
                    try:
                        self._handle_event(self._events.get_nowait())
                    except queue.Empty:
                        break
                self._pump()
            except Exception:  # the sender must outlive any bug
                log.exception("unexpected error in the MQTT bridge sender")
                time.sleep(0.5)

    def _count_suspect(self) -> Optional[str]:
        """Count a lost connection against the oldest message in flight; drop it at the limit.

        With MQTT 3.1.1, AWS IoT Core answers a publish the policy denies by closing the
        connection, with no negative PUBACK: without this, one such message would be resent
        on every reconnect and block everything behind it. Returns the dropped topic.
        """
        oldest_id, topic = min(self._inflight.values())
        count = self._suspects.get(oldest_id, 0) + 1
        if count < POISON_DISCONNECTS:
            self._suspects[oldest_id] = count
            return None
        self._suspects.pop(oldest_id, None)
        if self._spool.remove(oldest_id):
            self._stats["rejected"] += 1
        return topic

    def _handle_event(self, item: Any) -> None:
        if item is None:
            return
        generation, mid, reason = item
        with self._lock:
            if generation != self._generation:
                return  # an ack from a connection that is gone; the entry is resent anyway
            found = self._inflight.pop(mid, None)
            if found is None:
                return
            entry_id, topic = found
            self._suspects.pop(entry_id, None)
            removed = self._spool.remove(entry_id)
            failed = reason is not None and getattr(reason, "is_failure", False)
            if removed:
                self._stats["rejected" if failed else "published"] += 1
            self._changed.notify_all()
        if failed:
            log.warning("broker refused a message on %s: %s", topic, reason)

    def _pump(self) -> None:
        """Hand paho the next spooled messages, in order, while there is room in flight."""
        from paho.mqtt.client import MQTT_ERR_SUCCESS

        while True:
            with self._lock:
                if not self._connected or self._stopping:
                    return
                room = self.max_inflight - len(self._inflight)
                if room <= 0:
                    return
                batch = self._spool.entries_after(self._cursor, room)
                generation = self._generation
            if not batch:
                return
            for entry in batch:
                try:
                    info = self._client.publish(entry.topic, entry.payload, qos=self.qos)
                except ValueError as exc:  # a topic or payload MQTT cannot carry
                    with self._lock:
                        if self._spool.remove(entry.id):
                            self._stats["rejected"] += 1
                        self._changed.notify_all()
                    log.error("cannot publish to %r: %s; message dropped", entry.topic, exc)
                    continue
                with self._lock:
                    if generation != self._generation:
                        return  # the connection changed meanwhile; the new one starts over
                    if info.rc != MQTT_ERR_SUCCESS:
                        log.debug("publish not accepted (%s); waiting for the connection", info.rc)
                        return
                    self._cursor = entry.id
                    if entry.id <= self._highest_sent:
                        self._stats["resent"] += 1
                    self._highest_sent = max(self._highest_sent, entry.id)
                    self._inflight[info.mid] = (entry.id, entry.topic)

    # -- inbound thread --------------------------------------------------------------------
    def _inbound_loop(self) -> None:
        while True:
            item = self._inbound.get()
            if item is None or self._closed:
                return
            topic, payload = item
            if self.on_message is None:
                continue
            try:
                self.on_message(topic, payload)
            except ValueError:
                log.warning("a message from the cloud on %s is not JSON; dropped", topic)
                continue
            except Exception:
                log.exception("delivering a message from the cloud on %s failed", topic)
                continue
            with self._lock:
                self._stats["delivered_from_cloud"] += 1

    # -- logging -----------------------------------------------------------------------------
    def _log_unlogged_drops(self) -> None:
        with self._lock:
            unlogged, self._drops_unlogged = self._drops_unlogged, 0
            total = self._stats["dropped"]
        if unlogged:
            log.warning(
                "MQTT spool: dropped %d more message(s) since the last report (%d dropped in all)",
                unlogged,
                total,
            )

    def _count_drops(self, count: int, why: str) -> None:
        """Count every drop exactly; log them at most once a minute (called with _lock held)."""
        self._stats["dropped"] += count
        self._drops_unlogged += count
        now = self.clock.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            log.warning(
                "MQTT spool: dropped %d message(s) (%s; %d dropped in all, limit %d bytes)",
                self._drops_unlogged,
                why,
                self._stats["dropped"],
                self._spool.limit_bytes,
            )
            self._drops_unlogged = 0
            self._last_drop_log = now


def _forget_unacked(client: Any) -> None:
    """Make paho drop its own copies of unacknowledged messages (the spool resends them)."""
    drop = getattr(client, "drop_out_messages", None)  # paho 2.2+
    if drop is not None:
        drop()
        return
    # paho 2.0/2.1 have no public call for it; the queue has kept this name since 1.x.
    mutex = getattr(client, "_out_message_mutex", None)
    messages = getattr(client, "_out_messages", None)
    if mutex is not None and messages is not None:
        with mutex:
            messages.clear()
    else:
        log.debug("cannot clear paho's queue; a reconnect may send a message twice")


def cloud_subjects(topology: Any) -> List[str]:
    """The subjects of the topology's subscriptions whose source is ``cloud``."""
    from ...topology import CLOUD

    return list(dict.fromkeys(s.subject for s in topology.subscriptions_from(CLOUD)))


def attach_bridge(
    core: Any, options: BridgeOptions, *, clock: Optional[Clock] = None
) -> MqttBridge:
    """Bridge a :class:`~agent.greengrass.local.LocalCore` to the broker ``options`` name.

    Everything the core routes to ``cloud`` is published; the subjects of
    subscriptions whose source is ``cloud`` are subscribed on every
    (re)connect and what arrives is routed with ``core.deliver_from_cloud``.
    Connecting happens in the background: this returns at once.
    """
    bridge = MqttBridge(
        options,
        subscriptions=cloud_subjects(core.topology),
        on_message=core.deliver_from_cloud,
        clock=clock,
    )
    core.add_cloud_link(bridge.publish)
    return bridge.start()
