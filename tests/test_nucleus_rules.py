"""The tests' V2 nucleus refuses what the real one refuses (each rule cites its source in
``nucleus_authorization`` and ``nucleus_secrets``), and the components' generated access
control holds under those rules.

The requests are the installed awsiotsdk's, over the nucleus' socket.
"""

from __future__ import annotations

import json
import threading

import pytest

pytest.importorskip("awsiot.greengrasscoreipc.clientv2")

from awsiot.greengrasscoreipc import model  # noqa: E402
from generated_group import THING, component_name, secret_arn, v2_plan  # noqa: E402
from nucleus_authorization import (  # noqa: E402
    ANY,
    MQTT_PROXY,
    PUBSUB,
    SECRET_MANAGER,
    SHADOW_MANAGER,
    compile_resource,
)
from v2_nucleus import (  # noqa: E402
    GET_SECRET_VALUE,
    PUBLISH_TO_IOT_CORE,
    PUBLISH_TO_TOPIC,
    SUBSCRIBE_TO_TOPIC,
    FakeNucleus,
)

from agent.greengrass.v2 import GreengrassV2Runtime  # noqa: E402
from agent.topology import (  # noqa: E402
    ANOMALY_FUNCTION_ID,
    DEFAULT_ANOMALY_TOPIC,
    DEFAULT_READINGS_TOPIC,
    DEFAULT_SECRET_NAME,
    SENSOR_FUNCTION_ID,
)

SECRET_VALUE = '{"username": "edge-agent", "password": "rules-Pa55word"}'
PLAN = v2_plan()
SENSOR = component_name(PLAN, SENSOR_FUNCTION_ID)
ANOMALY = component_name(PLAN, ANOMALY_FUNCTION_ID)
OTHER = "com.example.Other"
SHADOW = "$aws/things/{}/shadow".format(THING)


@pytest.fixture
def nucleus():
    with FakeNucleus(secrets={DEFAULT_SECRET_NAME: SECRET_VALUE}) as nucleus:
        yield nucleus


def unauthorized(call):
    with pytest.raises(model.UnauthorizedError) as info:
        call()
    return info.value.message


def not_found(call):
    with pytest.raises(model.ResourceNotFoundError) as info:
        call()
    return info.value.message


def publish_local(client, topic):
    return client.publish_to_topic(
        topic=topic,
        publish_message=model.PublishMessage(json_message=model.JsonMessage(message={"v": 1})),
    )


def policy(operation, *resources):
    return {"test": {"operations": [operation], "resources": list(resources)}}


def deployed_acl(component, plan=PLAN):
    """The accessControl ``deploy v2 plan`` gives ``component`` (from deployment.json)."""
    update = plan["deployment"]["components"][component]["configurationUpdate"]
    return json.loads(update["merge"])["accessControl"]


# -- deny by default ------------------------------------------------------------------------


REQUESTS = {
    "PublishToIoTCore": lambda c: c.publish_to_iot_core(
        topic_name=DEFAULT_READINGS_TOPIC, qos="1", payload=b"{}"
    ),
    "PublishToTopic": lambda c: publish_local(c, DEFAULT_ANOMALY_TOPIC),
    "SubscribeToTopic": lambda c: c.subscribe_to_topic(
        topic=DEFAULT_ANOMALY_TOPIC, on_stream_event=print
    ),
    "GetSecretValue": lambda c: c.get_secret_value(secret_id=DEFAULT_SECRET_NAME),
    "GetThingShadow": lambda c: c.get_thing_shadow(thing_name=THING, shadow_name=""),
    "UpdateThingShadow": lambda c: c.update_thing_shadow(
        thing_name=THING, shadow_name="", payload=b'{"state": {"reported": {"a": 1}}}'
    ),
}


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_an_operation_no_policy_grants_is_refused(nucleus, operation):
    # AuthorizationHandler.isAuthorized: no permission present, no access.
    text = unauthorized(lambda: REQUESTS[operation](nucleus.client(OTHER)))

    assert text.startswith("Principal {} is not authorized to perform ".format(OTHER))
    assert nucleus.iot_core == {} and nucleus.local == {} and nucleus.secret_requests == []


