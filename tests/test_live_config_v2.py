"""Limits from the deployment and the shadow on a Greengrass V2 nucleus, at the wire.

The nucleus is ``v2_nucleus.FakeNucleus``: the installed awsiotsdk's IPC
client speaks event-stream RPC to it over a Unix socket. It serves the
component's configuration (``GetConfiguration``, ``SubscribeToConfigurationUpdate``),
ShadowManager (``GetThingShadow``, ``UpdateThingShadow``, and its answers and
deltas on local pub/sub as binary JSON), and enforces the access control the
deployment ``deploy v2 plan`` generates for the thing grants the sensor component
(``generated_group``), as the real nucleus does.
"""

from __future__ import annotations

import concurrent.futures

import pytest

pytest.importorskip("awsiot.greengrasscoreipc.clientv2")

from generated_group import component_name, v2_plan  # noqa: E402
from helpers import wait_until  # noqa: E402
from nucleus_services import GET_THING_SHADOW, SHADOW_MANAGER, UPDATE_THING_SHADOW  # noqa: E402
from v2_nucleus import FakeNucleus  # noqa: E402

from agent.clock import Clock  # noqa: E402
from agent.greengrass.v2 import GreengrassV2Runtime  # noqa: E402
from agent.sensors import open_sensor  # noqa: E402
from agent.topology import SENSOR_FUNCTION_ID  # noqa: E402
from functions import sensor_function  # noqa: E402

THING = "pi-v2-core"
DEPLOYED = {"humidLimit": "50", "period": "0.05", "debounceSamples": "2"}  # deploy --env sensor:...
COMPONENT = component_name(v2_plan(thing=THING), SENSOR_FUNCTION_ID)


class Component:
    """The sensor component started by the nucleus: its configuration, then the process."""

    def __init__(self, nucleus, tmp_path, configuration=DEPLOYED, without=(), device=None):
        nucleus.deploy(v2_plan(environment={SENSOR_FUNCTION_ID: configuration}, thing=THING))
        if without:  # a deployment that leaves these IPC services out
            acl = nucleus.configurations[COMPONENT]["accessControl"]
            nucleus.access_control(COMPONENT, {k: v for k, v in acl.items() if k not in without})
        client = nucleus.client(
            COMPONENT, executor=concurrent.futures.ThreadPoolExecutor(max_workers=1)
        )
        self.runtime = GreengrassV2Runtime(SENSOR_FUNCTION_ID, ipc_client=client)
        clock = Clock()
        # What Setenv gives it: the variables that do not change at run time.
        environ = {"stateDir": str(tmp_path), "AWS_IOT_THING_NAME": THING}
        if device is not None:
            environ["deviceId"] = device
        self.app = sensor_function.create_app(
            environ=environ,
            runtime=self.runtime,
            sensor=open_sensor("fake", clock=clock, scenario="steady"),
            clock=clock,
        )
        sensor_function.start_live_config(self.app)
        self.app.start()

    def humid_limit(self):
        return next(lim.upper for lim in self.app.settings.limits if lim.metric == "humidity")

    def stop(self):
        self.app.stop()
        self.runtime.close()


@pytest.fixture
def nucleus():
    with FakeNucleus() as nucleus:
        yield nucleus


@pytest.fixture
def component(nucleus, tmp_path):
    started = Component(nucleus, tmp_path)
    yield started
    started.stop()


def reported(nucleus):
    document = nucleus.shadows.document(THING) or {}
    return document.get("state", {}).get("reported", {})


def test_the_run_time_variables_come_from_the_configuration_over_ipc(nucleus, component):
    assert component.app.settings.period == 0.05 and component.app.settings.debounce_samples == 2
    assert wait_until(lambda: reported(nucleus).get("sensor", {}).get("humidLimit") == 50)
    assert component.runtime.unrouted == {}
    assert nucleus.configuration_subscribers(COMPONENT) == 1


def test_a_deployment_that_lowers_the_limit_applies_without_a_restart(nucleus, component):
    assert wait_until(lambda: len(nucleus.iot_core_messages("IoTBlog/sensorData")) >= 3)
    app = component.app
    nucleus.set_configuration(COMPONENT, {"humidLimit": "30"})  # a deployment's merge
    assert wait_until(lambda: nucleus.iot_core_messages("IoTBlog/anomaly"))
    [breach] = nucleus.iot_core_messages("IoTBlog/anomaly")[:1]
    assert breach["event"] == "breach" and breach["limit"] == 30.0
    assert component.app is app and component.humid_limit() == 30.0
    seqs = [m["seq"] for m in nucleus.iot_core_messages("IoTBlog/sensorData")]
    assert seqs == list(range(1, len(seqs) + 1))  # one process, no reading lost
    assert wait_until(lambda: reported(nucleus).get("sensor", {}).get("humidLimit") == 30)


def test_the_shadow_beats_the_deployment(nucleus, component):
    nucleus.cloud_update(THING, {"state": {"desired": {"sensor": {"humidLimit": 35}}}})
    assert wait_until(lambda: component.humid_limit() == 35.0)
    nucleus.set_configuration(COMPONENT, {"humidLimit": "60"})
    assert wait_until(
        lambda: component.app.live_config.layers.configuration.get("humidLimit") == "60"
    )
    # Two readings after it was decided: a limit that changed would be in force by now.
    samples = component.app.counts["samples"]
    assert wait_until(lambda: component.app.counts["samples"] >= samples + 2)
    assert component.humid_limit() == 35.0
    state = nucleus.shadows.document(THING)["state"]
    assert state["reported"]["sensor"]["humidLimit"] == 35 and "delta" not in state
    # The delta reached the component on local pub/sub, from ShadowManager.
    [delta] = nucleus.local_messages("$aws/things/{}/shadow/update/delta".format(THING))[:1]
    assert b'"humidLimit": 35' in delta


