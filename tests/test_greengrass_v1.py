"""The Greengrass V1 backend: the installed greengrasssdk over HTTP to a core's IPC endpoint.

``v1_core.V1CoreStandIn`` is the core's side of the wire, for one function of the
group ``deploy v1 plan`` generates (it routes by the generated subscriptions and
serves a secret only to the function it is attached to); the SDK's client code
is the installed package's own, on stand-ins of the two packages that only a
core has (``tests/stand_ins/v1_core``).
"""

from __future__ import annotations

import io
import logging
import math
from datetime import datetime

import pytest

pytest.importorskip("greengrasssdk")

from generated_group import v1_definitions  # noqa: E402
from v1_core import MAX_MESSAGE_BYTES, V1CoreStandIn  # noqa: E402
from v1_group import V1Group  # noqa: E402

from agent import schema  # noqa: E402
from agent.errors import (  # noqa: E402
    AgentError,
    MessageError,
    RuntimeUnavailable,
    SecretError,
)
from agent.greengrass import ENV_VAR, detect_backend, open_runtime  # noqa: E402
from agent.greengrass.v1 import GreengrassV1Runtime, PublishError  # noqa: E402
from agent.names import ROUTES_VARIABLE  # noqa: E402
from agent.topology import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID  # noqa: E402

SECRET_NAME = "greengrass-snow-creds"
SECRET_VALUE = '{"username": "edge-agent", "password": "s3cr3t-Pa55word"}'
READINGS = "IoTBlog/sensorData"
READING = {
    "schema": schema.READING_SCHEMA,
    "device": "pi-kitchen",
    "seq": 42,
    "ts": 1790000000.0,
    "temperature": 23.41,
    "humidity": 48.2,
    "pressure": None,
}


@pytest.fixture
def core():
    """This test process as the sensor function on a V1 core."""
    with V1CoreStandIn(secrets={SECRET_NAME: SECRET_VALUE}) as core, core.installed():
        yield core


@pytest.fixture
def runtime(core: V1CoreStandIn) -> GreengrassV1Runtime:
    return GreengrassV1Runtime("sensor")  # the installed greengrasssdk, as on a core


@pytest.fixture
def anomaly_core():
    """This test process as the anomaly function: the one the secret is attached to."""
    core = V1CoreStandIn(ANOMALY_FUNCTION_ID, secrets={SECRET_NAME: SECRET_VALUE})
    with core, core.installed():
        yield core


@pytest.fixture
def anomaly_runtime(anomaly_core: V1CoreStandIn) -> GreengrassV1Runtime:
    return GreengrassV1Runtime(ANOMALY_FUNCTION_ID)


def sdk():
    import greengrasssdk

    return greengrasssdk


# -- publish ----------------------------------------------------------------


def test_publish_sends_compact_json_with_all_or_exception(core, runtime):
    runtime.publish(READINGS, READING)

    [publication] = core.published[READINGS]
    assert publication.payload == schema.encode(READING)
    assert publication.json() == READING
    # The SDK maps AllOrException to the router's AllOrError.
    assert publication.queue_full_policy == "AllOrError"
    assert publication.source == core.function_arn
    assert runtime.name == "v1"


def test_clients_are_created_once(core, monkeypatch):
    calls = []
    real_client = sdk().client
    monkeypatch.setattr(sdk(), "client", lambda name: calls.append(name) or real_client(name))
    runtime = GreengrassV1Runtime("sensor")
    for seq in range(3):
        runtime.publish(READINGS, dict(READING, seq=seq))
    with pytest.raises(SecretError, match="404"):  # not attached to the sensor function
        runtime.get_secret(SECRET_NAME)

    assert calls == ["iot-data", "secretsmanager"]
    assert [m["seq"] for m in core.messages(READINGS)] == [0, 1, 2]


def test_full_queue_raises_publish_error_naming_topic_not_payload(core, runtime):
    core.queue_full = True
    message = dict(READING, device="payload-marker-device")

    with pytest.raises(PublishError) as info:
        runtime.publish(READINGS, message)

    assert isinstance(info.value, OSError) and isinstance(info.value, AgentError)
    assert READINGS in str(info.value)
    assert "InvocationException" in str(info.value)
    assert "payload-marker-device" not in str(info.value)
    assert core.published == {} and core.dropped == []


