"""A function that cannot start says why in one line, without a traceback, and exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_sensor_component(**env: str) -> subprocess.CompletedProcess:
    return _run_component("functions.sensor_function", **env)


def _run_component(module: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "AWS_"))}
    environ.update(env, PYTHONPATH=ROOT, EDGE_AGENT_RUNTIME="local")
    return subprocess.run(
        [sys.executable, "-m", module],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
    )


def test_a_sense_hat_that_cannot_be_opened_is_one_clear_line(tmp_path):
    # Off a Pi the installed sense_hat cannot even import RTIMU: a clear error, not a fake.
    done = _run_sensor_component(EDGE_AGENT_SENSOR="sensehat", stateDir=str(tmp_path))

    assert done.returncode == 1
    assert "sensor function could not start: cannot import sense_hat" in done.stderr
    assert "python3-sense-hat" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_configuration_is_one_clear_line(tmp_path):
    done = _run_sensor_component(
        EDGE_AGENT_SENSOR="fake", humidLimit="very", stateDir=str(tmp_path)
    )

    assert done.returncode == 2  # bad configuration, as in the exit-code table (docs/cli.md)
    assert "humidLimit must be a finite number" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_status_component_whose_port_is_taken_says_which_in_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _run_component(
            "functions.status_function", statusPort=str(port), stateDir=str(tmp_path)
        )
    assert done.returncode == 2
    assert "status function could not start" in done.stderr
    assert str(port) in done.stderr
    assert "Traceback" not in done.stderr
