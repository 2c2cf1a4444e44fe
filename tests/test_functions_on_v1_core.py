"""Both functions loaded as a Greengrass V1 core loads them: module import starts the work.

The core is the SDK fake from ``sdk_fakes`` (the installed greengrasssdk's own
code over a fake IPC), ServiceNow is the stand-in.
"""

from __future__ import annotations

import importlib
import sys
import time

import pytest
from conftest import secret_json
from helpers import anomaly
from sdk_fakes import FakeGreengrassV1Core

from agent.greengrass.local import LambdaContext


def _fresh_import(name):
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def v1_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MY_FUNCTION_ARN", "arn:aws:lambda:us-east-1:123456789012:function:x:1")
    monkeypatch.delenv("EDGE_AGENT_RUNTIME", raising=False)
    monkeypatch.setenv("stateDir", str(tmp_path))
    monkeypatch.setenv("deviceId", "pi-v1")


def test_sensor_function_starts_its_loop_at_load_and_publishes(v1_env, monkeypatch):
    core = FakeGreengrassV1Core()
    monkeypatch.setenv("EDGE_AGENT_SENSOR", "fake")
    monkeypatch.setenv("EDGE_AGENT_SCENARIO", "heat-spike")
    monkeypatch.setenv("period", "0.02")
    monkeypatch.setenv("tempLimit", "20")  # the fake's 22 °C already breaches
    with core.installed():
        module = _fresh_import("functions.sensor_function")
        try:
            assert module.app is not None, "the loop did not start at module load"
            assert _wait_for(lambda: len(core.messages("IoTBlog/sensorData")) >= 5)
            assert _wait_for(lambda: core.messages("IoTBlog/anomaly"))
        finally:
            module.app.stop()
    reading = core.messages("IoTBlog/sensorData")[0]
    assert reading["schema"] == "edge-agent/reading/1" and reading["device"] == "pi-v1"
    (event,) = core.messages("IoTBlog/anomaly")[:1]
    assert event["event"] == "breach" and event["metric"] == "temperature"
    # The handler has nothing to do: the work happens in the loop.
    assert module.function_handler({}, None) is None


def test_sensor_function_with_bad_configuration_logs_and_stays_idle(v1_env, monkeypatch, caplog):
    core = FakeGreengrassV1Core()
    monkeypatch.setenv("EDGE_AGENT_SENSOR", "fake")
    monkeypatch.setenv("humidLimit", "very")
    with core.installed():
        module = _fresh_import("functions.sensor_function")
    assert module.app is None
    assert "humidLimit must be a finite number" in caplog.text
    assert "sensor function could not start" in caplog.text


def test_anomaly_function_opens_an_incident_through_the_v1_secret(
    v1_env, monkeypatch, standin, password
):
    core = FakeGreengrassV1Core(secrets={"greengrass-snow-creds": secret_json(password)})
    monkeypatch.setenv("snowUrl", standin.url + "/api/now/table/incident")  # the blog's form
    with core.installed():
        module = _fresh_import("functions.anomaly_function")
        try:
            context = LambdaContext("edge-agent-anomaly", "IoTBlog/anomaly", "sensor")
            module.function_handler(anomaly(episode="pi-v1:humidity:upper:1790000000"), context)
            assert _wait_for(lambda: len(standin.incidents()) == 1)
        finally:
            module.app.stop()
    assert core.secret_requests and core.secret_requests[0]["SecretId"] == "greengrass-snow-creds"
    assert standin.incidents()[0]["correlation_id"].startswith("edge-agent:pi-v1:humidity")
