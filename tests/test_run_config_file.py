"""``edge-agent run --config FILE``: a Pi without Greengrass configured by one file.

Every run is its own process, as systemd starts it; under ``./dev test`` these
also run on Python 3.8 (the Pi's OS Python is 3.9 on Bullseye, 3.11 on Bookworm).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
from mosquitto import Mosquitto
from mqtt_helpers import READINGS, ROOT, Watcher

from tests.conftest import secret_json


def edge_agent_run(*args, timeout=60, **environ):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_IOT_THING_NAME",)}
    env.pop("EDGE_AGENT_SECRET_FILE", None)
    env.pop("JOURNAL_STREAM", None)  # as on a terminal, unless a test says otherwise
    env.update(environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "devtools.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def running_as(result):
    lines = [line for line in result.stderr.splitlines() if "running as " in line]
    assert len(lines) == 1, result.stderr
    return lines[0].split("running as ", 1)[1].split(":", 1)[0]


def test_a_run_takes_its_broker_device_and_variables_from_the_file(tmp_path):
    with Mosquitto(tmp_path / "broker") as broker:
        config = write(
            tmp_path / "config.ini",
            f"""
            # as /etc/edge-agent/config.ini would be
            [run]
            mqtt = {broker.url}
            thing = pi-from-file
            sensor = fake
            state-dir = state   # relative: next to this file

            [variables]
            period = 0.05
            """,
        )
        watcher = Watcher(broker.port).start()
        try:
            result = edge_agent_run("--config", config, "--max-ticks", "3")
            assert result.returncode == 0, result.stderr
            assert watcher.wait_for(3, READINGS)
        finally:
            watcher.stop()
    assert {reading["device"] for reading in watcher.received(READINGS)} == {"pi-from-file"}
    assert running_as(result) == "pi-from-file"
    assert "readings every 0.05 s" in result.stderr
    assert (tmp_path / "state" / "outbox.sqlite3").exists()


def test_the_command_line_beats_the_file_and_the_file_beats_the_environment(tmp_path):
    good_secret = tmp_path / "snow.json"
    good_secret.write_text(secret_json("integration", "pw"))
    config = write(
        tmp_path / "config.ini",
        """
        [run]
        thing = file-thing
        sensor = fake
        secret-file = snow.json
        [variables]
        period = 0.05
        """,
    )
    state = str(tmp_path / "state")
    env = {"AWS_IOT_THING_NAME": "env-thing", "EDGE_AGENT_SECRET_FILE": str(tmp_path / "none")}

    from_file = edge_agent_run("--config", config, "--max-ticks", "1", "--state-dir", state, **env)
    assert from_file.returncode == 0, from_file.stderr
    assert running_as(from_file) == "file-thing"
    assert "readings every 0.05 s" in from_file.stderr
    assert "no --secret-file" not in from_file.stderr  # the file's, not the missing env one

    from_line = edge_agent_run(
        "--config", config, "--max-ticks", "1", "--state-dir", state,
        "--thing", "cli-thing", "--set", "period=0.02", **env,
    )  # fmt: skip
    assert from_line.returncode == 0, from_line.stderr
    assert running_as(from_line) == "cli-thing"
    assert "readings every 0.02 s" in from_line.stderr

    without_file = edge_agent_run("--sensor", "fake", "--max-ticks", "1", "--state-dir", state)
    assert running_as(without_file) == socket.gethostname()  # the real id, not a placeholder


def test_run_names_the_configured_device_id(tmp_path):
    result = edge_agent_run(
        "--sensor", "fake", "--max-ticks", "1", "--state-dir", str(tmp_path),
        "--set", "deviceId=pi-7", "--set", "period=0.05",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert running_as(result) == "pi-7"


@pytest.mark.parametrize(
    "text, line, expected",
    [
        ("[run]\nendpont = x\n", 2, "[run] endpont: unknown key; did you mean endpoint?"),
        ("[run]\nsensor = fake\n\n[variables]\nhumidLimt = 55\n", 5,
         "[variables] humidLimt: unknown variable; did you mean humidLimit?"),
        ("[variables]\nhumidLimit = 500\n", 2,
         "[variables] humidLimit: humidLimit must be between 0 and 100 %RH"),
        ("[variables]\nperiod = 1\nhumidLowLimit = 60\nhumidLimit = 55\n", 3,
         "[variables] humidLowLimit: humidLowLimit (60.0) must be below humidLimit (55.0)"),
        ("[run]\nprotocol = 4\n", 2, "[run] protocol: expected one of 3.1.1, 5, auto, got '4'"),
        ("[run]\nspool-bytes = lots\n", 2, "[run] spool-bytes: expected a whole number"),
        ("[run]\nsensor = sensorhat\n", 2, "[run] sensor: expected one of i2c, sensehat"),
        ("[run]\nstatus = 0.0.0.0:http\n", 2, "[run] status: status takes [HOST:]PORT"),
        ("[run]\nhumidLimit = 55\n", 2, "it is a variable: put it under [variables]"),
        ("[variables]\nthing = pi\n", 2, "it is an option of the run: put it under [run]"),
        ("[run]\nthing =\n", 2, "[run] thing: has no value"),
        ("[run]\nthing = a\nthing = b\n", 3, "[run] thing: set twice in this section"),
        ("\n[agent]\nthing = a\n", 2, "unknown section [agent]; the sections are [run] and [variables]"),
        ("thing = a\n", 1, "a key before any section"),
        ("[run]\nendpoint = a.example\nmqtt = mqtt://b\n", 3, "[run] mqtt: give endpoint or mqtt, not both"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_with_its_name_line_and_key_before_anything_runs(
    tmp_path, text, line, expected
):
    config = tmp_path / "config.ini"
    config.write_text(text)
    state = tmp_path / "state"
    result = edge_agent_run("--config", str(config), "--state-dir", str(state), "--max-ticks", "1")
    assert result.returncode == 2
    assert result.stderr.startswith(f"edge-agent run: {config}:{line}: "), result.stderr
    assert expected in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not state.exists()  # nothing ran


def test_a_missing_file_is_named(tmp_path):
    result = edge_agent_run("--config", str(tmp_path / "config.ini"))
    assert result.returncode == 2
    assert f"cannot read config file {tmp_path / 'config.ini'}" in result.stderr


def test_the_shipped_template_is_a_valid_file_up_to_its_placeholders(tmp_path):
    from agent.standalone.config_file import read_config_file

    template = ROOT / "deploy" / "systemd" / "config.ini"
    config = read_config_file(str(template))
    assert config.options["secret_file"] == str(template.parent / "servicenow.json")
    assert config.options["state_dir"] == "/opt/edge-agent/state"
    assert "CHANGE-ME" in config.options["endpoint"]


def test_log_level_from_the_command_line_or_the_file(tmp_path):
    quiet = edge_agent_run(
        "--sensor", "fake", "--max-ticks", "1", "--state-dir", str(tmp_path),
        "--log-level", "warning",
    )  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert "WARNING" in quiet.stderr and " INFO " not in quiet.stderr

    config = write(tmp_path / "c.ini", "[run]\nlog-level = debug\nsensor = fake\n")
    debug = edge_agent_run("--config", config, "--max-ticks", "1", "--state-dir", str(tmp_path))
    assert " DEBUG " in debug.stderr

    short = edge_agent_run(
        "-v", "--sensor", "fake", "--max-ticks", "1", "--state-dir", str(tmp_path)
    )
    assert " DEBUG " in short.stderr  # -v stays the shorthand of --log-level debug

    overridden = edge_agent_run(
        "--config", config, "--log-level", "error", "--max-ticks", "1",
        "--state-dir", str(tmp_path),
    )  # fmt: skip
    assert " DEBUG " not in overridden.stderr and " WARNING " not in overridden.stderr


def test_under_systemd_the_journal_stamps_the_lines_so_run_does_not(tmp_path):
    args = ("--sensor", "fake", "--max-ticks", "1", "--state-dir", str(tmp_path))
    journal = edge_agent_run(*args, JOURNAL_STREAM="8:12345")  # what systemd sets for its stderr
    assert journal.returncode == 0, journal.stderr
    lines = journal.stderr.splitlines()
    assert lines and all(
        line.split(" ", 1)[0] in ("DEBUG", "INFO", "WARNING", "ERROR") for line in lines
    ), lines
    terminal = edge_agent_run(*args)
    assert terminal.stderr.splitlines()[0][:4].isdigit()  # a date first, on a terminal
