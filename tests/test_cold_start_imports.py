"""The sensor function's cold start: the modules its path loads, and the ones it must not.

The rule is stated once, in ``agent/record.py``: ``dataclasses`` (with ``inspect``,
``ast`` and ``dis``) and ``typing`` cost the sensor function most of its import
time on a core, so its start path loads neither; ``agent.topology`` holds the
group's classes, which no function needs at run time (``agent.names`` has the
names). The path is listed once, in ``pyproject.toml`` (``[tool.edge-agent]
cold-start-path``), where ``./dev lint`` applies the rule with ruff. A fresh
interpreter imports what the function loads on a V1 core: the module, and what
starting it imports (the V1 runtime, the Sense HAT backends, the I2C one with its
``smbus2``, the live configuration and the health reports).

The first reading needs neither the shadow nor the health reports: on a V1 core the
function publishes it before it loads them (:data:`AFTER_FIRST_PUBLISH`), so a core
that must compile them (a zip without ``.pyc``) does so after the first publish.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

from helpers import wait_until
from i2c_world import FAKE_SMBUS2_DIR
from v1_core import CORE_MODULES_DIR, V1CoreStandIn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVOIDED = ("dataclasses", "typing", "inspect", "agent.topology")
AFTER_FIRST_PUBLISH = (
    "agent.live_config",
    "agent.live_settings",
    "agent.greengrass.shadow_document",
    "agent.status.health",
)

CODE = """
import json, os, sys
import functions.sensor_function
import agent.greengrass.v1, agent.sensors.sensehat, agent.status.health, agent.live_config
import agent.sensors.i2c, smbus2
ours = sorted(
    os.path.relpath(module.__file__).replace(os.sep, "/")
    for name, module in list(sys.modules.items())
    if name.split(".")[0] in ("agent", "functions")
)
print(json.dumps({{"avoided": [m for m in {avoided!r} if m in sys.modules], "path": ours}}))
"""


def _start_path():
    # Off a core (no MY_FUNCTION_ARN): importing the function starts nothing.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EDGE_AGENT_", "AWS_", "PYTHON", "SVCUID", "MY_FUNCTION_ARN"))
    }
    env["PYTHONPATH"] = REPO
    done = subprocess.run(
        [sys.executable, "-c", CODE.format(avoided=AVOIDED)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _listed_path():
    """``[tool.edge-agent] cold-start-path`` (read without tomllib: this runs on 3.8 too)."""
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as handle:
        text = handle.read()
    block = re.search(r"^cold-start-path = \[(.*?)^\]", text, re.S | re.M)
    assert block, "pyproject.toml has no [tool.edge-agent] cold-start-path"
    return sorted(re.findall(r'"([^"]+)"', block.group(1)))


def test_the_sensor_functions_path_loads_neither_dataclasses_nor_typing():
    loaded = _start_path()
    assert loaded["avoided"] == [], "loaded on the sensor function's path: {}".format(
        loaded["avoided"]
    )


def test_the_path_the_lint_checks_is_the_path_the_function_loads():
    assert _listed_path() == _start_path()["path"], (
        "update [tool.edge-agent] cold-start-path in pyproject.toml: ./dev lint applies the "
        "cold-start rule (agent/record.py) to exactly the modules listed there"
    )


# On a V1 core: the modules loaded when the loop's thread opens its first connection to
# the core, which is the first reading's publish (a fresh state has no held events).
FIRST_PUBLISH = """
import json, sys, threading
_seen = []
def _audit(event, args):
    if event == "socket.connect" and not _seen and threading.current_thread().name == "sensor-loop":
        _seen.append(True)
        print(json.dumps(sorted(sys.modules)), flush=True)
sys.addaudithook(_audit)
import functions.sensor_function
threading.Event().wait(120)
"""


def test_on_a_v1_core_the_first_reading_is_published_before_the_shadow_and_health_load(
    tmp_path,
):
    from agent.names import STATUS_SWITCH
    from agent.topology import SENSOR_FUNCTION_ID, default_topology

    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "i2c-1").write_bytes(b"")
    chips_spec = {"dev": str(tmp_path / "dev")}
    with V1CoreStandIn() as core:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
        environ.update(core.environ)
        environ.update(default_topology().function(SENSOR_FUNCTION_ID).environment)
        environ.update(
            {
                "PYTHONPATH": os.pathsep.join([FAKE_SMBUS2_DIR, REPO, CORE_MODULES_DIR]),
                "EDGE_AGENT_TEST_I2C": json.dumps(chips_spec),
                STATUS_SWITCH: "on",  # health reports wanted: they too wait for the reading
                "stateDir": str(tmp_path / "state"),
                "deviceId": "pi-first-publish",
            }
        )
        function = subprocess.Popen(
            [sys.executable, "-c", FIRST_PUBLISH],
            env=environ,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        lines = []
        reader = threading.Thread(target=lambda: lines.append(function.stdout.readline()))
        reader.start()
        try:
            # Then it follows its shadow: it asks the core's shadow service for it.
            followed = wait_until(
                lambda: core.messages("IoTBlog/sensorData") and core.shadow_requests, 60
            )
        finally:
            function.kill()
            stderr = function.communicate(timeout=10)[1].decode("utf-8", "replace")
            reader.join(10)
    assert followed, "no reading, or no shadow request after it: " + stderr[-2000:]
    at_first_publish = json.loads(lines[0])
    assert "functions.sensor_function" in at_first_publish
    assert [m for m in AFTER_FIRST_PUBLISH if m in at_first_publish] == []
