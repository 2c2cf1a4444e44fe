"""The MQTT bridge against a real Mosquitto started by each test on a free port."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time
from typing import Any, Dict, List, Tuple

import paho.mqtt.client as mqtt
import pytest
from helpers import wait_until
from mosquitto import Mosquitto, free_port
from mqtt_helpers import (
    FAST,
    READINGS,
    IoTCoreLikeBroker,
    Watcher,
    attach,
    make_local_ca,
    new_bridge,
    reading,
)
from paho.mqtt.enums import CallbackAPIVersion

from agent.errors import ConfigError
from agent.greengrass.local import LocalCore
from agent.schema import ANOMALY_SCHEMA, READING_SCHEMA
from agent.standalone.mqtt_bridge import MqttBridge, entry_size, parse_mqtt_url
from agent.topology import (
    ANOMALY_FUNCTION_ID,
    CLOUD,
    SENSOR_FUNCTION_ID,
    GroupTopology,
    Subscription,
    default_topology,
)


@pytest.fixture
def broker(tmp_path):
    server = Mosquitto(tmp_path / "broker").start()
    yield server
    server.stop()


@pytest.fixture
def local_ca(tmp_path):
    return make_local_ca.make_local_ca(tmp_path / "certs", "pi-test", free_port())


@pytest.fixture
def tls_broker(tmp_path, local_ca):
    server = Mosquitto(
        tmp_path / "tls-broker",
        port=local_ca.port,
        listener_settings=local_ca.listener_settings(),
        allow_anonymous=False,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def bridges():
    made: List[MqttBridge] = []
    yield made
    for bridge in made:
        bridge.close(timeout=0)


# -- URLs ------------------------------------------------------------------------------------


def test_url_forms():
    plain = parse_mqtt_url("mqtt://broker.local")
    assert (plain.host, plain.port, plain.tls, plain.protocol) == (
        "broker.local",
        1883,
        False,
        "auto",  # MQTT 5, or 3.1.1 if the broker refuses 5
    )
    tls = parse_mqtt_url("mqtts://abc-ats.iot.eu-west-1.amazonaws.com?protocol=5&client_id=pi-1")
    assert (tls.port, tls.tls, tls.protocol, tls.client_id) == (8883, True, "5", "pi-1")
    assert parse_mqtt_url("mqtt://127.0.0.1:2883?protocol=3.1.1").protocol == "3.1.1"
    for bad in (
        "http://x",
        "mqtt://",
        "mqtt://u:pw@host",
        "mqtt://h?protocol=4.5",
        "mqtt://h?foo=1",
    ):
        with pytest.raises(ConfigError):
            parse_mqtt_url(bad)


def test_certificates_need_tls_and_existing_files(tmp_path):
    with pytest.raises(ConfigError, match="TLS"):
        new_bridge("mqtt://127.0.0.1", cert="a.pem", key="a.key")
    with pytest.raises(ConfigError, match="does not exist"):
        new_bridge("mqtts://127.0.0.1", ca=str(tmp_path / "missing.pem"))


# -- readings reach a subscriber -------------------------------------------------------------


def test_simulation_readings_and_anomaly_reach_a_subscriber(broker, tmp_path):
    from devtools.simulate import SimulationOptions, run

    watcher = Watcher(broker.port).start()
    try:
        summary = run(
            SimulationOptions(
                scenario="humid-spell",
                fast=True,
                duration=120,
                mqtt_url=broker.url,
                state_dir=str(tmp_path / "state"),
            )
        )
        readings_sent = summary["readings_published"]
        anomalies_sent = summary["anomalies_published"]
        assert readings_sent >= 20 and anomalies_sent >= 1
        assert watcher.wait_for(readings_sent, READINGS)
        assert watcher.wait_for(anomalies_sent, "IoTBlog/anomaly")
    finally:
        watcher.stop()
    readings = watcher.received(READINGS)
    assert all(m["schema"] == READING_SCHEMA for m in readings)
    assert [m["seq"] for m in readings] == list(range(1, readings_sent + 1))  # in order, no gaps
    anomalies = watcher.received("IoTBlog/anomaly")
    assert anomalies[0]["schema"] == ANOMALY_SCHEMA
    assert anomalies[0]["event"] == "breach" and anomalies[0]["metric"] == "humidity"


# -- TLS with client certificates --------------------------------------------------------------


def test_make_local_ca_writes_a_matching_mosquitto_config(local_ca):
    conf = local_ca.mosquitto_conf.read_text().splitlines()
    assert f"listener {local_ca.port} 127.0.0.1" in conf
    for line in (
        f"cafile {local_ca.ca}",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
    ):
        assert line in conf
    for key in (local_ca.broker_key, local_ca.device_key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    from cryptography import x509

    device = x509.load_pem_x509_certificate(local_ca.device_cert.read_bytes())
    assert device.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "pi-test"
    broker = x509.load_pem_x509_certificate(local_ca.broker_cert.read_bytes())
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_tls_with_client_certificates(tls_broker, local_ca, bridges):
    watcher = Watcher(tls_broker.port, tls=local_ca, host="localhost").start()
    try:
        core = LocalCore()
        bridge = attach(
            core,
            tls_broker.tls_url,
            client_id="pi-test",
            ca=str(local_ca.ca),
            cert=str(local_ca.device_cert),
            key=str(local_ca.device_key),
            reconnect_delay=FAST,
        )
        bridges.append(bridge)
        assert bridge.wait_connected(5), bridge.last_error
        for seq in range(3):
            core.publish(SENSOR_FUNCTION_ID, READINGS, reading(seq))
        assert bridge.flush(5)
        assert watcher.wait_for(3, READINGS)
    finally:
        watcher.stop()
    assert [m["seq"] for m in watcher.received(READINGS)] == [0, 1, 2]
    assert bridge.stats().published == 3
    assert "u'pi-test'" in tls_broker.log_tail(50)  # the certificate's CN became the user name


# -- broker restarts and the spool -----------------------------------------------------------


def test_messages_published_while_the_broker_is_down_arrive_after_reconnect(broker, bridges):
    watcher = Watcher(broker.port, persistent=True).start()
    try:
        core = LocalCore()
        bridge = attach(core, broker.url, client_id="pi-restart", reconnect_delay=FAST)
        bridges.append(bridge)
        assert bridge.wait_connected(5)
        for seq in range(1, 4):
            core.publish(SENSOR_FUNCTION_ID, READINGS, reading(seq))
        assert bridge.flush(5)

        broker.stop()
        assert wait_until(lambda: not bridge.connected, 5)
        for seq in range(4, 9):
            core.publish(SENSOR_FUNCTION_ID, READINGS, reading(seq))
        assert bridge.pending == 5
        assert bridge.stats().spooled == 5

        broker.start()
        assert bridge.flush(10), bridge.stats()
        # Until reading 8 is there: a count of 8 can be reached by a repeat (QoS 1) first.
        assert wait_until(lambda: 8 in {m["seq"] for m in watcher.received(READINGS)}, 10)
    finally:
        watcher.stop()
    seqs = [m["seq"] for m in watcher.received(READINGS)]
    assert list(dict.fromkeys(seqs)) == list(range(1, 9))  # all, in order (QoS 1 may repeat)
    stats = bridge.stats()
    assert stats.published == 8 and stats.reconnects == 1 and stats.dropped == 0


def test_a_full_spool_drops_the_oldest_and_counts_every_drop(broker, bridges, caplog):
    caplog.set_level(logging.WARNING, logger="agent.standalone.mqtt_bridge")
    watcher = Watcher(broker.port, persistent=True).start()
    try:
        broker.stop()  # the watcher's session survives in the broker's persistence file
        payloads = [json.dumps({"seq": 100 + i}).encode() for i in range(25)]
        size = entry_size(READINGS, payloads[0])
        assert all(entry_size(READINGS, p) == size for p in payloads)
        bridge = new_bridge(
            broker.url,
            client_id="pi-spool",
            spool_limit_bytes=10 * size + size // 2,
            reconnect_delay=FAST,
        ).start()
        bridges.append(bridge)
        for payload in payloads:
            bridge.publish(READINGS, payload)
        stats = bridge.stats()
        assert stats.dropped == 15
        assert stats.pending == 10 and stats.pending_bytes == 10 * size

        broker.start()
        assert bridge.flush(10), bridge.stats()
        # A message published after them arrives after them (QoS 1, one topic, one client):
        # once the watcher has it, nothing of the spool is still on its way.
        bridge.publish(READINGS, json.dumps({"seq": 999}).encode())
        assert watcher.wait_for(11, READINGS)
    finally:
        watcher.stop()
    received = [m["seq"] for m in watcher.received(READINGS)]
    assert received == list(range(115, 125)) + [999]  # the newest ten kept, in order
    # Logged lean (the first drop, then the rest summed up on reconnect); counted exactly.
    drop_logs = [r.getMessage() for r in caplog.records if "MQTT spool: dropped" in r.getMessage()]
    assert len(drop_logs) == 2
    assert "dropped 1 message(s) (full; the oldest go first" in drop_logs[0]
    assert "dropped 14 more" in drop_logs[1] and "15 dropped in all" in drop_logs[1]


def test_a_disk_spool_keeps_messages_across_a_restart_of_the_agent(broker, tmp_path, bridges):
    spool = str(tmp_path / "spool" / "mqtt.sqlite3")
    watcher = Watcher(broker.port).start()
    try:
        offline = new_bridge(
            f"mqtt://127.0.0.1:{free_port()}", spool_path=spool, reconnect_delay=FAST
        ).start()
        for seq in range(3):
            offline.publish(READINGS, json.dumps(reading(seq)).encode())
        assert wait_until(lambda: offline.last_error is not None, 5)
        offline.close(timeout=1)  # the broker is unreachable: nothing is sent, all is kept

        online = new_bridge(broker.url, spool_path=spool, reconnect_delay=FAST)
        bridges.append(online)
        assert online.pending == 3  # found in the spool before it connects (and sends them)
        online.start()
        assert online.flush(5)
        assert watcher.wait_for(3, READINGS)
    finally:
        watcher.stop()
    assert [m["seq"] for m in watcher.received(READINGS)] == [0, 1, 2]


class CuttableProxy:
    """A TCP proxy to the broker that can swallow what the broker says (its PUBACKs) and cut."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.swallow = threading.Event()
        self.swallowed = 0  # bytes from the broker that never reached the client
        self._sockets: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_broker: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_broker and self.swallow.is_set():
                    self.swallowed += len(data)
                else:
                    sink.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_a_message_leaves_the_spool_only_when_the_broker_acknowledges_it(broker, bridges):
    proxy = CuttableProxy(broker.port)
    watcher = Watcher(broker.port).start()
    try:
        bridge = new_bridge(
            f"mqtt://127.0.0.1:{proxy.port}", client_id="pi-acks", reconnect_delay=FAST
        ).start()
        bridges.append(bridge)
        assert bridge.wait_connected(5)
        proxy.swallow.set()  # the broker gets the messages; its PUBACKs never arrive
        for seq in range(3):
            bridge.publish(READINGS, json.dumps(reading(seq)).encode())
        assert watcher.wait_for(3, READINGS)
        # The broker has acknowledged all three (4-byte PUBACKs, swallowed): a bridge that
        # counted a message as published on sending it would have by now.
        assert wait_until(lambda: proxy.swallowed >= 3 * 4)
        assert bridge.pending == 3 and bridge.stats().published == 0

        proxy.swallow.clear()
        proxy.cut()  # the connection dies with three messages unacknowledged
        assert bridge.flush(10), bridge.stats()
        assert watcher.wait_for(6, READINGS)
    finally:
        watcher.stop()
        proxy.close()
    stats = bridge.stats()
    assert stats.resent == 3 and stats.published == 3 and stats.reconnects == 1
    # At least once, never lost: the three again, in order, and nothing else.
    assert [m["seq"] for m in watcher.received(READINGS)] == [0, 1, 2, 0, 1, 2]


