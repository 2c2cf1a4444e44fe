"""The sensor function's cold start: the modules its path loads, and the ones it must not.

The rule is stated once, in ``agent/record.py``: ``dataclasses`` (with ``inspect``,
``ast`` and ``dis``) and ``typing`` cost the sensor function most of its import
time on a core, so its start path loads neither; ``agent.topology`` holds the
group's classes, which no function needs at run time (``agent.names`` has the
names). The path is listed once, in ``pyproject.toml`` (``[tool.edge-agent]
cold-start-path``), where ``./dev lint`` applies the rule with ruff. A fresh
interpreter imports what the function loads on a V1 core: the module, and what
starting it imports (the V1 runtime, the Sense HAT backends, the I2C one with its
``smbus2``, the health reports).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVOIDED = ("dataclasses", "typing", "inspect", "agent.topology")

CODE = """
import json, os, sys
import functions.sensor_function
import agent.greengrass.v1, agent.sensors.sensehat, agent.status.health
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