@pytest.mark.parametrize("operation", sorted(REQUESTS))
def test_a_policy_of_another_service_or_operation_grants_nothing(nucleus, operation):
    nucleus.access_control(
        OTHER,
        {
            MQTT_PROXY: policy("aws.greengrass#SubscribeToIoTCore", ANY),
            PUBSUB: {"none": {"operations": [], "resources": [ANY]}},  # skipped: no operations
            SECRET_MANAGER: policy(GET_SECRET_VALUE),  # no resources: nothing
        },
    )
    unauthorized(lambda: REQUESTS[operation](nucleus.client(OTHER)))


def test_the_deployed_components_may_do_exactly_what_their_policies_list(nucleus):
    nucleus.deploy(PLAN)
    sensor, anomaly = nucleus.client(SENSOR), nucleus.client(ANOMALY)

    sensor.publish_to_iot_core(topic_name=DEFAULT_READINGS_TOPIC, qos="1", payload=b"{}")
    publish_local(sensor, DEFAULT_ANOMALY_TOPIC)
    anomaly.subscribe_to_topic(topic=DEFAULT_ANOMALY_TOPIC, on_stream_event=print)
    REQUESTS["UpdateThingShadow"](sensor)
    unauthorized(lambda: publish_local(sensor, DEFAULT_READINGS_TOPIC))  # IoT Core only
    unauthorized(
        lambda: sensor.publish_to_iot_core(topic_name="IoTBlog/other", qos="1", payload=b"{}")
    )
    unauthorized(lambda: sensor.get_secret_value(secret_id=DEFAULT_SECRET_NAME))
    unauthorized(
        lambda: anomaly.publish_to_iot_core(topic_name=DEFAULT_ANOMALY_TOPIC, qos="1", payload=b"")
    )
    unauthorized(lambda: anomaly.get_thing_shadow(thing_name=THING, shadow_name=""))
    unauthorized(lambda: sensor.get_thing_shadow(thing_name="another-thing", shadow_name=""))


# -- SecretManager: a name is resolved to its ARN before the policy is checked -------------


def test_a_secret_asked_for_by_name_is_allowed_by_a_policy_naming_its_arn(nucleus):
    nucleus.access_control(ANOMALY, deployed_acl(ANOMALY))  # lists the ARN only
    assert deployed_acl(ANOMALY)[SECRET_MANAGER]
    client = nucleus.client(ANOMALY)

    answer = client.get_secret_value(secret_id=DEFAULT_SECRET_NAME)

    assert answer.secret_value.secret_string == SECRET_VALUE
    assert answer.secret_id == secret_arn(DEFAULT_SECRET_NAME)


def test_the_anomaly_component_reads_its_secret_by_name_under_the_generated_deployment(nucleus):
    nucleus.deploy(PLAN)
    runtime = GreengrassV2Runtime(ANOMALY_FUNCTION_ID, ipc_client=nucleus.client(ANOMALY))
    try:
        assert runtime.get_secret(DEFAULT_SECRET_NAME) == SECRET_VALUE
    finally:
        runtime.close()


def test_a_policy_naming_the_secret_by_name_grants_nothing(nucleus):
    nucleus.access_control(ANOMALY, {SECRET_MANAGER: policy(GET_SECRET_VALUE, DEFAULT_SECRET_NAME)})
    client = nucleus.client(ANOMALY)

    text = unauthorized(lambda: client.get_secret_value(secret_id=DEFAULT_SECRET_NAME))
    assert text.endswith("on resource " + secret_arn(DEFAULT_SECRET_NAME))
    unauthorized(lambda: client.get_secret_value(secret_id=secret_arn(DEFAULT_SECRET_NAME)))


def test_a_secret_the_deployment_does_not_list_is_not_configured_whatever_the_policy(nucleus):
    nucleus.deploy(PLAN)
    nucleus.add_secret("greengrass-other", "other value")
    nucleus.access_control(OTHER, {SECRET_MANAGER: policy(GET_SECRET_VALUE, ANY)})
    client = nucleus.client(OTHER)

    # Resolved before authorization: a component without any policy hears the same.
    assert not_found(lambda: client.get_secret_value(secret_id="greengrass-other")) == (
        "Secret not configured greengrass-other"
    )
    assert "Secret not configured" in not_found(
        lambda: nucleus.client("com.example.NoPolicy").get_secret_value(secret_id="x")
    )
    # By ARN it is taken as it is, authorized, then missing from the component's cache.
    text = not_found(lambda: client.get_secret_value(secret_id=secret_arn("greengrass-other")))
    assert text.startswith("Secret not found")