def test_a_bad_configuration_value_is_rejected_reported_and_changes_nothing(nucleus, component):
    nucleus.set_configuration(COMPONENT, {"debounceSamples": "0"})
    assert wait_until(lambda: "sensorRejected" in reported(nucleus))
    rejected = reported(nucleus)["sensorRejected"]["debounceSamples"]
    assert rejected == {
        "value": "0",
        "reason": "debounceSamples must be 1 or more, got 0",
        "source": "configuration",
    }
    assert component.app.settings.debounce_samples == 2


def test_without_shadow_access_readings_go_on_and_deployments_still_apply(
    nucleus, tmp_path, caplog
):
    started = Component(nucleus, tmp_path, without=(SHADOW_MANAGER,))
    try:
        asked = lambda: any(op == GET_THING_SHADOW for _, op, _ in nucleus.requests)  # noqa: E731
        assert wait_until(asked)
        assert wait_until(lambda: "in the component's aws.greengrass.ShadowManager" in caplog.text)
        assert nucleus.shadows.document(THING) is None  # refused: the nucleus never served it
        nucleus.set_configuration(COMPONENT, {"humidLimit": "30"})
        assert wait_until(lambda: nucleus.iot_core_messages("IoTBlog/anomaly"))
        assert wait_until(lambda: len(nucleus.iot_core_messages("IoTBlog/sensorData")) > 10)
    finally:
        started.stop()


def test_a_bad_value_in_the_configuration_at_start_is_rejected_not_fatal(nucleus, tmp_path, caplog):
    started = Component(nucleus, tmp_path, configuration=dict(DEPLOYED, debounceSamples="0"))
    try:
        assert started.app.settings.debounce_samples == 3  # the default stays
        assert started.app.settings.period == 0.05  # the valid values apply
        assert "debounceSamples must be 1 or more, got 0" in caplog.text
        assert wait_until(lambda: "sensorRejected" in reported(nucleus))
        assert reported(nucleus)["sensorRejected"]["debounceSamples"]["source"] == "configuration"
        assert wait_until(lambda: len(nucleus.iot_core_messages("IoTBlog/sensorData")) > 3)
    finally:
        started.stop()


def test_a_thing_named_unlike_the_device_is_the_shadow_followed(nucleus, tmp_path):
    nucleus.cloud_update(THING, {"state": {"desired": {"sensor": {"humidLimit": 35}}}})
    started = Component(nucleus, tmp_path, device="kitchen-sensor")
    try:
        assert wait_until(lambda: started.humid_limit() == 35.0)
        assert wait_until(lambda: reported(nucleus).get("sensor", {}).get("humidLimit") == 35)
        assert nucleus.shadows.document("kitchen-sensor") is None
        assert wait_until(lambda: nucleus.iot_core_messages("IoTBlog/sensorData"))
        assert nucleus.iot_core_messages("IoTBlog/sensorData")[0]["device"] == "kitchen-sensor"
    finally:
        started.stop()


def test_a_throttled_report_is_sent_again_until_desired_and_reported_agree(nucleus, tmp_path):
    nucleus.cloud_update(THING, {"state": {"desired": {"sensor": {"humidLimit": 35}}}})
    nucleus.shadows.max_requests_per_second = 1  # the get at start takes the second's one
    started = Component(nucleus, tmp_path)
    try:
        assert wait_until(lambda: nucleus.shadows.counts["rejected"] >= 1)  # 429 to the report
        assert wait_until(lambda: "delta" not in nucleus.shadows.document(THING)["state"])
        assert reported(nucleus)["sensor"]["humidLimit"] == 35
    finally:
        started.stop()


def test_a_change_while_running_arrives_over_local_pubsub_and_is_reported_quietly(
    nucleus, tmp_path, caplog
):
    started = Component(nucleus, tmp_path)
    try:
        assert wait_until(lambda: reported(nucleus).get("sensor", {}).get("humidLimit") == 50)
        nucleus.cloud_update(THING, {"state": {"desired": {"sensor": {"humidLimit": 35}}}})
        assert wait_until(lambda: started.humid_limit() == 35.0)
        assert wait_until(lambda: "delta" not in nucleus.shadows.document(THING)["state"])
    finally:
        started.stop()  # joins the worker: everything it would log is logged
    assert reported(nucleus)["sensor"]["humidLimit"] == 35
    # Nothing failed, so nothing says it failed or that it worked "again".
    quiet = [r.message for r in caplog.records if r.name == "agent.live_config"]
    assert not [m for m in quiet if "could not" in m or "again" in m or "refused" in m], quiet


def test_a_report_shadowmanager_refuses_as_invalid_is_not_sent_again(nucleus, tmp_path, caplog):
    # Another application's desired state leaves no room for the report (ShadowManager
    # answers InvalidArgumentsError: 400 to the component).
    notes = "x" * (8192 - len('{"notes":""}') - 100)
    nucleus.cloud_update(THING, {"state": {"desired": {"notes": notes}}})
    started = Component(nucleus, tmp_path)
    try:
        refused = "the shadow service refused the report for {}".format(THING)
        assert wait_until(lambda: refused in caplog.text)
        nucleus.set_configuration(COMPONENT, {"humidLimit": "45"})  # a later change: one more
        assert wait_until(lambda: started.humid_limit() == 45.0)
        assert wait_until(lambda: caplog.text.count(refused) == 2)
    finally:
        started.stop()  # joins the worker: every request it made is counted
    updates = [r for r in nucleus.requests if r[1] == UPDATE_THING_SHADOW]
    assert len(updates) == 2  # each report once: sending it again would be refused again