# -- from the cloud into a function --------------------------------------------------------------


def _commands_topology() -> GroupTopology:
    base = default_topology()
    return GroupTopology(
        name="commands-test",
        functions=base.functions,
        subscriptions=base.subscriptions
        + (Subscription("commands-to-anomaly", CLOUD, "commands/#", ANOMALY_FUNCTION_ID),),
    )


def _external_publish(port: int, topic: str, message: Dict[str, Any], protocol: str = "3.1.1"):
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id="operator",
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        info = client.publish(topic, json.dumps(message), qos=1)
        info.wait_for_publish(5)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_message_from_the_cloud_reaches_a_subscribed_function(broker, bridges, protocol):
    core = LocalCore(_commands_topology())
    got: List[Tuple[Any, Any]] = []
    arrived = threading.Event()

    def handler(event: Any, context: Any) -> None:
        got.append((event, context))
        arrived.set()

    core.register(ANOMALY_FUNCTION_ID, handler)
    bridge = attach(core, broker.url, protocol=protocol, reconnect_delay=FAST)
    bridges.append(bridge)
    assert bridge.wait_connected(5)  # and subscribed to commands/#
    _external_publish(broker.port, "commands/pi-test/reset", {"action": "reset"}, protocol)
    assert arrived.wait(5)
    event, context = got[0]
    assert event == {"action": "reset"}
    assert context.client_context.custom["subject"] == "commands/pi-test/reset"
    assert context.client_context.custom["source"] == CLOUD
    assert wait_until(lambda: bridge.stats().delivered_from_cloud == 1, 2)


