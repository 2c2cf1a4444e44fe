"""The tests' V1 core refuses what a real V1 core refuses (each rule cites its source in
``v1_group`` and ``v1_core``), for a group ``deploy v1 plan`` generates.

The requests are the installed greengrasssdk's, over the core's HTTP endpoint.
"""

from __future__ import annotations

import pytest

pytest.importorskip("greengrasssdk")

from generated_group import v1_definitions  # noqa: E402
from v1_core import MAX_MESSAGE_BYTES, V1CoreStandIn  # noqa: E402
from v1_group import V1Group, one_function_group  # noqa: E402

from agent.names import ROUTES_VARIABLE  # noqa: E402
from agent.topology import (  # noqa: E402
    ANOMALY_FUNCTION_ID,
    DEFAULT_ANOMALY_TOPIC,
    DEFAULT_READINGS_TOPIC,
    DEFAULT_SECRET_NAME,
    SENSOR_FUNCTION_ID,
)

SECRET_VALUE = '{"username": "edge-agent", "password": "rules-v1-Pa55word"}'
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:plant-monitor:live"


def sdk_client(name):
    import greengrasssdk

    return greengrasssdk.client(name)


def test_a_message_no_subscription_routes_is_dropped_without_a_word():
    with V1CoreStandIn() as core, core.installed():  # the sensor function of the default group
        iot_data = sdk_client("iot-data")
        iot_data.publish(topic="IoTBlog/unknown", payload=b'{"a": 1}')  # no error
        iot_data.publish(topic=DEFAULT_READINGS_TOPIC, payload=b'{"a": 2}')

    assert list(core.published) == [DEFAULT_READINGS_TOPIC]
    assert [p.topic for p in core.unrouted] == ["IoTBlog/unknown"]


def test_only_the_publishers_own_subscriptions_route_its_messages():
    with V1CoreStandIn(ANOMALY_FUNCTION_ID) as core, core.installed():
        sdk_client("iot-data").publish(topic=DEFAULT_READINGS_TOPIC, payload=b"{}")

    assert core.published == {}  # readings are routed from the sensor, not from here


def test_messages_go_to_every_target_their_subscriptions_name():
    with V1CoreStandIn(SENSOR_FUNCTION_ID) as core, core.installed():
        sdk_client("iot-data").publish(topic=DEFAULT_ANOMALY_TOPIC, payload=b"{}")

    [publication] = core.published[DEFAULT_ANOMALY_TOPIC]
    group = core.group
    assert set(publication.targets) == {"cloud", group.function_arn(ANOMALY_FUNCTION_ID)}


@pytest.mark.parametrize(
    "subject, routed, dropped",
    [
        ("plant/+/temp", ["plant/a/temp", "plant/b/temp"], ["plant/a/b/temp", "plant/temp"]),
        ("site/#", ["site", "site/x", "site/x/y"], ["sites", "other/site"]),
        ("a/b", ["a/b"], ["a/b/c", "a"]),
    ],
)
def test_plus_matches_one_level_and_hash_the_rest(subject, routed, dropped):
    core = V1CoreStandIn(FUNCTION_ARN, group=one_function_group(FUNCTION_ARN, [subject]))
    with core, core.installed():
        for topic in routed + dropped:
            sdk_client("iot-data").publish(topic=topic, payload=b"{}")

    assert list(core.published) == routed
    assert [p.topic for p in core.unrouted] == dropped


def test_a_secret_is_served_only_to_a_function_it_is_attached_to():
    secrets = {DEFAULT_SECRET_NAME: SECRET_VALUE}
    sensor = V1CoreStandIn(secrets=secrets)  # no secret resource attached to the sensor
    with sensor, sensor.installed(), pytest.raises(Exception, match="error code 404") as info:
        sdk_client("secretsmanager").get_secret_value(SecretId=DEFAULT_SECRET_NAME)
    assert type(info.value).__name__ == "SecretsManagerError"
    with V1CoreStandIn(ANOMALY_FUNCTION_ID, secrets=secrets) as anomaly, anomaly.installed():
        answer = sdk_client("secretsmanager").get_secret_value(SecretId=DEFAULT_SECRET_NAME)

    assert answer["SecretString"] == SECRET_VALUE
    assert answer["ARN"] in anomaly.group.secret_arns(anomaly.function_arn)
    assert sensor.group.secret_arns(sensor.function_arn) == set()


def test_a_secret_of_the_core_that_is_not_the_groups_resource_is_not_served():
    core = V1CoreStandIn(ANOMALY_FUNCTION_ID, secrets={"greengrass-other": "x"})
    with core, core.installed(), pytest.raises(Exception, match="error code 404"):
        sdk_client("secretsmanager").get_secret_value(SecretId="greengrass-other")


def test_a_message_over_128_kb_is_refused():
    with V1CoreStandIn() as core, core.installed():
        iot_data = sdk_client("iot-data")
        iot_data.publish(topic=DEFAULT_READINGS_TOPIC, payload=b"x" * MAX_MESSAGE_BYTES)
        with pytest.raises(Exception, match="413") as info:
            iot_data.publish(topic=DEFAULT_READINGS_TOPIC, payload=b"x" * (MAX_MESSAGE_BYTES + 1))
    assert type(info.value).__name__ == "InvocationException"  # greengrasssdk's own

    assert [len(p.payload) for p in core.published[DEFAULT_READINGS_TOPIC]] == [MAX_MESSAGE_BYTES]


def test_the_function_gets_the_variables_its_definition_routes_it_by():
    definitions = v1_definitions(environment={SENSOR_FUNCTION_ID: {"readingsTopic": "site/r"}})
    group = V1Group.from_definitions(definitions)
    core = V1CoreStandIn(SENSOR_FUNCTION_ID, group=group)
    try:
        assert core.environ[ROUTES_VARIABLE] == group.variables(core.function_arn)[ROUTES_VARIABLE]
        assert '"site/r"' in core.environ[ROUTES_VARIABLE]
        assert core.environ["MY_FUNCTION_ARN"] == core.function_arn
    finally:
        core.close()


def test_a_function_the_group_does_not_have_is_refused():
    with pytest.raises(KeyError, match="not a function of this group"):
        V1CoreStandIn("arn:aws:lambda:us-east-1:123456789012:function:stranger:1")
