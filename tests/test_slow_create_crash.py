"""SIGKILL the anomaly process while ServiceNow takes 1-3 s to commit a create, restart at once.

ServiceNow is the stand-in in its own process with a slow commit: the POST is
stored only after its delay, whether or not the client is still there. The
agent is a real process (tests/crash_worker.py) killed at a random point of
that create and started again at once on the same state dir. Without the
durable create intent the restarted agent looks, finds nothing yet, and
creates a second incident.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import SNOW_USER, new_secret, secret_json
from helpers import anomaly

from devtools.servicenow_standin import StandInProcess

log = logging.getLogger(__name__)
WORKER = os.path.join(os.path.dirname(__file__), "crash_worker.py")
LANES = 4  # independent agents (own state dirs) sharing one ServiceNow
TRIALS_PER_LANE = 6
COMMIT_DELAY = 1.0  # each write commits after 1-3 s
COMMIT_JITTER = 2.0
SETTINGS = {"snowTimeout": "1.25"}  # the ambiguity window: 3 x 1.25 s > the slowest commit


def _episode(lane: int, trial: int) -> str:
    return "pi-slow{}:humidity:upper:{}".format(lane, 1_790_000_000 + 1000 * trial)


def _run_lane(lane, snow_url, tmp_path, secret_path, settings_path, seed, killed, errors, outputs):
    rng = random.Random(seed)
    state_dir = tmp_path / "lane{}".format(lane)
    events_path = tmp_path / "events{}.json".format(lane)
    command = [
        sys.executable,
        WORKER,
        snow_url,
        str(state_dir),
        str(events_path),
        str(secret_path),
        str(settings_path),
    ]
    try:
        for trial in range(TRIALS_PER_LANE):
            episode = _episode(lane, trial)
            events_path.write_text(
                json.dumps(
                    [
                        anomaly("breach", 0, episode, ts=1_790_000_100.0 + 1000 * trial),
                        anomaly("recovered", 1, episode, value=40.0, ts=1_790_000_300.0),
                    ]
                )
            )
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            assert proc.stdout.readline().strip() == "DELIVERING"  # both events are queued
            time.sleep(rng.uniform(0.0, COMMIT_DELAY + COMMIT_JITTER))  # inside the create
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed.append(episode)
            _, killed_stderr = proc.communicate(timeout=30)
            # Restarted at once, on the same state dir, delivering until drained.
            final = subprocess.run(command, capture_output=True, text=True, timeout=90)
            assert "DRAINED" in final.stdout, final.stderr[-2000:]
            outputs.append(killed_stderr + final.stderr)
            log.info("lane %d: episode %s delivered after a kill", lane, episode)
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


@pytest.mark.slow
def test_a_crash_during_a_slow_create_never_duplicates_the_incident(tmp_path):
    password = new_secret()
    secret_path = tmp_path / "secret.json"
    secret_path.write_text(secret_json(password))
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps(SETTINGS))
    killed, errors, outputs = [], [], []
    with StandInProcess(users={SNOW_USER: password}) as snow:
        snow.configure_faults(commit_delay=COMMIT_DELAY, commit_jitter=COMMIT_JITTER)
        lanes = [
            threading.Thread(
                target=_run_lane,
                args=(
                    lane,
                    snow.url,
                    tmp_path,
                    secret_path,
                    settings_path,
                    11 + lane,
                    killed,
                    errors,
                    outputs,
                ),
            )
            for lane in range(LANES)
        ]
        for thread in lanes:
            thread.start()
        for thread in lanes:
            thread.join(timeout=600)
        assert not errors, errors[0]
        incidents = snow.incidents()
    assert len(killed) >= 20  # of 24 runs, SIGKILLed inside (or right after) a 1-3 s create
    by_episode = {}
    for incident in incidents:
        by_episode.setdefault(incident["correlation_id"], []).append(incident)
    episodes = [
        "edge-agent:" + _episode(lane, t) for lane in range(LANES) for t in range(TRIALS_PER_LANE)
    ]
    duplicated = {k: len(v) for k, v in by_episode.items() if len(v) > 1}
    assert not duplicated, duplicated  # exactly one incident per episode...
    assert sorted(by_episode) == sorted(episodes)  # ...for every episode...
    assert all(i["state"] == "6" for i in incidents)  # ...and every one resolved
    assert not [text for text in outputs if password in text]  # the agents' own logs