def test_mqtt5_end_to_end(broker, bridges):
    watcher = Watcher(broker.port, protocol="5").start()
    try:
        core = LocalCore()
        bridge = attach(core, broker.url + "?protocol=5", reconnect_delay=FAST)
        bridges.append(bridge)
        assert bridge.address.protocol == "5"
        assert bridge.wait_connected(5)
        for seq in range(4):
            core.publish(SENSOR_FUNCTION_ID, READINGS, reading(seq))
        assert bridge.flush(5)
        assert watcher.wait_for(4, READINGS)
    finally:
        watcher.stop()
    assert [m["seq"] for m in watcher.received(READINGS)] == [0, 1, 2, 3]
    assert "(p5," in broker.log_tail(50)  # the broker saw an MQTT 5 client


# -- edge-agent run: both functions, straight to the broker, no Greengrass ---------------------


def test_run_direct_against_a_tls_broker_like_aws_iot(tls_broker, local_ca, tmp_path):
    from agent.standalone.run import main

    watcher = Watcher(tls_broker.port, tls=local_ca, host="localhost").start()
    try:
        status = main(
            [
                "--endpoint",
                f"localhost:{tls_broker.port}",
                "--thing",
                "pi-test",
                "--cert",
                str(local_ca.device_cert),
                "--key",
                str(local_ca.device_key),
                "--ca",
                str(local_ca.ca),
                "--sensor",
                "fake",
                "--max-ticks",
                "3",
                "--set",
                "period=0.1",
                "--state-dir",
                str(tmp_path / "state"),
            ]
        )
        assert status == 0
        assert watcher.wait_for(3, READINGS)
    finally:
        watcher.stop()
    readings = watcher.received(READINGS)
    assert [m["seq"] for m in readings] == [1, 2, 3]
    assert {m["device"] for m in readings} == {"pi-test"}  # the thing name is the device id
    assert "as pi-test" in tls_broker.log_tail(50)  # client id = thing name