def test_unreachable_core_raises_publish_error(core, runtime):
    core.ipc_reachable = False

    with pytest.raises(OSError, match="Connection refused") as info:
        runtime.publish(READINGS, READING)

    assert READINGS in str(info.value)
    core.ipc_reachable = True  # the core is back: the same clients publish again
    runtime.publish(READINGS, READING)
    assert core.messages(READINGS) == [READING]


def test_unserialisable_message_is_a_message_error(core, runtime):
    with pytest.raises(MessageError, match=READINGS):
        runtime.publish(READINGS, dict(READING, temperature=math.nan))
    with pytest.raises(MessageError):
        runtime.publish(READINGS, dict(READING, ts=datetime(2026, 1, 1)))
    assert core.published == {}


def test_subscribe_is_a_no_op(core, runtime):
    calls = []
    runtime.subscribe("IoTBlog/anomaly", lambda message, topic: calls.append(topic))
    runtime.publish("IoTBlog/anomaly", READING)
    runtime.close()

    assert calls == []


# -- a topic the group does not route ----------------------------------------


def test_an_unrouted_topic_is_counted_and_warned_once_not_taken_as_delivered(core, runtime, caplog):
    caplog.set_level(logging.WARNING, logger="agent.greengrass.v1")
    for seq in range(3):
        runtime.publish("IoTBlog/unknown", dict(READING, seq=seq))
    runtime.publish(READINGS, READING)

    # The core took all four without a word and dropped the three no subscription routes.
    assert [p.topic for p in core.unrouted] == ["IoTBlog/unknown"] * 3
    assert list(core.published) == [READINGS]
    assert runtime.unrouted == {"IoTBlog/unknown": 3}
    [warning] = [r for r in caplog.records if "IoTBlog/unknown" in r.getMessage()]
    assert "no subscription of the deployed group routes 'IoTBlog/unknown'" in warning.getMessage()
    assert "the core drops it" in warning.getMessage()


def test_the_route_table_is_the_deployed_one(tmp_path):
    # deploy v1 plan --env sensor:readingsTopic=site/7/readings: the function's environment
    # names the subjects the group routes from it.
    custom = "site/7/readings"
    definitions = v1_definitions(environment={SENSOR_FUNCTION_ID: {"readingsTopic": custom}})
    group = V1Group.from_definitions(definitions)
    with V1CoreStandIn(group=group) as core, core.installed():
        assert custom in core.environ[ROUTES_VARIABLE]
        runtime = GreengrassV1Runtime(SENSOR_FUNCTION_ID)
        runtime.publish(custom, READING)
        runtime.publish(READINGS, READING)  # the default topic: not routed in this group

    assert core.messages(custom) == [READING]
    assert runtime.unrouted == {READINGS: 1}


def test_without_a_route_table_the_topology_and_the_functions_topics_decide(core):
    runtime = GreengrassV1Runtime(SENSOR_FUNCTION_ID, environ={})  # deployed by other means
    runtime.publish("site/8/readings", READING)  # before the function named its topics
    runtime.route_topics({"readingsTopic": "site/8/readings"})
    runtime.publish("site/8/readings", READING)
    runtime.publish("IoTBlog/unknown", READING)

    assert runtime.unrouted == {"site/8/readings": 1, "IoTBlog/unknown": 1}


def test_a_route_table_that_is_not_a_list_of_topics_is_an_error_not_a_crash(core, caplog):
    runtime = GreengrassV1Runtime(SENSOR_FUNCTION_ID, environ={ROUTES_VARIABLE: "IoTBlog/#"})
    runtime.publish(READINGS, READING)

    assert runtime.unrouted == {}
    assert "EDGE_AGENT_ROUTES is not a JSON list of topics" in caplog.text
    assert core.messages(READINGS) == [READING]


def test_a_message_over_128_kb_is_a_publish_error_naming_the_topic(core, runtime):
    runtime.publish(READINGS, {"pad": "x" * (MAX_MESSAGE_BYTES - len('{"pad":""}'))})
    with pytest.raises(PublishError, match=READINGS + ".*413"):
        runtime.publish(READINGS, {"pad": "x" * MAX_MESSAGE_BYTES})

    [publication] = core.published[READINGS]
    assert len(publication.payload) == MAX_MESSAGE_BYTES


