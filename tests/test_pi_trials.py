"""Whole runs of ``edge-agent run`` with what a site's Pis bring: long device ids, and a
state file torn by a power cut on an SD card.

The agent is a real process; ServiceNow is the stand-in in its own process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import SNOW_USER, secret_json
from helpers import wait_until

from agent.servicenow.outbox_guard import OUTBOX_FILE
from devtools.servicenow_standin import StandInProcess

log = logging.getLogger(__name__)
EDGE_AGENT = [sys.executable, "-m", "devtools.cli"]
PERIOD = 0.5


def _command(tmp_path, snow, thing, phases, name="readings"):
    """The command and environment of ``edge-agent run`` as ``thing`` over a replay of
    ``phases`` ((seconds, humidity) each)."""
    start = time.time()
    rows = ["timestamp,temperature,humidity"]
    for seconds, humidity in phases:
        for _ in range(int(round(seconds / PERIOD))):
            rows.append("{:.3f},21.0,{}".format(start + PERIOD * (len(rows) - 1), humidity))
    replay = tmp_path / "{}.csv".format(name)
    replay.write_text("\n".join(rows) + "\n")
    args = ["run", "--sensor", "replay", "--thing", thing]
    args += ["--secret-file", str(tmp_path / "secret.json")]
    args += ["--state-dir", str(tmp_path / "state")]
    args += ["--set", "period={}".format(PERIOD), "--set", "snowUrl=" + snow.url]
    env = dict(os.environ, EDGE_AGENT_REPLAY=str(replay), PYTHONUNBUFFERED="1")
    env.pop("EDGE_AGENT_RUNTIME", None)
    return EDGE_AGENT + args, env


def _run(tmp_path, snow, thing, phases, timeout=60.0, name="readings"):
    """Run it to its end: its exit status and output."""
    command, env = _command(tmp_path, snow, thing, phases, name)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def snow(tmp_path, password):
    (tmp_path / "secret.json").write_text(secret_json(password))
    with StandInProcess(users={SNOW_USER: password}) as server:
        log.info("ServiceNow stand-in at %s", server.url)
        yield server


def test_a_device_id_of_128_letters_runs_and_its_incident_resolves(tmp_path, snow):
    """128 characters (an AWS IoT thing name's limit), most of them letters that take three
    bytes each: more than a file name may have. Before: "[Errno 36] File name too long
    ... cannot use stateDir"."""
    thing = "冷" * 120 + "-kuehl-1"
    assert len(thing) == 128 and len(thing.encode("utf-8")) > 255
    code, output = _run(tmp_path, snow, thing, [(3, 62.0), (4, 40.0)])
    (incident,) = snow.incidents()
    assert code == 0, output
    assert incident["state"] == "6"
    assert len(incident["correlation_id"]) <= 100
    assert "File name too long" not in output


def test_a_device_id_longer_than_a_thing_name_is_refused_naming_it_and_the_limit(tmp_path, snow):
    """300 characters: refused before anything starts, the message naming the id and the
    limit, not the state folder."""
    thing = "pi-" + "x" * 297
    code, output = _run(tmp_path, snow, thing, [(2, 40.0)], timeout=30.0)
    assert code != 0
    assert "deviceId 'pi-xxxxxx" in output and "is 300 characters long" in output, output
    assert "at most 128" in output
    assert "stateDir" not in output and "Errno" not in output
    assert not snow.incidents()


@pytest.mark.parametrize("copy", ["last good copy", "no good copy"])
def test_a_state_file_torn_mid_episode_loses_no_incident(tmp_path, snow, copy):
    """A humid spell opens an incident; the power goes (SIGKILL) and the sensor's state file
    is left torn in half (and, in the second case, its last good copy is gone too). The
    next start continues the episode (from the copy, or from the outbox's open incident):
    the still-humid readings open nothing new and the normal ones resolve the incident.
    ``edge-agent status`` says what was recovered. Before: a second incident, the first
    open for ever, and "last errors none"."""
    command, env = _command(tmp_path, snow, "pi-sd", [(60, 62.0)], name="first")
    state = tmp_path / "state" / "sensor-state-pi-sd.json"
    with open(tmp_path / "first.log", "w") as out:
        first = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: snow.incidents() and state.exists(), 30)
        assert wait_until(lambda: b'held_events": []' in state.read_bytes(), 10)
        # The power goes once the agent has recorded the incident it opened: a kill between
        # ServiceNow's 201 and that record is the ambiguous create, which another test covers.
        assert wait_until(lambda: _recorded_incidents(tmp_path / "state") == 1, 10)
    finally:
        first.kill()
        first.wait(10)
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])
    if copy == "no good copy":
        os.unlink(str(state) + ".prev")
    code, output = _run(tmp_path, snow, "pi-sd", [(2, 62.0), (4, 40.0)], name="second")
    status = subprocess.run(
        EDGE_AGENT + ["status", "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    incidents = snow.incidents()
    log.info(
        "after a torn state file (%s): %d incident(s); status:\n%s", copy, len(incidents), status
    )
    assert code == 0, output
    assert len(incidents) == 1 and incidents[0]["state"] == "6", incidents
    assert "sensor-state-pi-sd.json was unreadable" in output
    said = "continued from its last good copy" if copy == "last good copy" else "no good copy"
    assert said in output
    recovered = [line for line in status.splitlines() if line.startswith("recovered")]
    assert recovered and said in recovered[0], status


def _recorded_incidents(state_dir):
    """How many incidents the agent's outbox has recorded (read-only, beside the agent)."""
    path = state_dir / OUTBOX_FILE
    try:
        with contextlib.closing(sqlite3.connect("file:{}?mode=ro".format(path), uri=True)) as db:
            return db.execute("SELECT COUNT(*) FROM incidents").fetchone()[0]
    except sqlite3.Error:
        return 0  # not made yet


def _simulate(*args, timeout=120.0):
    done = subprocess.run(
        EDGE_AGENT + ["simulate", "--fast", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    return done.returncode, done.stdout + done.stderr


def test_run_again_with_the_state_dir_delivers_what_an_outage_left():
    """simulate --fast with ServiceNow down past the run's end: exit 1, the temporary folder
    kept and "deliver them with: edge-agent simulate --state-dir ...". Doing that delivers.
    Before, the outbox kept the next try in virtual time, an hour and more ahead of the real
    clock, and the second run delivered nothing."""
    code, output = _simulate("--scenario", "heat-spike", "--outage", "60:10000")
    assert code == 1, output
    hint = "deliver them with: edge-agent simulate --state-dir "
    (line,) = [line for line in output.splitlines() if hint in line]
    state = line.split(hint, 1)[1].split(" ", 1)[0]
    try:
        code, again = _simulate("--scenario", "steady", "--duration", "120", "--state-dir", state)
        assert code == 0, again
        assert "1 incident opened, 0 updated, 1 resolved; 0 actions left" in again
    finally:
        import shutil

        shutil.rmtree(state, ignore_errors=True)


def test_a_run_ending_mid_episode_keeps_its_folder_and_says_how_to_finish_it():
    """simulate --fast ends inside a humid spell: the temporary folder holding the episode
    is kept, the console names the incident that stays open and how to resolve it; doing
    so resolves it. Before, the folder was removed and nothing was said."""
    code, output = _simulate("--scenario", "humid-spell", "--duration", "200")
    assert code == 0, output
    (line,) = [line for line in output.splitlines() if " stays open " in line]
    folder = line.split("--state-dir ", 1)[1].split(" ", 1)[0]
    try:
        assert "INC0010001 stays open (humidity" in line
        assert "kept {}: it still holds open episodes".format(folder) in output
        assert os.path.isdir(folder)
        code, again = _simulate("--scenario", "steady", "--duration", "60", "--state-dir", folder)
        assert code == 0, again
        assert "0 incidents opened, 0 updated, 1 resolved" in again
        assert " stays open " not in again
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