def test_run_direct_for_a_duration_over_plain_mqtt(broker, tmp_path):
    from agent.standalone.run import main

    watcher = Watcher(broker.port).start()
    try:
        started = time.monotonic()
        status = main(
            [
                "--mqtt",
                broker.url,
                "--sensor",
                "fake",
                "--duration",
                "0.5",
                "--set",
                "period=0.1",
                "--state-dir",
                str(tmp_path / "state"),
            ]
        )
        assert status == 0
        assert time.monotonic() - started < 5
        assert watcher.wait_for(3, READINGS)
    finally:
        watcher.stop()


def test_run_direct_needs_the_thing_name_for_aws(monkeypatch, capsys):
    from agent.standalone.run import endpoint_url, main

    monkeypatch.delenv("AWS_IOT_THING_NAME", raising=False)
    host = "abc123-ats.iot.eu-west-1.amazonaws.com"
    assert endpoint_url(host) == f"mqtts://{host}:8883"
    with pytest.raises(SystemExit) as exit_info:
        main(["--endpoint", host, "--cert", "d.pem", "--key", "d.key"])
    assert exit_info.value.code == 2
    assert "thing name" in capsys.readouterr().err


def test_a_message_the_broker_disconnects_on_is_dropped_and_the_rest_flow(caplog):
    broker = IoTCoreLikeBroker(denied="not/allowed")
    bridge = new_bridge(
        "mqtt://127.0.0.1:{}".format(broker.port), client_id="t", reconnect_delay=(0.05, 0.1)
    ).start()
    try:
        assert bridge.wait_connected(5)
        bridge.publish("IoTBlog/sensorData", b'{"seq": 0}')
        bridge.publish("not/allowed", b'{"seq": -1}')
        for i in range(1, 6):
            bridge.publish("IoTBlog/sensorData", ('{"seq": %d}' % i).encode())
        wait_until(lambda: len(broker.delivered) >= 6, 15)
    finally:
        bridge.close(timeout=1)
        broker.close()
    assert sorted(m["seq"] for m in broker.delivered if m["seq"] >= 0)[-5:] == [1, 2, 3, 4, 5]
    assert bridge.stats().rejected == 1
    assert "dropped it (is the topic allowed by the device's policy?)" in caplog.text


def test_an_ack_the_broker_sent_counts_even_if_the_connection_drops_right_after_it():
    """The broker acknowledges a message and hangs up: it was delivered; never resent."""
    broker = IoTCoreLikeBroker(hang_up_after_first_ack=True)
    bridge = new_bridge(
        f"mqtt://127.0.0.1:{broker.port}", protocol="3.1.1", reconnect_delay=(0.05, 0.1)
    ).start()
    try:
        assert bridge.wait_connected(5)
        bridge.publish(READINGS, b'{"seq": 1}')
        assert wait_until(lambda: bridge.stats().reconnects >= 1, 5)  # it hung up; we came back
        bridge.publish(READINGS, b'{"seq": 2}')
        assert bridge.flush(5), bridge.stats()
    finally:
        final = bridge.close(timeout=0)
        broker.close()
    assert [m["seq"] for m in broker.delivered] == [1, 2]  # seq 1 once: not sent again
    assert (final.published, final.resent, final.rejected) == (2, 0, 0)