# -- the SDK's own checks, and what crosses the wire ----------------------------


def test_publish_goes_over_http_with_the_functions_token(core, runtime):
    runtime.publish(READINGS, READING)

    [(method, path, headers)] = core.requests
    assert method == "POST"
    assert path == "/2016-11-01/functions/arn:aws:lambda:::function:GGRouter"
    assert headers["Authorization"] == core.token
    assert headers["X-Amz-Invocation-Type"] == "Event"


def test_sdk_rejects_an_invalid_queue_policy(core):
    iot_data = sdk().client("iot-data")

    with pytest.raises(ValueError, match="Invalid value for queueFullPolicy: DropOldest"):
        iot_data.publish(topic=READINGS, payload=b"{}", queueFullPolicy="DropOldest")
    assert core.published == {}


def test_sdk_publish_parameters_and_payload_types(core):
    iot_data = sdk().client("iot-data")

    with pytest.raises(ValueError, match='"topic" is a required parameter'):
        iot_data.publish(payload=b"{}")
    with pytest.raises(TypeError):
        iot_data.publish(READINGS, b"{}")  # keyword-only (**kwargs)
    # The current core client sends a str payload UTF-8 encoded, bytes as they are.
    iot_data.publish(topic=READINGS, payload='{"t": "22 °C"}')
    iot_data.publish(topic=READINGS, payload=b'{"a": 1}')
    iot_data.publish(topic=READINGS, payload=io.BytesIO(b'{"b": 2}'))  # sent chunked
    iot_data.publish(topic=READINGS, queueFullPolicy="BestEffort")  # payload is optional

    assert [p.payload for p in core.published[READINGS]] == [
        '{"t": "22 °C"}'.encode(),
        b'{"a": 1}',
        b'{"b": 2}',
        b"",
    ]
    assert core.published[READINGS][3].queue_full_policy == "BestEffort"


def test_best_effort_is_dropped_when_the_queue_is_full(core):
    core.queue_full = True
    sdk().client("iot-data").publish(topic=READINGS, payload=b"{}", queueFullPolicy="BestEffort")

    assert core.published == {}
    assert [p.topic for p in core.dropped] == [READINGS]


def test_sdk_secret_parameters(anomaly_core):
    from greengrasssdk.SecretsManager import SecretsManagerError

    secrets = sdk().client("secretsmanager")

    with pytest.raises(ValueError, match='"SecretId" is a required parameter'):
        secrets.get_secret_value()
    with pytest.raises(SecretsManagerError, match="VersionId is not yet supported"):
        secrets.get_secret_value(SecretId=SECRET_NAME, VersionId="v1")
    with pytest.raises(Exception, match="is not recognized"):
        sdk().client("s3")

    answer = secrets.get_secret_value(SecretId=SECRET_NAME, VersionStage="AWSCURRENT")
    assert answer["SecretString"] == SECRET_VALUE
    assert isinstance(answer["CreatedDate"], datetime)
    assert anomaly_core.secret_requests[-1] == {
        "SecretId": SECRET_NAME,
        "VersionStage": "AWSCURRENT",
    }


def test_leaving_the_core_leaves_the_sdk_off_core():
    import greengrasssdk

    with V1CoreStandIn() as core, core.installed():
        greengrasssdk.client("iot-data")

    with pytest.raises(ModuleNotFoundError, match="greengrass_common"):
        greengrasssdk.client("iot-data")


def test_a_wrong_token_is_refused_by_the_core(core, monkeypatch):
    core.token = "another-functions-token"

    with pytest.raises(PublishError, match="403"):
        GreengrassV1Runtime("sensor").publish(READINGS, READING)


# -- secrets ----------------------------------------------------------------


def test_get_secret_returns_secret_string(anomaly_core, anomaly_runtime):
    assert anomaly_runtime.get_secret(SECRET_NAME) == SECRET_VALUE
    secret_arn = anomaly_core.secrets[SECRET_NAME].arn
    assert anomaly_runtime.get_secret(secret_arn) == SECRET_VALUE
    assert anomaly_core.secret_requests == [{"SecretId": SECRET_NAME}, {"SecretId": secret_arn}]