def test_a_listed_secret_the_core_could_not_download_is_resolved_by_its_arn_and_not_found(
    nucleus,
):
    nucleus.deploy(PLAN)
    nucleus.secrets.clear()  # listed in cloudSecrets, never fetched
    client = nucleus.client(ANOMALY)

    text = not_found(lambda: client.get_secret_value(secret_id=DEFAULT_SECRET_NAME))
    assert text == "Secret not found " + DEFAULT_SECRET_NAME


def test_both_a_version_id_and_a_stage_is_a_service_error(nucleus):
    nucleus.deploy(PLAN)
    client = nucleus.client(ANOMALY)

    with pytest.raises(model.ServiceError):
        client.get_secret_value(
            secret_id=DEFAULT_SECRET_NAME, version_id="v", version_stage="AWSCURRENT"
        )


# -- resource patterns: the glob everywhere, MQTT wildcards for IoT Core only --------------


def test_iot_core_policies_take_mqtt_wildcards(nucleus):
    nucleus.access_control(
        OTHER, {MQTT_PROXY: policy(PUBLISH_TO_IOT_CORE, "IoTBlog/#", "site/+/readings")}
    )
    client = nucleus.client(OTHER)
    allowed = ["IoTBlog/anomaly", "IoTBlog/a/b", "IoTBlog", "site/7/readings"]
    for topic in allowed:
        client.publish_to_iot_core(topic_name=topic, qos="0", payload=b"{}")
    for topic in ["IoTBlogs/x", "site/7/8/readings", "site/7/readings/x", "other"]:
        unauthorized(lambda t=topic: client.publish_to_iot_core(topic_name=t, qos="0", payload=b""))

    assert list(nucleus.iot_core) == allowed


def test_local_pubsub_policies_take_mqtt_wildcards_literally(nucleus):
    nucleus.access_control(
        OTHER,
        {
            PUBSUB: {
                "publish": {"operations": [PUBLISH_TO_TOPIC], "resources": ["IoTBlog/#"]},
                "subscribe": {"operations": [SUBSCRIBE_TO_TOPIC], "resources": ["IoTBlog/#"]},
            }
        },
    )
    client = nucleus.client(OTHER)

    unauthorized(lambda: publish_local(client, DEFAULT_ANOMALY_TOPIC))
    unauthorized(lambda: client.subscribe_to_topic(topic="IoTBlog/+", on_stream_event=print))
    client.subscribe_to_topic(topic="IoTBlog/#", on_stream_event=print)  # the filter itself
    nucleus.access_control(OTHER, {PUBSUB: policy(PUBLISH_TO_TOPIC, "IoTBlog/*")})
    publish_local(client, DEFAULT_ANOMALY_TOPIC)
    publish_local(client, "IoTBlog/a/b")  # the glob crosses levels


def test_a_question_mark_or_a_bracket_is_no_wildcard(nucleus):
    nucleus.access_control(
        OTHER,
        {
            PUBSUB: policy(PUBLISH_TO_TOPIC, "IoTBlog/sensor?ata"),  # invalid: not loaded
            MQTT_PROXY: policy(PUBLISH_TO_IOT_CORE, "site/[12]"),  # plain characters
        },
    )
    client = nucleus.client(OTHER)

    unauthorized(lambda: publish_local(client, DEFAULT_READINGS_TOPIC))
    unauthorized(lambda: client.publish_to_iot_core(topic_name="site/1", qos="0", payload=b""))
    client.publish_to_iot_core(topic_name="site/[12]", qos="0", payload=b"")
    assert any("IoTBlog/sensor?ata" in r for r in nucleus.access.rejected)


