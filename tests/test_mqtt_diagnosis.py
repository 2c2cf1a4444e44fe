"""The bridge's pure parts, without a broker: failure texts, log rate limits, backoff, blame."""

from __future__ import annotations

import logging
import socket

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.clock import VirtualClock
from agent.errors import ConfigError
from agent.standalone.mqtt_bridge import BridgeOptions, parse_mqtt_url
from agent.standalone.mqtt_bridge.diagnosis import (
    TlsFiles,
    describe_connect_error,
    describe_early_close,
    describe_refusal,
    is_protocol_refusal,
)
from agent.standalone.mqtt_bridge.reporting import Reporter
from agent.standalone.mqtt_bridge.suspects import Suspects

PLAIN = parse_mqtt_url("mqtt://broker.example:1883?client_id=pi-1")
TLS = parse_mqtt_url("mqtts://broker.example:8883?client_id=pi-1")
NO_CERT = TlsFiles(ca="certs/ca.pem", cert=None)
WITH_CERT = TlsFiles(ca="certs/ca.pem", cert="certs/device.pem")
LOG = "agent.standalone.mqtt_bridge"


def test_a_refused_connection_names_the_broker_and_what_to_check():
    found = describe_connect_error(
        ConnectionRefusedError(111, "Connection refused"), PLAIN, NO_CERT
    )
    assert found.text == (
        "cannot connect to mqtt://broker.example:1883: connection refused: nothing listens on "
        "port 1883 (is the broker running?)"
    )
    again = describe_connect_error(
        ConnectionRefusedError(111, "Connection refused"), PLAIN, NO_CERT
    )
    assert again == found  # the same text and kind every attempt: said once


@pytest.mark.parametrize(
    "error, words",
    [
        (socket.gaierror(-2, "Name or service not known"), "cannot resolve the host name"),
        (socket.timeout("timed out"), "no answer in time"),
        (ConnectionResetError(104, "Connection reset by peer"), "a TLS port? use mqtts://"),
        (OSError(113, "No route to host"), "No route to host"),
    ],
)
def test_network_failures_say_what_happened(error, words):
    found = describe_connect_error(error, PLAIN, NO_CERT)
    assert found.text.startswith("cannot connect to mqtt://broker.example:1883: ")
    assert words in found.text


def test_a_tls_1_3_refusal_is_one_failure_whether_its_alert_arrives_or_not():
    alert = describe_early_close(
        "failed to receive on socket: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert "
        "certificate required (_ssl.c:2580)",
        TLS,
        NO_CERT,
    )
    eof = describe_early_close(
        "failed to receive on socket: EOF occurred in violation of protocol (_ssl.c:2427)",
        TLS,
        NO_CERT,
    )
    assert alert.kind == eof.kind  # reported once, whichever comes first
    for found in (alert, eof):
        assert found.text.startswith("cannot connect to mqtts://broker.example:8883: TLS: ")
        assert "client certificate" in found.text and "none is given" in found.text
        assert "_ssl.c" not in found.text  # no source line numbers in what users read

    expired = describe_early_close(
        "failed to receive on socket: [SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert "
        "certificate expired (_ssl.c:2580)",
        TLS,
        WITH_CERT,
    )
    closed = describe_early_close("", TLS, WITH_CERT)
    assert expired.kind == closed.kind
    assert "refused the client certificate certs/device.pem: it has expired" in expired.text
    assert "refused the client certificate certs/device.pem" in closed.text


def test_a_plain_connection_closed_early_hints_at_tls_and_at_the_client_id():
    found = describe_early_close("", PLAIN, NO_CERT)
    assert found.text.startswith("mqtt://broker.example:1883 closed the connection")
    assert "mqtts://" in found.text and "client id" in found.text


def test_a_refusing_connack_says_what_to_check():
    denied = describe_refusal(ReasonCode(PacketTypes.CONNACK, "Not authorized"), PLAIN)
    assert denied.text.startswith("mqtt://broker.example:1883 refused the connection: ")
    assert "Not authorized" in denied.text and "thing name" in denied.text
    bad_id = describe_refusal(ReasonCode(PacketTypes.CONNACK, "Client identifier not valid"), PLAIN)
    assert "'pi-1'" in bad_id.text
    assert denied.kind != bad_id.kind


