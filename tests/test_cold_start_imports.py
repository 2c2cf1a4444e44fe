"""The sensor function's cold start (issue 15): modules its path must not load.

``dataclasses`` (with ``inspect``, ``ast`` and ``dis``) and ``typing`` cost the
sensor function most of its import time on a core; ``agent.topology`` holds the
group's classes, which no function needs at run time (``agent.names`` has the
names). A fresh interpreter imports what the function loads on a V1 core: the
module, and what starting it imports (the V1 runtime, the Sense HAT backends,
the I2C one with its ``smbus2``, the health reports).
"""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVOIDED = ("dataclasses", "typing", "inspect", "agent.topology")

CODE = """
import sys
import functions.sensor_function
import agent.greengrass.v1, agent.sensors.sensehat, agent.status.health
import agent.sensors.i2c, smbus2
print(" ".join(m for m in {avoided!r} if m in sys.modules))
"""


def test_the_sensor_functions_path_loads_neither_dataclasses_nor_typing():
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
    assert done.stdout.split() == [], "loaded on the sensor function's path: " + done.stdout
