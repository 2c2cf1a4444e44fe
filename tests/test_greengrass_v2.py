"""The Greengrass V2 backend against the installed awsiotsdk IPC client and a fake nucleus.

The components run under the access control ``deploy v2 plan`` generates for them
(``generated_group``), which the nucleus enforces as the real one does; a test
about another policy says which.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
from typing import Iterator

import pytest

pytest.importorskip("awsiot.greengrasscoreipc.clientv2")

from awsiot.eventstreamrpc import SerializeError  # noqa: E402
from awsiot.greengrasscoreipc import model  # noqa: E402
from generated_group import component_name, v2_plan  # noqa: E402
from helpers import wait_until  # noqa: E402
from nucleus_authorization import ANY, MQTT_PROXY, PUBSUB  # noqa: E402
from v2_nucleus import (  # noqa: E402
    GET_SECRET_VALUE,
    PUBLISH_TO_IOT_CORE,
    PUBLISH_TO_TOPIC,
    SUBSCRIBE_TO_TOPIC,
    FakeNucleus,
)

from agent import schema  # noqa: E402
from agent.errors import (  # noqa: E402
    GreengrassError,
    MessageError,
    PublishError,
    RuntimeUnavailable,
    SecretError,
)
from agent.greengrass import open_runtime  # noqa: E402
from agent.greengrass.v2 import GreengrassV2Runtime  # noqa: E402
from agent.topology import (  # noqa: E402
    ANOMALY_FUNCTION_ID,
    DEFAULT_ANOMALY_TOPIC,
    DEFAULT_READINGS_TOPIC,
    SENSOR_FUNCTION_ID,
    GroupTopology,
    Subscription,
    default_topology,
)

SECRET_NAME = "greengrass-snow-creds"
SECRET_VALUE = '{"username": "edge-agent", "password": "s3cr3t-Pa55word"}'
READING = {"schema": schema.READING_SCHEMA, "device": "pi-kitchen", "seq": 1, "temperature": 22.5}
EVENT = {"schema": schema.ANOMALY_SCHEMA, "event": "breach", "episode_id": "pi:humidity:upper:1"}
PLAN = v2_plan()
SENSOR = component_name(PLAN, SENSOR_FUNCTION_ID)
ANOMALY = component_name(PLAN, ANOMALY_FUNCTION_ID)
# A test's own component, allowed every pub/sub and IoT Core operation: for checks of the
# request model, which the nucleus makes after authorizing.
PERMISSIVE = "com.example.Permissive"
ALLOW_ALL = {
    service: {"all": {"operations": [ANY], "resources": [ANY]}} for service in (MQTT_PROXY, PUBSUB)
}


@contextlib.contextmanager
def ipc_error(error_type: type, pattern: str) -> Iterator[None]:
    """Like pytest.raises(match=...) for model errors, whose text is in ``.message``."""
    with pytest.raises(error_type) as info:
        yield
    assert re.search(pattern, info.value.message), info.value.message


class Inbox:
    """A message handler that records (message, topic) and can be waited on.

    Events reach a subscriber over its own connection, so they may arrive just
    after the publisher's call returns: wait for them.
    """

    def __init__(self) -> None:
        self.received = []
        self.arrived = threading.Event()
        self._changed = threading.Condition()

    def __call__(self, message, topic):
        with self._changed:
            self.received.append((message, topic))
            self.arrived.set()
            self._changed.notify_all()

    def wait(self, count: int = 1, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.received) >= count, timeout)


@pytest.fixture
def nucleus():
    with FakeNucleus(secrets={SECRET_NAME: SECRET_VALUE}) as nucleus:
        nucleus.deploy(PLAN)
        nucleus.access_control(PERMISSIVE, ALLOW_ALL)
        yield nucleus


@pytest.fixture
def sensor(nucleus):
    runtime = GreengrassV2Runtime(SENSOR_FUNCTION_ID, ipc_client=nucleus.client(SENSOR))
    yield runtime
    runtime.close()


@pytest.fixture
def anomaly(nucleus):
    runtime = GreengrassV2Runtime(ANOMALY_FUNCTION_ID, ipc_client=nucleus.client(ANOMALY))
    yield runtime
    runtime.close()


# -- publish: routing by the topology ------------------------------------------


def test_readings_go_to_iot_core_only(nucleus, sensor):
    sensor.publish(DEFAULT_READINGS_TOPIC, READING)

    [publication] = nucleus.iot_core[DEFAULT_READINGS_TOPIC]
    assert publication.payload == schema.encode(READING)
    assert publication.qos == model.QOS.AT_LEAST_ONCE == "1"
    assert publication.component == SENSOR
    assert nucleus.local == {}
    assert sensor.destinations(DEFAULT_READINGS_TOPIC) == (True, [])
    assert sensor.name == "v2"


def test_anomaly_events_go_to_iot_core_and_local_pubsub(nucleus, sensor, anomaly):
    inbox = Inbox()
    anomaly.subscribe(DEFAULT_ANOMALY_TOPIC, inbox)

    sensor.publish(DEFAULT_ANOMALY_TOPIC, EVENT)

    assert nucleus.iot_core_messages(DEFAULT_ANOMALY_TOPIC) == [EVENT]
    assert nucleus.local_messages(DEFAULT_ANOMALY_TOPIC) == [EVENT]
    assert inbox.wait(1)
    assert inbox.received == [(EVENT, DEFAULT_ANOMALY_TOPIC)]
    assert sensor.destinations(DEFAULT_ANOMALY_TOPIC) == (True, [ANOMALY_FUNCTION_ID])


def test_unrouted_topic_publishes_nothing_and_warns_once(nucleus, sensor, anomaly, caplog):
    caplog.set_level(logging.DEBUG, logger="agent.greengrass.v2")

    for _ in range(3):
        sensor.publish("IoTBlog/unknown", READING)
    anomaly.publish(DEFAULT_READINGS_TOPIC, READING)  # the anomaly function is no source of it

    assert nucleus.requests == []
    warnings = [r for r in caplog.records if "no subscription" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING, logging.WARNING]
    assert "'IoTBlog/unknown'" in warnings[0].getMessage()
    assert sensor.unrouted == {"IoTBlog/unknown": 3}
    assert anomaly.unrouted == {DEFAULT_READINGS_TOPIC: 1}


def test_routing_follows_the_topology_with_wildcards(nucleus):
    # What a deployment of this topology would allow (IoT Core policies take MQTT
    # wildcards; local pub/sub ones only the glob).
    nucleus.grant("plant", MQTT_PROXY, PUBLISH_TO_IOT_CORE, "plant/+/temp")
    nucleus.grant("plant", PUBSUB, PUBLISH_TO_TOPIC, "plant/*")
    topology = GroupTopology(
        name="t",
        functions=default_topology().functions,
        subscriptions=(
            Subscription("all-to-cloud", "sensor", "plant/+/temp", "cloud"),
            Subscription("all-local", "sensor", "plant/#", "anomaly"),
        ),
    )
    runtime = GreengrassV2Runtime("sensor", topology=topology, ipc_client=nucleus.client("plant"))

    runtime.publish("plant/a/temp", READING)
    runtime.publish("plant/a/humidity", READING)

    assert list(nucleus.iot_core) == ["plant/a/temp"]
    assert list(nucleus.local) == ["plant/a/temp", "plant/a/humidity"]
    runtime.close()


def test_default_topology_is_used(nucleus):
    runtime = GreengrassV2Runtime("sensor", ipc_client=nucleus.client())

    assert runtime.topology == default_topology()
    runtime.close()


def test_unknown_function_id_warns(nucleus, caplog):
    GreengrassV2Runtime("nobody", ipc_client=nucleus.client()).close()

    assert "'nobody' is not a function of group" in caplog.text


def test_unserialisable_message_is_a_message_error(nucleus, sensor):
    with pytest.raises(MessageError, match=DEFAULT_ANOMALY_TOPIC):
        sensor.publish(DEFAULT_ANOMALY_TOPIC, dict(EVENT, value=math.inf))

    assert nucleus.requests == []


def test_refused_publish_is_a_publish_error_naming_the_topic(nucleus, sensor):
    nucleus.deny(PUBLISH_TO_IOT_CORE)

    with pytest.raises(PublishError) as info:
        sensor.publish(DEFAULT_READINGS_TOPIC, dict(READING, device="payload-marker"))

    text = str(info.value)
    assert isinstance(info.value, OSError)
    assert DEFAULT_READINGS_TOPIC in text and "UnauthorizedError" in text
    assert "payload-marker" not in text
    assert isinstance(info.value.__cause__, model.UnauthorizedError)


def test_one_failed_leg_does_not_stop_the_other(nucleus, sensor, anomaly, caplog):
    inbox = Inbox()
    anomaly.subscribe(DEFAULT_ANOMALY_TOPIC, inbox)
    nucleus.fail_next(PUBLISH_TO_IOT_CORE, model.ServiceError(message="spooler full"))

    # The local leg reached the anomaly function: no error, so the sensor does not
    # resend it and hold back later events; the lost cloud copy is logged.
    sensor.publish(DEFAULT_ANOMALY_TOPIC, EVENT)

    assert inbox.wait(1)
    assert inbox.received == [(EVENT, DEFAULT_ANOMALY_TOPIC)]
    assert nucleus.iot_core == {}
    assert "IoT Core (ServiceError: spooler full); delivered to local pub/sub" in caplog.text


def test_a_failed_local_leg_is_an_error_even_if_iot_core_got_it(nucleus, sensor):
    nucleus.fail_next(PUBLISH_TO_TOPIC, model.ServiceError(message="broken"))
    with pytest.raises(PublishError, match="local pub/sub .*broken.*delivered to IoT Core"):
        sensor.publish(DEFAULT_ANOMALY_TOPIC, EVENT)


# -- the fake enforces the SDK and the model ---------------------------------


def test_fake_client_is_the_real_sdk_signature(nucleus):
    client = nucleus.client()

    with pytest.raises(TypeError):
        client.publish_to_iot_core(DEFAULT_READINGS_TOPIC, "1", b"{}")  # keyword-only
    with pytest.raises(TypeError):
        client.publish_to_iot_core(topicName=DEFAULT_READINGS_TOPIC, qos="1", payload=b"{}")
    with pytest.raises(TypeError):
        client.get_secret_value(secretId=SECRET_NAME)
    assert nucleus.requests == []


def test_fake_validates_qos_and_topics(nucleus):
    client = nucleus.client(PERMISSIVE)

    with ipc_error(model.InvalidArgumentsError, "qos must be str"):
        client.publish_to_iot_core(topic_name="a", qos=1, payload=b"{}")
    with ipc_error(model.InvalidArgumentsError, "qos must be one of"):
        client.publish_to_iot_core(topic_name="a", qos="2", payload=b"{}")
    with ipc_error(model.InvalidArgumentsError, "qos is required"):
        client.publish_to_iot_core(topic_name="a", payload=b"{}")
    with ipc_error(model.InvalidArgumentsError, "invalid publish topic"):
        client.publish_to_iot_core(topic_name="a/#", qos="0", payload=b"{}")
    with ipc_error(model.InvalidArgumentsError, "receive_mode"):
        client.subscribe_to_topic(topic="a", receive_mode="ALL", on_stream_event=print)
    with ipc_error(model.InvalidArgumentsError, "'#'"):
        client.subscribe_to_topic(topic="a/#/b", on_stream_event=print)
    assert nucleus.iot_core == {}


def test_fake_validates_publish_messages_against_the_model(nucleus):
    client = nucleus.client(PERMISSIVE)

    with pytest.raises(SerializeError):  # not a PublishMessage: the SDK cannot serialise it
        client.publish_to_topic(topic="a", publish_message={"json_message": {"message": {}}})
    with ipc_error(model.InvalidArgumentsError, "exactly one"):
        client.publish_to_topic(
            topic="a",
            publish_message=model.PublishMessage(
                json_message=model.JsonMessage(message={}),
                binary_message=model.BinaryMessage(message=b"{}"),
            ),
        )
    with ipc_error(model.InvalidArgumentsError, "json_message.message must be"):
        client.publish_to_topic(
            topic="a",
            publish_message=model.PublishMessage(json_message=model.JsonMessage(message=[1, 2])),
        )
    assert nucleus.local == {}


# -- subscribe -----------------------------------------------------------------


def test_subscriber_receives_local_messages_with_the_concrete_topic(nucleus, sensor, anomaly):
    nucleus.grant(ANOMALY, PUBSUB, SUBSCRIBE_TO_TOPIC, "IoTBlog/#")  # the filter, literally
    inbox = Inbox()
    anomaly.subscribe("IoTBlog/#", inbox)

    sensor.publish(DEFAULT_ANOMALY_TOPIC, EVENT)
    sensor.publish(DEFAULT_READINGS_TOPIC, READING)  # IoT Core only: not local

    assert inbox.wait(1)
    assert inbox.received == [(EVENT, DEFAULT_ANOMALY_TOPIC)]
    assert nucleus.requests[0][1] == SUBSCRIBE_TO_TOPIC


def test_binary_json_messages_are_decoded(nucleus, anomaly):
    inbox = Inbox()
    anomaly.subscribe(DEFAULT_ANOMALY_TOPIC, inbox)

    nucleus.client(PERMISSIVE).publish_to_topic(
        topic=DEFAULT_ANOMALY_TOPIC,
        publish_message=model.PublishMessage(
            binary_message=model.BinaryMessage(message=schema.encode(EVENT))
        ),
    )

    assert inbox.wait(1)
    assert inbox.received == [(EVENT, DEFAULT_ANOMALY_TOPIC)]


def test_malformed_messages_are_logged_and_do_not_close_the_subscription(
    nucleus, sensor, anomaly, caplog, capsys
):
    inbox = Inbox()
    anomaly.subscribe(DEFAULT_ANOMALY_TOPIC, inbox)
    other = nucleus.client(PERMISSIVE)

    def publish_binary(body: bytes) -> None:
        other.publish_to_topic(
            topic=DEFAULT_ANOMALY_TOPIC,
            publish_message=model.PublishMessage(binary_message=model.BinaryMessage(message=body)),
        )

    publish_binary(b"not json")
    publish_binary(b"[1, 2, 3]")
    publish_binary(b"\xff\xfe")
    assert nucleus.deliver_raw(DEFAULT_ANOMALY_TOPIC, {}) == 1  # an empty union
    nucleus.deliver_raw(DEFAULT_ANOMALY_TOPIC, b"{truncated")  # the SDK cannot deserialise it
    sensor.publish(DEFAULT_ANOMALY_TOPIC, EVENT)

    assert inbox.wait(1)
    assert inbox.received == [(EVENT, DEFAULT_ANOMALY_TOPIC)]
    reasons = [r.getMessage() for r in caplog.records if r.name == "agent.greengrass.v2"]
    assert any("not JSON" in r for r in reasons)
    assert any("must be a JSON object" in r for r in reasons)
    assert any("not UTF-8" in r for r in reasons)
    assert any("neither json_message nor binary_message" in r for r in reasons)
    assert any("DeserializeError" in r for r in reasons)
    assert nucleus.subscriptions(DEFAULT_ANOMALY_TOPIC) == [DEFAULT_ANOMALY_TOPIC]
    assert "Traceback" not in capsys.readouterr().err  # nothing escaped into the SDK


def test_handler_exceptions_are_logged_not_raised(nucleus, sensor, anomaly, caplog, capsys):
    seen = []

    def handler(message, topic):
        seen.append(message["seq"])
        if len(seen) == 1:
            raise RuntimeError("handler bug")

    anomaly.subscribe(DEFAULT_ANOMALY_TOPIC, handler)
    sensor.publish(DEFAULT_ANOMALY_TOPIC, dict(EVENT, seq=0))
    sensor.publish(DEFAULT_ANOMALY_TOPIC, dict(EVENT, seq=1))

    assert wait_until(lambda: seen == [0, 1]), seen
    assert "handler for 'IoTBlog/anomaly' failed" in caplog.text
    assert "RuntimeError: handler bug" in caplog.text
    assert "Traceback" not in capsys.readouterr().err


def test_delivery_on_the_sdk_executor_thread(nucleus, sensor):
    runtime = GreengrassV2Runtime(
        ANOMALY_FUNCTION_ID, ipc_client=nucleus.client(ANOMALY, executor=True)
    )
    inbox = Inbox()
    runtime.subscribe(DEFAULT_ANOMALY_TOPIC, inbox)

    sensor.publish(DEFAULT_ANOMALY_TOPIC, EVENT)

    assert inbox.arrived.wait(5)
    assert inbox.wait(1)
    assert inbox.received == [(EVENT, DEFAULT_ANOMALY_TOPIC)]
    runtime.close()


def test_refused_subscription_is_an_os_error(nucleus, anomaly):
    nucleus.deny(SUBSCRIBE_TO_TOPIC, DEFAULT_ANOMALY_TOPIC)

    with pytest.raises(GreengrassError, match="subscribe to 'IoTBlog/anomaly'.*UnauthorizedError"):
        anomaly.subscribe(DEFAULT_ANOMALY_TOPIC, Inbox())
    assert nucleus.subscriptions() == []


def test_close_ends_subscriptions_and_connection(nucleus, caplog):
    client = nucleus.client(ANOMALY)
    runtime = GreengrassV2Runtime(ANOMALY_FUNCTION_ID, ipc_client=client)
    runtime.subscribe(DEFAULT_ANOMALY_TOPIC, Inbox())
    assert nucleus.subscriptions() == [DEFAULT_ANOMALY_TOPIC]

    runtime.close()
    runtime.close()

    assert wait_until(lambda: nucleus.subscriptions() == [])
    assert wait_until(lambda: nucleus.connections[-1].closed)
    assert "closed the subscription" not in caplog.text  # we closed it, no false alarm
    sensor = GreengrassV2Runtime(SENSOR_FUNCTION_ID, ipc_client=client)
    with pytest.raises(PublishError, match="ConnectionClosedError"):
        sensor.publish(DEFAULT_READINGS_TOPIC, READING)


# -- secrets -------------------------------------------------------------------


def test_get_secret_returns_the_secret_string(nucleus, anomaly):
    assert anomaly.get_secret(SECRET_NAME) == SECRET_VALUE
    assert nucleus.secret_requests[-1]["secret_id"] == SECRET_NAME
    # refresh is only sent when asked for: older nuclei do not know it.
    assert nucleus.secret_requests[-1]["refresh"] is None
    assert nucleus.requests[-1][2] == {"secretId": SECRET_NAME}


def test_get_secret_refresh(nucleus, anomaly):
    assert anomaly.get_secret(SECRET_NAME, refresh=True) == SECRET_VALUE
    assert nucleus.secret_requests[-1]["refresh"] is True


def test_get_secret_by_arn_and_binary(nucleus, anomaly):
    arn = nucleus.add_secret(SECRET_NAME, SECRET_VALUE.encode("utf-8")).arn

    assert anomaly.get_secret(arn) == SECRET_VALUE
    assert nucleus.requests[-1][2] == {"secretId": arn}


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda n: n.deny(GET_SECRET_VALUE), "not authorised.*UnauthorizedError"),
        (lambda n: n.secrets.clear(), "not found on this core.*ResourceNotFoundError"),
        (
            lambda n: n.fail_next(GET_SECRET_VALUE, model.ServiceError(message="boom")),
            "ServiceError: boom",
        ),
    ],
)
def test_secret_errors_name_the_id_not_the_value(nucleus, anomaly, setup, expected):
    setup(nucleus)

    with pytest.raises(SecretError, match=expected) as info:
        anomaly.get_secret(SECRET_NAME)

    assert SECRET_NAME in str(info.value)
    assert SECRET_VALUE not in str(info.value) and "s3cr3t" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_missing_secret_id_is_refused(nucleus, anomaly):
    with ipc_error(model.InvalidArgumentsError, "secret_id is required"):
        nucleus.client().get_secret_value()
    with pytest.raises(SecretError, match="InvalidArgumentsError: secret_id is required"):
        anomaly.get_secret(None)  # type: ignore[arg-type]


# -- off a nucleus ---------------------------------------------------------------


def test_off_nucleus_is_runtime_unavailable(monkeypatch):
    monkeypatch.delenv("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", raising=False)
    monkeypatch.delenv("SVCUID", raising=False)

    with pytest.raises(RuntimeUnavailable, match="EDGE_AGENT_RUNTIME=local") as info:
        open_runtime("sensor", backend="v2")

    assert "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT is not set" in str(info.value)


def test_missing_nucleus_socket_is_runtime_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", str(tmp_path / "no"))
    monkeypatch.setenv("SVCUID", "uid")

    with pytest.raises(RuntimeUnavailable, match="cannot connect to the nucleus IPC socket"):
        GreengrassV2Runtime("sensor")


# -- on a nucleus: connecting as a component does ----------------------------------


def test_a_component_connects_from_the_nucleus_environment(nucleus, monkeypatch):
    for name, value in nucleus.environ(SENSOR).items():
        monkeypatch.setenv(name, value)

    runtime = open_runtime(SENSOR_FUNCTION_ID, backend="v2")  # GreengrassCoreIPCClientV2()
    try:
        runtime.publish(DEFAULT_READINGS_TOPIC, READING)
    finally:
        runtime.close()

    [publication] = nucleus.iot_core[DEFAULT_READINGS_TOPIC]
    assert publication.component == SENSOR
    assert publication.json() == READING


def test_a_wrong_svcuid_is_refused_by_the_nucleus(nucleus, monkeypatch):
    monkeypatch.setenv("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", nucleus.socket_path)
    monkeypatch.setenv("SVCUID", "not-a-token-the-nucleus-gave")

    with pytest.raises(RuntimeUnavailable, match="AccessDeniedError"):
        GreengrassV2Runtime(SENSOR_FUNCTION_ID)
