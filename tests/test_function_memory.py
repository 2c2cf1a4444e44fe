"""Each function runs within the memory limit the topology gives it (V1 ``MemorySize``, V2
``systemResourceLimits.memory``), with the real backends.

A core enforces that limit with a memory cgroup: a function whose resident memory goes
over it is killed. Here each function runs in its own process as its runtime runs it
(``function_child``), does a full cycle of its work, and its peak RSS (the kernel's
``VmHWM``, the high-water mark a cgroup limit would have met) must stay under the limit
with a fifth of it to spare (``MARGIN``): the limits are the measured peaks plus 35 %
(``agent.topology.MEMORY_HEADROOM``), so a function that grew past that margin fails here
and its figure must be measured again:

* the sensor with the ``i2c`` backend and with the ``sense_hat`` library (numpy and
  Pillow loaded for real; only RTIMU is a stand-in), in a Pi's view of the Sense HAT
  (``sense_hat_world``), publishing readings through a V1 core (``v1_core``) and
  through a V2 nucleus (``v2_nucleus``, over awscrt);
* the anomaly function opening an incident in ServiceNow (the stand-in, over a real
  socket) through both runtimes.

Under ``./dev test`` these run on Python 3.11 and 3.8. The figures, and those measured in
a Pi's userland, are in ``agent/topology.py`` next to the limits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import secret_json
from function_child import SPEC, peak_rss_kb
from helpers import anomaly, wait_until
from sense_hat_world import HatWorld, can_build_worlds, chips
from v1_core import CORE_MODULES_DIR, V1CoreStandIn

from agent.topology import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID, default_topology

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "tests")
SECRET_NAME = "greengrass-snow-creds"
READINGS = "IoTBlog/sensorData"
ENVIRONMENT = {"temperature": 24.5, "humidity": 44.0, "pressure": 1009.5}
CYCLES = 5  # readings before the peak is read: the loop's steady state, not only its start
MARGIN = 1.2  # peak x MARGIN must be under the limit


def limit_kb(function_id: str) -> int:
    return default_topology().function(function_id).memory_kb


def _measure(process: subprocess.Popen, done) -> int:
    """Wait for ``done()``, then the process's peak RSS (KB); the process is killed."""
    try:
        came = wait_until(lambda: done() or process.poll() is not None, timeout=90)
        peak = peak_rss_kb(process.pid)
    finally:
        process.kill()
        stderr = process.communicate(timeout=30)[1].decode("utf-8", "replace")
    assert came and done(), "the function did not do its work; it said: " + stderr[-3000:]
    return peak


def _v2_available() -> None:
    pytest.importorskip("awsiot.greengrasscoreipc.clientv2")


def _sensor_environ(state: str, backend: str) -> dict:
    env = {
        k: str(v) for k, v in default_topology().function(SENSOR_FUNCTION_ID).environment.items()
    }
    env.update(EDGE_AGENT_SENSOR=backend, stateDir=state, deviceId="pi-memory", period="0.05")
    return env


def _world(tmp_path) -> HatWorld:
    reason = can_build_worlds()
    if reason:
        pytest.skip(reason)
    world = HatWorld(tmp_path)
    world.chip = chips(environment=ENVIRONMENT)
    return world


@pytest.mark.parametrize("backend", ["i2c", "sensehat"])
def test_the_sensor_function_on_a_v1_core_stays_under_its_limit(tmp_path, backend):
    world = _world(tmp_path)
    with V1CoreStandIn() as core:
        environ = _sensor_environ("/home/ggc_user/state", backend)
        environ.update(core.environ)
        function = {"module": "functions.sensor_function", "path": [CORE_MODULES_DIR]}
        process = world.start(function, environ)
        peak = _measure(process, lambda: len(core.messages(READINGS)) >= CYCLES)
        first = core.messages(READINGS)[0]
    assert first["humidity"] == pytest.approx(ENVIRONMENT["humidity"], abs=0.01)
    print("sensor, V1, {}, Python {}: peak RSS {:.1f} MB".format(backend, _py(), peak / 1024))
    assert peak * MARGIN < limit_kb(SENSOR_FUNCTION_ID), _over(peak, SENSOR_FUNCTION_ID)


