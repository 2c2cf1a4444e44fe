"""Both functions loaded as a Greengrass V1 core loads them: module import starts the work.

The core is ``v1_core.V1CoreStandIn``: its IPC endpoint over HTTP, with the
installed greengrasssdk on the function's side. The sensor function runs in a
process of its own, with the environment a core gives it; ServiceNow is the
stand-in.
"""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import secret_json
from helpers import anomaly, fresh_import, wait_until
from v1_core import CORE_MODULES_DIR, V1CoreStandIn

from agent.greengrass.local import LambdaContext
from agent.topology import ANOMALY_FUNCTION_ID

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What a core's Python runtime does for a pinned function: import its module, keep the process.
LAMBDA_RUNTIME = (
    "import functions.sensor_function as f, time\n"
    "assert f.app is not None, 'the loop did not start at module load'\n"
    "assert f.function_handler({}, None) is None\n"
    "time.sleep(120)\n"
)


def test_sensor_function_starts_its_loop_at_load_and_publishes(tmp_path):
    with V1CoreStandIn() as core:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
        environ.update(core.environ)
        environ.update(
            PYTHONPATH=os.pathsep.join([ROOT, CORE_MODULES_DIR]),
            stateDir=str(tmp_path),
            deviceId="pi-v1",
            EDGE_AGENT_SENSOR="fake",
            EDGE_AGENT_SCENARIO="heat-spike",
            period="0.02",
            tempLimit="20",  # the fake's 22 °C already breaches
        )
        function = subprocess.Popen(
            [sys.executable, "-c", LAMBDA_RUNTIME],
            env=environ,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            published = wait_until(
                lambda: (
                    len(core.messages("IoTBlog/sensorData")) >= 5
                    and core.messages("IoTBlog/anomaly")
                )
            )
            assert published, "nothing published; function says: {}".format(_stop(function)[-2000:])
        finally:
            _stop(function)
    reading = core.messages("IoTBlog/sensorData")[0]
    assert reading["schema"] == "edge-agent/reading/1" and reading["device"] == "pi-v1"
    (event,) = core.messages("IoTBlog/anomaly")[:1]
    assert event["event"] == "breach" and event["metric"] == "temperature"
    # Every message came from this function, with its token, as the installed SDK sends it.
    assert {p.source for p in core.published["IoTBlog/sensorData"]} == {core.function_arn}
    assert {p.queue_full_policy for p in core.published["IoTBlog/sensorData"]} == {"AllOrError"}


def _stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.kill()
    _, stderr = process.communicate(timeout=10)
    return stderr.decode("utf-8", "replace")


def test_sensor_function_with_bad_configuration_logs_and_stays_idle(v1_env, monkeypatch, caplog):
    monkeypatch.setenv("EDGE_AGENT_SENSOR", "fake")
    monkeypatch.setenv("humidLimit", "very")
    with V1CoreStandIn() as core, core.installed():
        module = fresh_import("functions.sensor_function")
    assert module.app is None
    assert "humidLimit must be a finite number" in caplog.text
    assert "sensor function could not start" in caplog.text


def test_anomaly_function_opens_an_incident_through_the_v1_secret(
    v1_env, monkeypatch, standin, password
):
    core = V1CoreStandIn(
        ANOMALY_FUNCTION_ID, secrets={"greengrass-snow-creds": secret_json(password)}
    )
    monkeypatch.setenv("snowUrl", standin.url + "/api/now/table/incident")  # the blog's form
    with core, core.installed():
        module = fresh_import("functions.anomaly_function")
        try:
            context = LambdaContext("edge-agent-anomaly", "IoTBlog/anomaly", "sensor")
            module.function_handler(anomaly(episode="pi-v1:humidity:upper:1790000000"), context)
            assert wait_until(lambda: len(standin.incidents()) == 1)
        finally:
            module.app.stop()
    assert core.secret_requests and core.secret_requests[0]["SecretId"] == "greengrass-snow-creds"
    assert standin.incidents()[0]["correlation_id"].startswith("edge-agent:pi-v1:humidity")
