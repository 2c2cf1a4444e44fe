"""What the MQTT tests share: a subscriber to watch a broker, bridges made from options, waits."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import paho.mqtt.client as mqtt
from helpers import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from agent.greengrass.local import LocalCore
from agent.schema import READING_SCHEMA
from agent.standalone.mqtt_bridge import BridgeOptions, MqttBridge, attach_bridge

ROOT = Path(__file__).resolve().parent.parent
READINGS = "IoTBlog/sensorData"
ANOMALIES = "IoTBlog/anomaly"
FAST = (0.2, 1.0)  # reconnect backoff for tests
BRIDGE_LOG = "agent.standalone.mqtt_bridge"


def _load_make_local_ca() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_local_ca", ROOT / "certs-example" / "make_local_ca.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_local_ca"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


make_local_ca = _load_make_local_ca()


def tls_listener(ca: Path, cert: Path, key: Path) -> List[str]:
    """A mutual-TLS listener's settings (TLS 1.2 or newer), as make_local_ca writes them."""
    return list(make_local_ca.listener_settings(ca, cert, key))


def new_bridge(url: str, **options: Any) -> MqttBridge:
    return MqttBridge(BridgeOptions(url, **options))


def attach(core: LocalCore, url: str, **options: Any) -> MqttBridge:
    return attach_bridge(core, BridgeOptions(url, **options))


def reading(seq: int) -> Dict[str, Any]:
    return {"schema": READING_SCHEMA, "device": "pi-test", "seq": seq, "ts": 1790000000.0 + seq}


def publish_readings(bridge: MqttBridge, seqs: Sequence[int], topic: str = READINGS) -> None:
    for seq in seqs:
        bridge.publish(topic, json.dumps(reading(seq)).encode())


def loud_lines(records: Sequence[logging.LogRecord]) -> List[str]:
    """The bridge's lines a console shows without -v (WARNING and above)."""
    return [
        r.getMessage()
        for r in records
        if r.name.startswith(BRIDGE_LOG) and r.levelno >= logging.WARNING
    ]


class Watcher:
    """An external MQTT client, like ``mosquitto_sub -t 'IoTBlog/#'``."""

    def __init__(
        self,
        port: int,
        topic: str = "IoTBlog/#",
        *,
        client_id: str = "watcher",
        persistent: bool = False,
        protocol: str = "3.1.1",
        tls: Optional[Any] = None,  # a make_local_ca.LocalCA
        host: str = "127.0.0.1",
    ) -> None:
        self.port = port
        self.topic = topic
        self.host = host
        self.messages: List[Tuple[str, Dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        if protocol == "5":
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
            )
        else:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv311,
                clean_session=not persistent,
            )
        if tls is not None:
            self.client.tls_set(
                ca_certs=str(tls.ca), certfile=str(tls.device_cert), keyfile=str(tls.device_key)
            )
        self.client.reconnect_delay_set(*FAST)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.messages.append((message.topic, json.loads(message.payload)))

    def start(self, timeout: float = 5.0) -> Watcher:
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(timeout), "the watcher could not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def received(self, topic: Optional[str] = None) -> List[Dict[str, Any]]:
        with self._lock:
            return [m for t, m in self.messages if topic is None or t == topic]

    def seqs(self, topic: Optional[str] = None) -> List[int]:
        return [m["seq"] for m in self.received(topic)]

    def wait_for(self, count: int, topic: Optional[str] = None, timeout: float = 10.0) -> bool:
        return wait_until(lambda: len(self.received(topic)) >= count, timeout)


class IoTCoreLikeBroker:
    """A minimal MQTT 3.1.1 broker that answers a publish on a denied topic as AWS IoT
    Core does: by closing the connection (3.1.1 has no negative PUBACK). Mosquitto
    acknowledges such a publish instead, so it cannot show this."""

    def __init__(self, denied: str = "", hang_up_after_first_ack: bool = False) -> None:
        self.denied = denied
        # Close the first connection right after the first PUBACK: the ack and the
        # end of the connection reach the client together.
        self.hang_up_after_first_ack = hang_up_after_first_ack
        self.delivered: list = []
        self.connects = 0
        self.refused_versions: list = []
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _packet(conn):
        head = conn.recv(1)
        if not head:
            return None, None
        multiplier, length = 1, 0
        while True:
            byte = conn.recv(1)[0]
            length += (byte & 127) * multiplier
            multiplier *= 128
            if not byte & 128:
                break
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                return None, None
            body += chunk
        return head[0] >> 4, body

    def _serve(self, conn) -> None:
        try:
            while True:
                kind, body = self._packet(conn)
                if kind is None:
                    return
                if kind == 1:  # CONNECT
                    if body[6] != 4:  # not 3.1.1: "unacceptable protocol version", as 3.1.1 says
                        self.refused_versions.append(body[6])
                        conn.sendall(b"\x20\x02\x00\x01")
                        return
                    self.connects += 1
                    conn.sendall(b"\x20\x02\x00\x00")
                elif kind == 3:  # PUBLISH, QoS 1
                    n = int.from_bytes(body[:2], "big")
                    topic = body[2 : 2 + n].decode()
                    if topic == self.denied:
                        conn.close()
                        return
                    self.delivered.append(json.loads(body[4 + n :]))
                    conn.sendall(b"\x40\x02" + body[2 + n : 4 + n])
                    if self.hang_up_after_first_ack:
                        self.hang_up_after_first_ack = False
                        return
                elif kind == 12:  # PINGREQ
                    conn.sendall(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return
        except OSError:
            return
        finally:
            conn.close()

    def close(self) -> None:
        self._server.close()