@pytest.mark.parametrize("backend", ["i2c", "sensehat"])
def test_the_sensor_component_on_a_v2_nucleus_stays_under_its_limit(tmp_path, backend):
    _v2_available()
    from generated_group import component_name, v2_plan
    from v2_nucleus import FakeNucleus

    world = _world(tmp_path)
    plan = v2_plan()
    name = component_name(plan, SENSOR_FUNCTION_ID)
    with FakeNucleus() as nucleus:
        nucleus.deploy(plan)
        os.chmod(nucleus._dir, 0o755)  # the component's user reaches the socket
        os.chmod(nucleus.socket_path, 0o777)
        environ = _sensor_environ("/home/ggc_user/state", backend)
        environ.update(nucleus.environ(name))
        process = world.start({"module": "functions.sensor_function", "runtime": "v2"}, environ)
        peak = _measure(process, lambda: len(nucleus.iot_core[READINGS]) >= CYCLES)
    print("sensor, V2, {}, Python {}: peak RSS {:.1f} MB".format(backend, _py(), peak / 1024))
    assert peak * MARGIN < limit_kb(SENSOR_FUNCTION_ID), _over(peak, SENSOR_FUNCTION_ID)


def _anomaly_environ(tmp_path, standin) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "AWS_"))}
    env.update(default_topology().function(ANOMALY_FUNCTION_ID).environment)
    env.update(
        snowUrl=standin.url + "/api/now/table/incident",
        stateDir=str(tmp_path / "state"),
        deviceId="pi-memory",
        PYTHONPATH=os.pathsep.join([HERE, ROOT]),
    )
    return env


def _start(env: dict, function: dict) -> subprocess.Popen:
    env = dict(env)
    env[SPEC] = json.dumps(function)
    return subprocess.Popen(
        [sys.executable, os.path.join(HERE, "function_child.py")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_the_anomaly_function_on_a_v1_core_stays_under_its_limit(tmp_path, standin, password):
    with V1CoreStandIn(ANOMALY_FUNCTION_ID, secrets={SECRET_NAME: secret_json(password)}) as core:
        env = _anomaly_environ(tmp_path, standin)
        env.update(core.environ)
        event = anomaly(episode="pi-memory:humidity:upper:1790000000")
        function = {
            "module": "functions.anomaly_function",
            "path": [CORE_MODULES_DIR],
            "events": [event],
            "subject": "IoTBlog/anomaly",
        }
        peak = _measure(_start(env, function), lambda: len(standin.incidents()) == 1)
    print("anomaly, V1, Python {}: peak RSS {:.1f} MB".format(_py(), peak / 1024))
    assert peak * MARGIN < limit_kb(ANOMALY_FUNCTION_ID), _over(peak, ANOMALY_FUNCTION_ID)


def test_the_anomaly_component_on_a_v2_nucleus_stays_under_its_limit(tmp_path, standin, password):
    _v2_available()
    from generated_group import component_name, v2_plan
    from v2_nucleus import FakeNucleus

    from agent.greengrass.v2 import GreengrassV2Runtime

    plan = v2_plan()
    name = component_name(plan, ANOMALY_FUNCTION_ID)
    with FakeNucleus(secrets={SECRET_NAME: secret_json(password)}) as nucleus:
        nucleus.deploy(plan)
        env = _anomaly_environ(tmp_path, standin)
        env.update(nucleus.environ(name))
        process = _start(env, {"module": "functions.anomaly_function", "runtime": "v2"})
        # The sensor component sends the event, as it does on a core, once the anomaly
        # component listens (before, it would reach nobody).
        sensor = GreengrassV2Runtime(
            SENSOR_FUNCTION_ID, ipc_client=nucleus.client(component_name(plan, SENSOR_FUNCTION_ID))
        )
        event = anomaly(episode="pi-memory:humidity:upper:1790000000")
        sent = []

        def delivered() -> bool:
            if not sent and nucleus.subscriptions("IoTBlog/anomaly"):
                sensor.publish("IoTBlog/anomaly", event)
                sent.append(event)
            return len(standin.incidents()) == 1

        try:
            peak = _measure(process, delivered)
        finally:
            sensor.close()
    print("anomaly, V2, Python {}: peak RSS {:.1f} MB".format(_py(), peak / 1024))
    assert peak * MARGIN < limit_kb(ANOMALY_FUNCTION_ID), _over(peak, ANOMALY_FUNCTION_ID)


def _py() -> str:
    return "{}.{}".format(*sys.version_info[:2])


def _over(peak: int, function_id: str) -> str:
    return (
        "{} peaked at {:.1f} MB: less than {:.0f} % of its limit of {:.1f} MB to spare; measure "
        "again and set the figure in agent/topology.py".format(
            function_id, peak / 1024, (1 - 1 / MARGIN) * 100, limit_kb(function_id) / 1024
        )
    )
