"""Limits from the shadow on a Greengrass V1 core, at the wire.

The core is ``v1_core.V1CoreStandIn``: its IPC endpoint over HTTP with
``GGShadowService`` behind it, and the installed greengrasssdk on the
function's side (``get_thing_shadow``/``update_thing_shadow`` cross a real
socket). The core routes the shadow service's deltas and documents to the
function's handler by the group's own subscriptions (``agent.topology``),
one at a time on its thread, as it invokes a pinned function.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import pytest
from helpers import wait_until
from v1_core import V1CoreStandIn

from agent.greengrass.local import LambdaContext
from agent.topology import SENSOR_FUNCTION_ID, SHADOW_SERVICE, default_topology

THING = "pi-v1-core"


@pytest.fixture
def v1_sensor(monkeypatch, tmp_path):
    """The sensor function loaded on the core (module import starts it), steady 40 %RH."""
    for name, value in {
        "stateDir": str(tmp_path),
        "AWS_IOT_THING_NAME": THING,  # what a V1 core sets for its functions
        "EDGE_AGENT_SENSOR": "fake",
        "EDGE_AGENT_SCENARIO": "steady",
        "period": "0.05",
        "debounceSamples": "2",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EDGE_AGENT_RUNTIME", raising=False)
    monkeypatch.delenv("deviceId", raising=False)
    holder = {}

    def invoke(message, topic):  # the core's Lambda runtime calling the handler
        holder["module"].function_handler(
            message, LambdaContext("edge-agent-sensor", topic, SHADOW_SERVICE)
        )

    with V1CoreStandIn() as core, core.installed():
        for sub in default_topology().for_thing(THING).subscriptions:
            if sub.source == SHADOW_SERVICE and sub.target == SENSOR_FUNCTION_ID:
                core.subscribe_function(sub.subject, invoke)
        sys.modules.pop("functions.sensor_function", None)
        holder["module"] = module = importlib.import_module("functions.sensor_function")
        assert module.app is not None
        # It follows its shadow once its first reading is out.
        assert wait_until(lambda: module.app.live_config is not None)
        try:
            yield core, module.app
        finally:
            module.app.stop()
            core.wait_deliveries()


def sensor_state(core):
    document = core.shadows.document(THING) or {}
    return document.get("state", {})


def test_the_function_reports_the_values_in_force_to_its_shadow(v1_sensor):
    core, _ = v1_sensor
    assert wait_until(lambda: "reported" in sensor_state(core))
    reported = sensor_state(core)["reported"]["sensor"]
    assert reported["humidLimit"] == 50 and reported["period"] == 0.05
    assert reported["debounceSamples"] == 2
    # The requests crossed the wire as the SDK sends them, on the thing's own topics.
    topics = [topic for topic, _ in core.shadow_requests]
    assert topics[:2] == [
        "$aws/things/{}/shadow/get".format(THING),
        "$aws/things/{}/shadow/update".format(THING),
    ]


def test_a_lower_limit_from_the_cloud_opens_an_episode_and_desired_and_reported_converge(
    v1_sensor, tmp_path
):
    core, app = v1_sensor
    assert wait_until(lambda: "reported" in sensor_state(core))
    answer = core.cloud_update(THING, {"state": {"desired": {"sensor": {"humidLimit": 30}}}})
    assert answer["version"] >= 2
    assert wait_until(lambda: core.messages("IoTBlog/anomaly")), "no breach after the change"
    [breach] = core.messages("IoTBlog/anomaly")[:1]
    assert breach["event"] == "breach" and breach["limit"] == 30.0
    assert wait_until(lambda: "delta" not in sensor_state(core)), sensor_state(core)
    assert sensor_state(core)["reported"]["sensor"]["humidLimit"] == 30
    assert app.live_config.counts["applied"] == 1
    # Applied values are in the state file, for a restart.
    with open(app.state_path) as handle:
        assert json.load(handle)["live"] == {"shadow": {"humidLimit": 30}}


def test_an_invalid_value_is_rejected_and_reported_with_its_reason(v1_sensor):
    core, app = v1_sensor
    assert wait_until(lambda: "reported" in sensor_state(core))
    core.cloud_update(THING, {"state": {"desired": {"sensor": {"humidLimit": "soggy"}}}})
    assert wait_until(lambda: "sensorRejected" in sensor_state(core).get("reported", {}))
    state = sensor_state(core)
    rejected = state["reported"]["sensorRejected"]["humidLimit"]
    assert rejected["value"] == "soggy" and "finite number" in rejected["reason"]
    assert state["reported"]["sensor"]["humidLimit"] == 50  # the old value stays
    assert state["delta"] == {"sensor": {"humidLimit": "soggy"}}  # still asked for, refused
    # Three more readings judged (debounceSamples is 2): any change would have breached by now.
    seen = len(core.messages("IoTBlog/sensorData"))
    assert wait_until(lambda: len(core.messages("IoTBlog/sensorData")) >= seen + 3)
    assert core.messages("IoTBlog/anomaly") == []
    assert (
        app.live_config.counts["rejected"] == 1
    )  # the delta after each report is not decided again


def test_a_shadow_service_that_fails_at_start_is_asked_again(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr("agent.live_config.FIRST_RETRY_S", 0.1)
    for name, value in {
        "stateDir": str(tmp_path),
        "AWS_IOT_THING_NAME": THING,
        "EDGE_AGENT_SENSOR": "fake",
        "period": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("EDGE_AGENT_RUNTIME", raising=False)
    with V1CoreStandIn() as core, core.installed():
        core.shadow_reachable = False
        core.cloud_update(THING, {"state": {"desired": {"sensor": {"humidLimit": 45}}}})
        sys.modules.pop("functions.sensor_function", None)
        module = importlib.import_module("functions.sensor_function")
        try:
            assert wait_until(lambda: len(core.shadow_requests) >= 3)  # retried, not given up
            # ...after waits that double (0.1 s, 0.2 s, 0.4 s...; the sixth request is 3.1 s
            # in): a restarting core is not flooded with requests. Six readings (0.05 s apart)
            # show time went by.
            readings = module.app.counts["readings"]
            assert wait_until(lambda: module.app.counts["readings"] >= readings + 6)
            assert len(core.shadow_requests) < 6
            could_not = [r for r in caplog.records if "could not read the shadow" in r.message]
            assert [r.levelname for r in could_not[:2]] == ["WARNING", "DEBUG"]  # said once
            assert module.app.settings.limits[1].upper == 50.0
            core.shadow_reachable = True
            assert wait_until(lambda: "delta" not in sensor_state(core), timeout=15)
            assert sensor_state(core)["reported"]["sensor"]["humidLimit"] == 45
        finally:
            module.app.stop()
    assert os.path.exists(module.app.state_path)


def test_a_report_made_while_the_shadow_service_restarts_is_made_again(v1_sensor, caplog):
    core, _ = v1_sensor
    assert wait_until(lambda: "reported" in sensor_state(core))
    core.shadow_reachable = False  # GGShadowService restarting: 500 to the function's requests
    core.cloud_update(THING, {"state": {"desired": {"sensor": {"humidLimit": 45}}}})
    assert wait_until(lambda: "could not report the values in force" in caplog.text)
    core.shadow_reachable = True
    assert wait_until(lambda: "delta" not in sensor_state(core)), sensor_state(core)
    assert sensor_state(core)["reported"]["sensor"]["humidLimit"] == 45
    # Logged once the answer is back, a moment after the shadow took it.
    again = "reported the values in force to the shadow of {} again".format(THING)
    assert wait_until(lambda: again in caplog.text)