def test_get_secret_decodes_secret_binary(anomaly_core, anomaly_runtime):
    anomaly_core.add_secret(SECRET_NAME, SECRET_VALUE.encode("utf-8"))

    assert anomaly_runtime.get_secret(SECRET_NAME) == SECRET_VALUE


def test_binary_secret_that_is_not_text_is_a_secret_error(anomaly_core, anomaly_runtime):
    anomaly_core.add_secret(SECRET_NAME, b"\xff\xfe\x00")

    with pytest.raises(SecretError, match="not UTF-8"):
        anomaly_runtime.get_secret(SECRET_NAME)


def test_secret_errors_name_the_id_and_code_but_not_the_value(anomaly_core, anomaly_runtime):
    anomaly_core.secret_errors[SECRET_NAME] = (403, "Access denied to resource")

    with pytest.raises(SecretError) as info:
        anomaly_runtime.get_secret(SECRET_NAME)

    text = str(info.value)
    assert SECRET_NAME in text and "403" in text and "Access denied" in text
    assert SECRET_VALUE not in text and "s3cr3t" not in text
    assert isinstance(info.value, LookupError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unknown_secret_is_a_secret_error(runtime):
    with pytest.raises(
        SecretError, match=r"'greengrass-other'.*error code 404 \(Resource not found\)"
    ):
        runtime.get_secret("greengrass-other")


def test_unreachable_core_secret_error(core, runtime):
    core.ipc_reachable = False

    with pytest.raises(SecretError, match="InvocationException.*Connection refused"):
        runtime.get_secret(SECRET_NAME)


# -- off a core ---------------------------------------------------------------


def test_off_core_greengrasssdk_is_runtime_unavailable():
    with pytest.raises(RuntimeUnavailable) as info:
        GreengrassV1Runtime("sensor")

    assert "inside a Greengrass V1 core" in str(info.value)
    assert "EDGE_AGENT_RUNTIME=local" in str(info.value)
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_open_runtime_v1_off_core_is_runtime_unavailable():
    with pytest.raises(RuntimeUnavailable, match="Greengrass V1 core"):
        open_runtime("sensor", backend="v1")
    with pytest.raises(RuntimeUnavailable, match="Greengrass V1 core"):
        open_runtime("sensor", environ={"MY_FUNCTION_ARN": "arn:aws:lambda:::function:x:1"})


def test_sdk_without_client_modules_is_runtime_unavailable():
    class BrokenSdk:
        @staticmethod
        def client(name):
            raise ModuleNotFoundError("No module named 'greengrass_common'")

    with pytest.raises(RuntimeUnavailable, match="ModuleNotFoundError"):
        GreengrassV1Runtime("sensor", sdk=BrokenSdk())


# -- backend selection --------------------------------------------------------

V2_ENV = {
    "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/greengrass/v2/ipc.socket",
    "SVCUID": "service-uid",
}
V1_ENV = {"MY_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:edge-agent-sensor:1"}


@pytest.mark.parametrize(
    "environ, expected",
    [
        (V2_ENV, "v2"),
        (dict(V2_ENV, **V1_ENV), "v2"),
        (V1_ENV, "v1"),
        ({"AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/x"}, "local"),  # no SVCUID
        ({}, "local"),
        (dict(V2_ENV, **{ENV_VAR: "local"}), "local"),
        (dict(V1_ENV, **{ENV_VAR: " V2 "}), "v2"),
        ({ENV_VAR: "v1"}, "v1"),
    ],
)
def test_detect_backend(environ, expected):
    assert detect_backend(environ) == expected


def test_detect_backend_rejects_an_unknown_override():
    with pytest.raises(RuntimeUnavailable, match="EDGE_AGENT_RUNTIME must be one of"):
        detect_backend({ENV_VAR: "v3"})


def test_detect_backend_reads_os_environ(monkeypatch):
    for name in (ENV_VAR, "MY_FUNCTION_ARN", *V2_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MY_FUNCTION_ARN", V1_ENV["MY_FUNCTION_ARN"])

    assert detect_backend() == "v1"
