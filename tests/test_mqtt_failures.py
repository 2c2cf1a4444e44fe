"""What the bridge says and counts when the broker is wrong, down or refusing.

Real faults against a real Mosquitto on a free port: certificates from another
CA, an expired client certificate, a broker certificate for another host, no
broker at all, a broker that refuses the client, a broker that starts late or
restarts. Each test asserts what a user sees without -v (the bridge's WARNING
and ERROR lines: the broker's address and the reason, once) and that every
message handed to the bridge is counted.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest
from helpers import wait_until
from mosquitto import Mosquitto, free_port
from mqtt_helpers import (
    BRIDGE_LOG,
    FAST,
    READINGS,
    Watcher,
    loud_lines,
    make_local_ca,
    new_bridge,
    publish_readings,
    reading,
    tls_listener,
)
from mqtt_pki import TestPKI, bundle

QUICK = (0.05, 0.1)  # many attempts in a short test


@pytest.fixture
def local_ca(tmp_path):
    return make_local_ca.make_local_ca(tmp_path / "certs", "pi-test", free_port())


@pytest.fixture
def tls_broker(tmp_path, local_ca):
    server = Mosquitto(
        tmp_path / "tls-broker",
        port=local_ca.port,
        listener_settings=tls_listener(local_ca.ca, local_ca.broker_cert, local_ca.broker_key),
        allow_anonymous=False,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def log(caplog):
    caplog.set_level(logging.DEBUG, logger=BRIDGE_LOG)
    return caplog


def failing_attempts(url: str, log, *, attempts: int = 4, **options) -> tuple:
    """Start a bridge, hand it 20 readings, let it fail ``attempts`` times, close it."""
    bridge = new_bridge(url, reconnect_delay=QUICK, **options).start()
    try:
        publish_readings(bridge, range(20))
        assert wait_until(lambda: bridge.stats().connect_failures >= attempts, 10), bridge.stats()
        assert not bridge.connected
    finally:
        final = bridge.close(timeout=0.2)
    return final, loud_lines(log.records)


def assert_lost_and_said_once(final, lines, *reason_parts: str) -> str:
    """Every message counted as lost; the failure shown once, with the broker and the reason."""
    assert final.published == 0 and final.lost == 20 and final.unaccounted == 0, final
    failures = [line for line in lines if line.startswith("cannot connect to")]
    assert len(failures) == 1, lines  # once, however many attempts
    assert final.broker in failures[0]
    for part in reason_parts:
        assert part in failures[0], failures[0]
    assert final.last_error and final.last_error.startswith(f"cannot connect to {final.broker}")
    assert any("20 message(s)" in line and "lost" in line for line in lines), lines
    return failures[0]


def test_a_broker_certificate_from_another_ca(tls_broker, tmp_path, log):
    other = make_local_ca.make_local_ca(tmp_path / "other", "pi-test", tls_broker.port)
    final, lines = failing_attempts(
        tls_broker.tls_url,
        log,
        ca=str(other.ca),
        cert=str(other.device_cert),
        key=str(other.device_key),
    )
    assert_lost_and_said_once(
        final, lines, "TLS: the broker's certificate is not signed by the CA in " + str(other.ca)
    )


def test_an_expired_client_certificate(tmp_path, local_ca, log):
    pki = TestPKI(tmp_path / "pki")
    cert, key = pki.issue("expired-device", "pi-test", valid_days=(-30, -1))
    trusted = bundle(tmp_path / "broker-cas.pem", local_ca.ca, pki.ca_path)
    broker = Mosquitto(
        tmp_path / "broker",
        port=local_ca.port,
        listener_settings=tls_listener(trusted, local_ca.broker_cert, local_ca.broker_key),
        allow_anonymous=False,
    )
    with broker:
        final, lines = failing_attempts(
            broker.tls_url, log, ca=str(local_ca.ca), cert=str(cert), key=str(key)
        )
    # TLS 1.3 (Mosquitto's tls_version is a minimum): the broker's "certificate expired"
    # alert comes after the handshake, and may be lost in the reset when it closes.
    line = assert_lost_and_said_once(final, lines, f"refused the client certificate {cert}")
    assert "expired" in line


def test_a_broker_certificate_for_another_host(tmp_path, local_ca, log):
    pki = TestPKI(tmp_path / "pki")
    broker_cert, broker_key = pki.issue(
        "broker", "broker.invalid", server=True, dns=["broker.invalid"]
    )
    broker = Mosquitto(
        tmp_path / "broker",
        port=local_ca.port,
        listener_settings=tls_listener(local_ca.ca, broker_cert, broker_key),
        allow_anonymous=False,
    )
    with broker:
        final, lines = failing_attempts(
            broker.tls_url,
            log,
            ca=str(pki.ca_path),
            cert=str(local_ca.device_cert),
            key=str(local_ca.device_key),
        )
    assert_lost_and_said_once(final, lines, "does not name 'localhost'", "Hostname mismatch")


def test_tls_1_3_refusing_a_client_without_a_certificate(tmp_path, local_ca, log):
    # With TLS 1.3 the broker checks the client certificate after the handshake:
    # the refusal comes as an alert on the first read, not from connect().
    broker = Mosquitto(
        tmp_path / "broker",
        port=local_ca.port,
        listener_settings=[
            "tls_version tlsv1.3" if s.startswith("tls_version") else s
            for s in tls_listener(local_ca.ca, local_ca.broker_cert, local_ca.broker_key)
        ],
        allow_anonymous=False,
    )
    with broker:
        final, lines = failing_attempts(broker.tls_url, log, ca=str(local_ca.ca))
    assert_lost_and_said_once(final, lines, "requires a client certificate", "none is given")


def test_no_broker_for_the_whole_run(log):
    url = f"mqtt://127.0.0.1:{free_port()}"
    final, lines = failing_attempts(url, log)
    assert_lost_and_said_once(final, lines, "connection refused", "is the broker running?")


def test_a_broker_that_refuses_the_client(tmp_path, log):
    with Mosquitto(tmp_path / "broker", allow_anonymous=False) as broker:
        final, lines = failing_attempts(broker.url, log)
    refusal = [line for line in lines if line.startswith(f"{broker.url} refused the connection")]
    assert len(refusal) == 1, lines
    assert broker.url in refusal[0] and "Not authorized" in refusal[0]
    assert "client id" in refusal[0]  # what to check
    assert final.lost == 20 and final.unaccounted == 0


def _down_broker_with_a_waiting_subscriber(tmp_path) -> tuple:
    """A broker that is down, and a persistent subscriber that gets what it missed later."""
    broker = Mosquitto(tmp_path / "broker").start()
    watcher = Watcher(broker.port, persistent=True, client_id="late-watcher").start()
    broker.stop()  # the watcher's session and subscription survive in the persistence file
    return broker, watcher


def test_a_broker_that_comes_up_late_is_reported_reached_and_gets_everything(tmp_path, log):
    broker, watcher = _down_broker_with_a_waiting_subscriber(tmp_path)
    bridge = new_bridge(broker.url, client_id="pi-late", reconnect_delay=FAST).start()
    try:
        publish_readings(bridge, range(10))
        assert wait_until(lambda: bridge.stats().connect_failures >= 1)
        broker.start()
        assert bridge.flush(10), bridge.stats()
        assert watcher.wait_for(10, READINGS)
    finally:
        final = bridge.close(timeout=0)
        watcher.stop()
        broker.stop()
    assert sorted(set(watcher.seqs(READINGS))) == list(range(10))
    assert (final.published, final.lost, final.spooled) == (10, 0, 10)
    lines = loud_lines(log.records)
    assert [line for line in lines if "cannot connect" in line][0].startswith(
        f"cannot connect to {broker.url}: connection refused"
    )
    reached = [line for line in lines if line.startswith(f"connected to {broker.url}")]
    assert len(reached) == 1 and "after" in reached[0] and "10 spooled" in reached[0]


def test_a_restart_is_reported_as_lost_then_reconnected(tmp_path, log):
    with Mosquitto(tmp_path / "broker") as broker:
        bridge = new_bridge(broker.url, reconnect_delay=FAST).start()
        try:
            assert bridge.wait_connected(5)
            assert not loud_lines(log.records)  # a healthy start says nothing loud
            broker.restart(down_for=0.5)
            assert wait_until(lambda: bridge.stats().reconnects == 1, 10), bridge.stats()
        finally:
            bridge.close(timeout=0)
    lines = loud_lines(log.records)
    assert any(line.startswith(f"lost the connection to {broker.url}") for line in lines)
    assert any(line.startswith(f"reconnected to {broker.url} after") for line in lines)


def test_close_waits_for_a_broker_that_comes_up_in_time_and_loses_nothing(tmp_path):
    broker, watcher = _down_broker_with_a_waiting_subscriber(tmp_path)
    # The first attempt fails; the backoff would wait 6.4 s or more before the next.
    bridge = new_bridge(broker.url, client_id="pi-close", reconnect_delay=(8, 10)).start()
    starter = threading.Timer(0.3, broker.start)
    try:
        publish_readings(bridge, range(30))
        assert wait_until(lambda: bridge.stats().connect_failures >= 1)
        starter.start()  # the broker is up 0.3 s into close()
        final = bridge.close(timeout=4)
        assert watcher.wait_for(30, READINGS)
    finally:
        starter.cancel()
        starter.join()
        watcher.stop()
        broker.stop()
    assert (final.published, final.lost) == (30, 0), final
    assert sorted(set(watcher.seqs(READINGS))) == list(range(30))


def test_every_message_is_published_dropped_rejected_or_lost_and_counted_once(tmp_path):
    """The accounting a run's summary rests on, through overflow, a restart and a close."""
    broker = Mosquitto(tmp_path / "broker").start()
    watcher = Watcher(broker.port, persistent=True, client_id="counting-watcher").start()
    sample = json.dumps(reading(100)).encode()  # every seq here has three digits: one size
    bridge = new_bridge(
        broker.url,
        client_id="pi-count",
        reconnect_delay=FAST,
        spool_limit_bytes=40 * (len(READINGS) + len(sample)),  # room for 40 readings
    ).start()
    try:
        assert bridge.wait_connected(5)
        publish_readings(bridge, range(100, 130))  # bursts no bigger than the spool
        assert bridge.flush(10)

        broker.stop()
        assert wait_until(lambda: not bridge.connected)
        publish_readings(bridge, range(130, 230))  # 100 for a spool of 40: 60 dropped

        broker.start()
        assert bridge.flush(10), bridge.stats()
        publish_readings(bridge, range(230, 260))
        assert bridge.flush(10)

        broker.stop()
        assert wait_until(lambda: not bridge.connected)
        publish_readings(bridge, range(260, 290))  # still spooled at close: lost
        final = bridge.close(timeout=0.5)
        broker.start()
        assert watcher.wait_for(final.published, READINGS)
    finally:
        bridge.close(timeout=0)
        watcher.stop()
        broker.stop()
    assert final.submitted == 190
    assert final.published + final.lost + final.dropped + final.rejected == final.submitted
    assert (final.published, final.dropped, final.lost, final.rejected) == (100, 60, 30, 0)
    received = set(watcher.seqs(READINGS))
    assert received == set(range(100, 130)) | set(range(190, 260))  # the oldest 60 went