def test_any_operation_of_a_service(nucleus):
    nucleus.access_control(OTHER, {SHADOW_MANAGER: policy(ANY, "$aws/things/*/shadow")})
    client = nucleus.client(OTHER)

    client.update_thing_shadow(
        thing_name=THING, shadow_name="", payload=b'{"state": {"reported": {"a": 1}}}'
    )
    assert client.get_thing_shadow(thing_name=THING, shadow_name="").payload
    unauthorized(lambda: client.publish_to_iot_core(topic_name="a", qos="0", payload=b""))


@pytest.mark.parametrize(
    "pattern, mqtt, matches, misses",
    [
        ("*", False, ["", "a", "a/b/c"], []),
        ("a/*/c", False, ["a/b/c", "a/b/x/c", "a//c"], ["a/b/d"]),
        ("a/#", False, ["a/#"], ["a", "a/b"]),
        ("a/#", True, ["a", "a/", "a/b", "a/b/c"], ["ab", "b/a"]),
        ("#", True, ["a", "a/b", ""], []),
        ("a/#/c", True, ["a/#/c"], ["a/b/c"]),
        ("a#", True, ["a#"], ["ab"]),
        ("+/b", True, ["a/b", "/b"], ["a/x/b"]),
        ("a/+", True, ["a/b", "a/"], ["a/b/c", "a"]),
        ("a+/b", True, ["a+/b"], ["ab/b"]),
        ("a/+/c", False, ["a/+/c"], ["a/b/c"]),
        ("a/${*}", True, ["a/*"], ["a/b"]),
        ("${$}aws", False, ["$aws"], []),
        ("$aws/things/t/shadow", False, ["$aws/things/t/shadow"], ["$aws/things/u/shadow"]),
    ],
)
def test_resource_patterns_as_the_nucleus_wildcard_trie_reads_them(pattern, mqtt, matches, misses):
    compiled = compile_resource(pattern, mqtt_style=mqtt)
    assert compiled is not None
    assert [m for m in matches if not compiled.fullmatch(m)] == []
    assert [m for m in misses if compiled.fullmatch(m)] == []


@pytest.mark.parametrize("pattern", ["", "a?", "${a}", "${*", "a/${"])
def test_resources_the_nucleus_refuses_to_load(pattern):
    assert compile_resource(pattern, mqtt_style=True) is None


# -- local pub/sub as PubSubIPCEventStreamAgent runs it ----------------------------------------


def test_a_wildcard_subscription_does_not_hear_its_own_messages_unless_asked(nucleus):
    nucleus.access_control(OTHER, {PUBSUB: policy(ANY, ANY)})  # publish, subscribe anything
    client = nucleus.client(OTHER)
    heard = {"wildcard": [], "exact": []}
    got = threading.Event()

    def listener(name):
        def on_event(event):
            heard[name].append(event.json_message.context.topic)
            got.set()

        return on_event

    client.subscribe_to_topic(topic="IoTBlog/+", on_stream_event=listener("wildcard"))
    client.subscribe_to_topic(topic=DEFAULT_ANOMALY_TOPIC, on_stream_event=listener("exact"))
    publish_local(client, DEFAULT_ANOMALY_TOPIC)

    assert got.wait(5)
    assert heard == {"wildcard": [], "exact": [DEFAULT_ANOMALY_TOPIC]}


def test_a_local_publish_topic_with_a_glob_is_invalid(nucleus):
    nucleus.access_control(OTHER, {PUBSUB: policy(ANY, ANY)})

    with pytest.raises(model.InvalidArgumentsError):
        publish_local(nucleus.client(OTHER), "IoTBlog/*")
    assert nucleus.local == {}


# -- a thing group's deployment --------------------------------------------------------------


def test_a_thing_group_deployment_names_each_cores_own_shadow(nucleus):
    plan = v2_plan(thing_group="pis")  # deploy v2 plan --thing-group pis
    acl = deployed_acl(SENSOR, plan)
    assert "{iot:thingName}" in str(acl[SHADOW_MANAGER])
    nucleus.deploy(plan, thing="pi-in-a-group")
    client = nucleus.client(SENSOR)

    client.update_thing_shadow(
        thing_name="pi-in-a-group", shadow_name="", payload=b'{"state": {"reported": {"a": 1}}}'
    )
    unauthorized(lambda: client.get_thing_shadow(thing_name=THING, shadow_name=""))
