"""The status function as the cores run it: loaded by a V1 core (the installed greengrasssdk
talking HTTP to a stand-in of the core's IPC endpoint), and as a V2 component over the installed
awsiotsdk IPC client talking event-stream to a stand-in nucleus."""

from __future__ import annotations

import time

import pytest
import requests
from generated_group import v1_definitions
from helpers import fresh_import, wait_until
from v1_core import V1CoreStandIn
from v1_group import V1Group

from agent.greengrass.local import LambdaContext
from agent.schema import READING_SCHEMA
from agent.status import HEALTH_SCHEMA
from agent.topology import SENSOR_FUNCTION_ID, STATUS_FUNCTION_ID, STATUS_SWITCH

T0 = 1_790_000_000.0
# deploy v1 plan --env status:statusPort=...: the group with the status function.
WITH_STATUS = {STATUS_FUNCTION_ID: {"statusPort": "8080"}}


def status_group() -> V1Group:
    return V1Group.from_definitions(v1_definitions(environment=WITH_STATUS))


def test_on_a_v1_core_the_status_function_serves_from_load_and_takes_routed_messages(
    v1_env, monkeypatch
):
    monkeypatch.setenv("statusPort", "0")
    with V1CoreStandIn(STATUS_FUNCTION_ID, group=status_group()) as core, core.installed():
        module = fresh_import("functions.status_function")
    try:
        assert module.app is not None and module.app.url, "the server did not start at load"
        reading = {"schema": READING_SCHEMA, "device": "pi-v1", "seq": 1, "ts": time.time()}
        reading.update(temperature=21.5, humidity=40.0, pressure=1000.0)
        module.function_handler(
            reading, LambdaContext("edge-agent-status", "IoTBlog/sensorData", "x")
        )
        state = requests.get(module.app.url + "api/state", timeout=5).json()
        assert state["readings"]["temperature"] == [21.5] and state["device"] == "pi-v1"
    finally:
        module.app.stop()


def test_on_a_v1_core_the_sensor_sends_health_reports_when_the_group_has_a_status_function(
    v1_env, monkeypatch
):
    core = V1CoreStandIn(SENSOR_FUNCTION_ID, group=status_group())
    monkeypatch.setenv("EDGE_AGENT_SENSOR", "fake")
    monkeypatch.setenv("period", "0.05")
    monkeypatch.setenv(STATUS_SWITCH, "on")
    with core, core.installed():
        module = fresh_import("functions.sensor_function")
        try:
            assert wait_until(lambda: core.messages("edge-agent/health/sensor"))
        finally:
            module.app.stop()
    report = core.messages("edge-agent/health/sensor")[0]
    assert report["schema"] == HEALTH_SCHEMA and report["function"] == "sensor"
    assert report["device"] == "pi-v1" and report["limits"]["temperature"]["upper"] == 30.0


def test_without_a_status_function_no_health_reports_are_sent(v1_env, monkeypatch):
    core = V1CoreStandIn()
    monkeypatch.setenv("EDGE_AGENT_SENSOR", "fake")
    monkeypatch.setenv("period", "0.02")
    monkeypatch.delenv(STATUS_SWITCH, raising=False)
    with core, core.installed():
        module = fresh_import("functions.sensor_function")
        try:
            assert wait_until(lambda: len(core.messages("IoTBlog/sensorData")) >= 5)
        finally:
            module.app.stop()
    assert core.messages("edge-agent/health/sensor") == []


def test_on_v2_the_status_component_receives_readings_and_health_over_local_pubsub(
    monkeypatch, tmp_path
):
    pytest.importorskip("awsiot.greengrasscoreipc.clientv2")
    from generated_group import component_name, v2_plan
    from v2_nucleus import FakeNucleus

    from agent.greengrass.v2 import GreengrassV2Runtime
    from agent.sensors import open_sensor
    from agent.status.health import sensor_reporter
    from functions import sensor_function, status_function

    nucleus = FakeNucleus()
    request_close = nucleus.close
    plan = v2_plan(environment=WITH_STATUS)  # the components' access control includes status
    nucleus.deploy(plan)
    monkeypatch.setenv(STATUS_SWITCH, "on")  # what the topology puts in each recipe's Setenv
    sensor_runtime = GreengrassV2Runtime(
        SENSOR_FUNCTION_ID, ipc_client=nucleus.client(component_name(plan, SENSOR_FUNCTION_ID))
    )
    status_runtime = GreengrassV2Runtime(
        STATUS_FUNCTION_ID, ipc_client=nucleus.client(component_name(plan, STATUS_FUNCTION_ID))
    )
    app = status_function.create_app(environ={"statusPort": "0", "stateDir": str(tmp_path)})
    try:
        for topic in app.settings.topics():  # what functions.status_function.main() does
            status_runtime.subscribe(topic, app.handle)
        app.start()
        sensor = sensor_function.create_app(
            environ={"stateDir": str(tmp_path), "deviceId": "pi-v2"},
            runtime=sensor_runtime,
            sensor=open_sensor("fake", scenario="steady", seed=1),
        )
        sensor.tick()
        sensor.tick()
        sensor_reporter(sensor).report()
        assert len(nucleus.iot_core_messages("IoTBlog/sensorData")) == 2  # still to the cloud
        state = requests.get(app.url + "api/state", timeout=5).json()
        assert len(state["readings"]["ts"]) == 2 and state["device"] == "pi-v2"
        assert state["sensor"]["counters"]["readings"] == 2
        assert nucleus.iot_core_messages("edge-agent/health/sensor") == []  # never the cloud
    finally:
        app.stop()
        sensor_runtime.close()
        status_runtime.close()
        request_close()