def test_only_an_unsupported_protocol_version_makes_the_bridge_fall_back():
    assert is_protocol_refusal(ReasonCode(PacketTypes.CONNACK, "Unsupported protocol version"))
    assert not is_protocol_refusal(ReasonCode(PacketTypes.CONNACK, "Not authorized"))


def test_the_backoff_doubles_to_ten_seconds_at_most():
    options = BridgeOptions("mqtt://broker.example")
    assert options.reconnect_delay == (1.0, 10.0)
    for failures in range(1, 200):
        expected = min(10.0, 2.0 ** (failures - 1))
        delay = options.retry_delay(failures)
        assert 0.8 * expected <= delay <= expected
    assert options.retry_delay(0) <= 1.0  # after a connection that worked: the shortest


@pytest.mark.parametrize(
    "bad",
    [
        {"qos": 2},
        {"reconnect_delay": (5, 1)},
        {"reconnect_delay": (0, 1)},
        {"close_timeout": -1},
        {"keepalive": 1},
        {"protocol": "4.5"},
        {"cert": "d.pem", "key": "d.key"},  # TLS files for a plain URL
    ],
)
def test_bad_options_are_refused_when_made(bad):
    with pytest.raises(ConfigError):
        BridgeOptions("mqtt://broker.example", **bad)


def test_the_same_failure_is_said_once_then_recalled_every_ten_minutes(caplog):
    caplog.set_level(logging.DEBUG, logger=LOG)
    clock = VirtualClock()
    report = Reporter(PLAIN, clock)
    refused = describe_connect_error(ConnectionRefusedError(111, "refused"), PLAIN, NO_CERT)
    for _ in range(30):  # 30 attempts, 10 s apart
        report.connect_failed(refused, waiting=5)
        clock.advance(10)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1 and loud[0].startswith(refused.text)
    for _ in range(40):  # past ten minutes
        report.connect_failed(refused, waiting=5)
        clock.advance(10)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 2 and loud[1].startswith("still cannot connect to mqtt://broker.example")

    report.connected(first=True, waiting=5, client_id="pi-1", protocol="5")
    recovered = caplog.records[-1]
    assert recovered.levelno == logging.WARNING  # seen on the console, like the failure
    assert recovered.getMessage().startswith("connected to mqtt://broker.example:1883 as pi-1")
    assert "after 700.0 s" in recovered.getMessage()

    report.connect_failed(refused, waiting=0)  # a new outage: said again
    assert caplog.records[-1].levelno == logging.WARNING


def test_a_healthy_connection_is_not_loud(caplog):
    caplog.set_level(logging.DEBUG, logger=LOG)
    Reporter(PLAIN, VirtualClock()).connected(first=True, waiting=0, client_id="pi-1", protocol="5")
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_drops_are_logged_at_most_once_a_minute_and_summed_up(caplog):
    caplog.set_level(logging.DEBUG, logger=LOG)
    clock = VirtualClock()
    report = Reporter(PLAIN, clock)
    for total in range(1, 11):
        report.dropped(1, "full", total, 1000)
        clock.advance(1)
    report.unlogged_drops(10)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "dropped 1 message(s)" in lines[0] and "dropped 9 more" in lines[1]


def test_a_message_is_blamed_after_five_lost_connections_in_a_row():
    suspects = Suspects()
    assert not suspects
    assert [suspects.connection_lost(7) for _ in range(5)] == [False] * 4 + [True]
    assert not suspects  # dropped: no longer suspected

    suspects.connection_lost(8)
    assert suspects  # one at a time until the broker answers for it
    suspects.cleared(8)
    assert not suspects

    suspects.connection_lost(9)
    suspects.forget_below(10)  # pushed out of a full spool meanwhile
    assert not suspects


def test_a_connection_that_keeps_dropping_is_loud_once_a_minute(caplog):
    caplog.set_level(logging.DEBUG, logger=LOG)
    clock = VirtualClock()
    report = Reporter(PLAIN, clock)
    for _ in range(30):  # kicked every two seconds, back at once
        report.connection_lost("Session taken over", waiting=1)
        report.connected(first=False, waiting=1, client_id="pi-1", protocol="5")
        clock.advance(2)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 2  # lost, then reconnected, in the first minute only
    assert loud[0].startswith("lost the connection to mqtt://broker.example:1883")
    for _ in range(10):
        report.connection_lost("Session taken over", waiting=1)
        report.connected(first=False, waiting=1, client_id="pi-1", protocol="5")
        clock.advance(2)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 4 and "29 more time(s) since the last report" in loud[2]
