"""MQTT 5 by default, 3.1.1 when the broker refuses 5, and what each shows of an ACL denial."""

from __future__ import annotations

import logging

import pytest
from mosquitto import Mosquitto
from mqtt_helpers import (
    ANOMALIES,
    BRIDGE_LOG,
    FAST,
    READINGS,
    IoTCoreLikeBroker,
    Watcher,
    loud_lines,
    new_bridge,
    publish_readings,
)


@pytest.fixture
def acl_broker(tmp_path):
    """Anonymous clients may publish readings and read everything, but not publish anomalies."""
    acl = tmp_path / "acl"
    acl.write_text(f"topic write {READINGS}\ntopic read IoTBlog/#\n")
    server = Mosquitto(tmp_path / "broker", listener_settings=[f"acl_file {acl}"]).start()
    yield server
    server.stop()


def test_mqtt_5_is_the_default(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        bridge = new_bridge(broker.url, client_id="pi-v5", reconnect_delay=FAST).start()
        try:
            assert bridge.wait_connected(5)
            assert bridge.stats().protocol == "5"
        finally:
            bridge.close(timeout=0)
        assert "pi-v5 (p5," in broker.log_tail(50)  # Mosquitto saw an MQTT 5 client


def test_a_broker_that_refuses_mqtt_5_gets_3_1_1(caplog):
    caplog.set_level(logging.INFO, logger=BRIDGE_LOG)
    broker = IoTCoreLikeBroker(denied="not/allowed")  # speaks 3.1.1 only, as 3.1.1 says
    bridge = new_bridge(f"mqtt://127.0.0.1:{broker.port}", reconnect_delay=FAST).start()
    try:
        publish_readings(bridge, range(3))
        assert bridge.flush(5), bridge.stats()
    finally:
        final = bridge.close(timeout=0)
        broker.close()
    assert broker.refused_versions == [5]  # tried once, then 3.1.1 for good
    assert [m["seq"] for m in broker.delivered] == [0, 1, 2]
    assert final.protocol == "3.1.1" and final.connect_failures == 0
    assert any("does not take MQTT 5" in r.getMessage() for r in caplog.records)
    assert not loud_lines(caplog.records)  # a normal fallback, nothing to act on


def test_with_mqtt_5_a_message_the_acl_denies_is_counted_as_rejected_and_named(acl_broker, caplog):
    caplog.set_level(logging.INFO, logger=BRIDGE_LOG)
    watcher = Watcher(acl_broker.port).start()
    bridge = new_bridge(acl_broker.url, reconnect_delay=FAST).start()
    try:
        assert bridge.wait_connected(5)
        publish_readings(bridge, range(3))
        publish_readings(bridge, range(3, 6), topic=ANOMALIES)  # denied
        publish_readings(bridge, range(6, 8))
        assert bridge.flush(5), bridge.stats()
        assert watcher.wait_for(5, READINGS)
    finally:
        final = bridge.close(timeout=0)
        watcher.stop()
    assert (final.published, final.rejected, final.unaccounted) == (5, 3, 0)
    assert watcher.seqs() == [0, 1, 2, 6, 7]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # the first denial at once, the other two summed up at close
    assert ANOMALIES in errors[0] and "Not authorized" in errors[0]
    assert acl_broker.url in errors[0]
    assert "refused 2 more message(s) on " + ANOMALIES in errors[1]


def test_with_mqtt_3_1_1_mosquitto_acknowledges_a_denied_message(acl_broker):
    """The limit of 3.1.1, pinned: Mosquitto acks and drops; the bridge cannot know."""
    watcher = Watcher(acl_broker.port).start()
    bridge = new_bridge(acl_broker.url, protocol="3.1.1", reconnect_delay=FAST).start()
    try:
        assert bridge.wait_connected(5)
        publish_readings(bridge, range(2), topic=ANOMALIES)  # denied, silently
        publish_readings(bridge, range(2, 4))
        assert bridge.flush(5)
        assert watcher.wait_for(2)
    finally:
        final = bridge.close(timeout=0)
        watcher.stop()
    assert watcher.seqs() == [2, 3]  # the denied two never arrived
    assert (final.published, final.rejected) == (4, 0)  # yet were acknowledged
