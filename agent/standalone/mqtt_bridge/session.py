"""One network connection to the broker: a fresh paho client, driven by the bridge's thread.

Every connection attempt gets a new paho client, so nothing paho kept from an
earlier connection (its own queue of unacknowledged messages, which it would
resend next to the spool's copy) can leak into the next: the spool is the one
copy of every message. The bridge's network thread drives the client through
paho's public external-loop calls (``socket``, ``loop_read``, ``loop_write``,
``loop_misc``, ``want_write``) and is the only thread that ever touches it, so
acknowledgements, disconnects and publishes are handled one after the other
in the order they happened, and nothing of paho's private state is needed.

Device code: paho-mqtt 2.x is imported only here, and only when a session is made.
"""

from __future__ import annotations

import select
import socket
import ssl
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from ...errors import RuntimeUnavailable
from .address import BrokerAddress

if TYPE_CHECKING:
    import paho.mqtt.client as paho_client


def import_paho() -> Any:
    """paho's client module, or a clear error naming the extra to install."""
    try:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: F401  (2.x only)
    except ImportError:
        raise RuntimeUnavailable(
            "the MQTT bridge needs paho-mqtt 2.x: pip install 'edge-agent[mqtt]'"
        )
    return mqtt


class Session:
    """One connection: its client, what is in flight on it, and how it went.

    ``inflight`` maps paho's message id to (spool id, topic) for every message
    handed to this client and not yet acknowledged. ``early_acks`` holds an
    acknowledgement that arrived before :meth:`publish` returned its message id
    (paho reports a QoS 0 message as published while still inside ``publish``).
    """

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol  # "5" or "3.1.1"
        # Typed as paho's client so that every call on it is checked against paho's
        # signatures; make_client sets it before any other method runs.
        self.client: paho_client.Client = None  # type: ignore[assignment]
        self.accepted = False  # the broker's CONNACK accepted the connection
        self.ended = False  # on_disconnect was called (or the client was given up)
        self.books_closed = False  # the bridge has counted and reported the end
        self.reported = False  # why it failed or ended has been reported
        self.fallback = False  # the broker refused MQTT 5: try 3.1.1 at once
        self.leaving = False  # DISCONNECT was sent
        self.socket_error = ""  # paho's last socket error (a TLS alert after the handshake)
        self.cursor = 0  # the last spool id handed to this client
        self.inflight: Dict[int, Tuple[int, str]] = {}
        self.early_acks: Dict[int, Any] = {}
        self.subscribe_mid: Optional[int] = None

    def make_client(
        self,
        address: BrokerAddress,
        tls: Optional[ssl.SSLContext],
        max_inflight: int,
        connect_timeout: float,
    ) -> paho_client.Client:
        mqtt = import_paho()
        from paho.mqtt.enums import CallbackAPIVersion

        client: paho_client.Client
        if self.protocol == "5":
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=address.client_id,
                userdata=self,
                protocol=mqtt.MQTTv5,
                reconnect_on_failure=False,
            )
        else:
            client = mqtt.Client(
                callback_api_version=CallbackAPIVersion.VERSION2,
                client_id=address.client_id,
                userdata=self,
                protocol=mqtt.MQTTv311,
                clean_session=True,
                reconnect_on_failure=False,
            )
        client.max_inflight_messages_set(max_inflight)
        client.connect_timeout = connect_timeout
        if tls is not None:
            client.tls_set_context(tls)
        self.client = client
        return client

    def connect(self, address: BrokerAddress, keepalive: int) -> None:
        """TCP, TLS handshake and CONNECT (blocking, up to the connect timeout); raises OSError.

        A fresh client starts clean (MQTT 5 clean start, 3.1.1 clean session): the
        spool, not the broker's session, keeps what is unsent, and the
        subscriptions are made again on every connect.
        """
        self.client.connect(address.host, address.port, keepalive=keepalive)

    def publish(self, topic: str, payload: bytes, qos: int) -> Tuple[int, int]:
        """Hand one message to paho; (paho's result code, message id). Raises ValueError."""
        info = self.client.publish(topic, payload, qos=qos)
        return int(info.rc), int(info.mid)

    def step(self, wake: socket.socket, timeout: float) -> None:
        """Wait up to ``timeout`` for the broker or a wake-up, then let paho read and write."""
        client = self.client
        sock = client.socket()
        if sock is None:  # paho closed it; on_disconnect has been called
            self.ended = True
            return
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
        decrypted = pending is not None and pending() > 0
        writing = [sock] if client.want_write() else []
        readable, writable, _ = select.select(
            [sock, wake], writing, [], 0.0 if decrypted else timeout
        )
        if wake in readable:
            _drain(wake)
        if sock in readable or decrypted:
            client.loop_read()
        if writable and client.socket() is not None:
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()  # keepalive: PINGREQ, and giving up on a silent broker
        else:
            self.ended = True

    def subscribe(self, topics: Sequence[str], qos: int) -> bool:
        """Ask for ``topics`` (MQTT 5: never our own publishes back); False if paho refused."""
        if self.protocol == "5":
            from paho.mqtt.subscribeoptions import SubscribeOptions

            wanted: List[Tuple[str, Any]] = [
                (t, SubscribeOptions(qos=qos, noLocal=True)) for t in topics
            ]
        else:
            wanted = [(t, qos) for t in topics]
        result, mid = self.client.subscribe(wanted)
        if result != 0:
            return False
        self.subscribe_mid = mid
        return True

    def leave(self) -> None:
        """Send DISCONNECT; :meth:`step` writes it and paho then closes the socket."""
        if not self.leaving:
            self.leaving = True
            self.client.disconnect()

    def abandon(self) -> None:
        """Give the connection up at once (after a bug); the socket closes with the client."""
        self.ended = True
        try:
            self.client.disconnect()
            self.client.loop_write()
        except Exception:  # the connection is being thrown away
            pass


def _drain(wake: socket.socket) -> None:
    """Empty the wake-up socket (non-blocking): one wake-up covers every message waiting."""
    try:
        while wake.recv(4096):
            pass
    except OSError:  # BlockingIOError: empty
        pass
