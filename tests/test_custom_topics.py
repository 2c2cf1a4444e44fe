"""Custom ``readingsTopic`` / ``anomalyTopic``: routed from the variables the functions read.

The local core and the V2 backend decide routes from the topology; both must
build it from the same variables the functions publish with, or every message
on a custom topic is dropped.
"""

from __future__ import annotations

import logging

import pytest
from helpers import wait_until

from agent.clock import VirtualClock
from agent.greengrass.local import LocalCore
from agent.greengrass.routing import route
from agent.sensors.fake import FakeSensor
from agent.topology import ANOMALY_FUNCTION_ID, CLOUD, SENSOR_FUNCTION_ID, default_topology
from functions import anomaly_function, sensor_function

READINGS = "site/7/readings"
ALERTS = "site/7/alerts"


def _variables(tmp_path) -> dict:
    return {
        "readingsTopic": READINGS,
        "anomalyTopic": ALERTS,
        "tempLimit": "10",  # the steady scenario's 22 °C breaches at once
        "debounceSamples": "1",
        "deviceId": "pi-7",
        "stateDir": str(tmp_path),
        "snowUrl": "http://127.0.0.1:9",  # nothing is delivered in these tests
    }


def test_custom_topics_are_routed_on_the_local_core(tmp_path, caplog):
    clock = VirtualClock()
    # Built as `simulate` and `run` build it: the default group, then the functions.
    core = LocalCore(default_topology())
    variables = _variables(tmp_path)
    sensor_app = sensor_function.create_app(
        environ=variables,
        runtime=core.runtime_for(SENSOR_FUNCTION_ID),
        sensor=FakeSensor("steady", seed=1, clock=clock, noise=0),
        clock=clock,
    )
    anomaly_app = anomaly_function.create_app(
        environ=variables, runtime=core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock
    )
    core.register(SENSOR_FUNCTION_ID, sensor_function.function_handler)
    core.register(ANOMALY_FUNCTION_ID, anomaly_app.function_handler)

    sensor_app.tick()

    assert [topic for topic, _ in core.cloud_messages] == [READINGS, ALERTS]
    assert anomaly_app.counts["queued"] == 1
    assert core.stats["unrouted"] == 0
    assert "no subscription" not in caplog.text
    anomaly_app.outbox.close()


def test_custom_topics_are_routed_on_v2(tmp_path):
    pytest.importorskip("awsiot.greengrasscoreipc.clientv2")
    from generated_group import component_name, v2_plan
    from v2_nucleus import FakeNucleus

    from agent.greengrass.v2 import GreengrassV2Runtime

    clock = VirtualClock()
    variables = _variables(tmp_path)
    # deploy v2 plan --env sensor:readingsTopic=... --env anomaly:anomalyTopic=...: the
    # access control the deployment gives the components follows the topics, and the
    # sensor reads its limits from the configuration the deployment gives it.
    plan = v2_plan(
        environment={
            SENSOR_FUNCTION_ID: {k: v for k, v in variables.items() if k != "snowUrl"},
            ANOMALY_FUNCTION_ID: {"anomalyTopic": ALERTS},
        }
    )
    with FakeNucleus() as nucleus:
        nucleus.deploy(plan)
        sensor_app = sensor_function.create_app(
            environ=variables,
            runtime=GreengrassV2Runtime(
                SENSOR_FUNCTION_ID,
                ipc_client=nucleus.client(component_name(plan, SENSOR_FUNCTION_ID)),
            ),
            sensor=FakeSensor("steady", seed=1, clock=clock, noise=0),
            clock=clock,
        )
        anomaly_app = anomaly_function.create_app(
            environ=variables,
            runtime=GreengrassV2Runtime(
                ANOMALY_FUNCTION_ID,
                ipc_client=nucleus.client(component_name(plan, ANOMALY_FUNCTION_ID)),
            ),
            clock=clock,
        )
        # What the component's main() does: subscribe to its own anomalyTopic.
        anomaly_app.runtime.subscribe(anomaly_app.settings.anomaly_topic, anomaly_app.handle)
        try:
            sensor_app.tick()

            assert list(nucleus.iot_core) == [READINGS, ALERTS]
            assert list(nucleus.local) == [ALERTS]
            assert wait_until(lambda: anomaly_app.counts["queued"] == 1)
            assert sensor_app.runtime.unrouted == {}
        finally:
            sensor_app.runtime.close()
            anomaly_app.runtime.close()
            anomaly_app.outbox.close()


def test_an_unrouted_topic_warns_once_and_is_counted(caplog):
    core = LocalCore(default_topology())
    with caplog.at_level(logging.WARNING, logger="agent.greengrass.local"):
        for _ in range(3):
            assert core.publish(SENSOR_FUNCTION_ID, "site/9/unknown", {"v": 1}) == []
    warnings = [r for r in caplog.records if "site/9/unknown" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert core.stats["unrouted"] == 3
    assert core.unrouted[(SENSOR_FUNCTION_ID, "site/9/unknown")] == 3


def test_with_environment_moves_the_subscriptions_that_follow_a_variable():
    # What `deploy --env sensor:readingsTopic=...` builds the group from.
    topology = default_topology().with_environment(SENSOR_FUNCTION_ID, readingsTopic=READINGS)

    assert route(topology.subscriptions, SENSOR_FUNCTION_ID, READINGS) == [CLOUD]
    assert route(topology.subscriptions, SENSOR_FUNCTION_ID, "IoTBlog/sensorData") == []
    assert topology.function(SENSOR_FUNCTION_ID).environment["readingsTopic"] == READINGS
    # The anomaly function publishes on nothing: its variables move no subscription.
    same = default_topology().with_topics(ANOMALY_FUNCTION_ID, {"anomalyTopic": ALERTS})
    assert same.subscriptions == default_topology().subscriptions
