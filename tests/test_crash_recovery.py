"""SIGKILL the anomaly process at random points during delivery: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from conftest import secret_json
from helpers import anomaly

WORKER = os.path.join(os.path.dirname(__file__), "crash_worker.py")
TRIALS = 24
NEW_EPISODES_PER_TRIAL = 2
LATENCY = 0.03


def _events(episodes):
    events = []
    for i in range(episodes):
        episode = "pi-crash:humidity:upper:{}".format(1_790_000_000 + 1000 * i)
        events.append(anomaly("breach", 0, episode, ts=1_790_000_100.0 + 1000 * i))
        events.append(anomaly("update", 1, episode, ts=1_790_000_200.0 + 1000 * i))
        events.append(anomaly("recovered", 2, episode, value=40.0, ts=1_790_000_300.0 + 1000 * i))
    return events


@pytest.mark.slow
def test_sigkill_during_delivery_loses_and_duplicates_nothing(standin, password, tmp_path):
    events_path = tmp_path / "events.json"
    secret_path = tmp_path / "secret.json"
    secret_path.write_text(secret_json(password))
    state_dir = tmp_path / "state"
    # Every answer is late, so kills land between a write and its confirmation.
    standin.faults.latency = LATENCY
    standin.faults.fail_rate = 0.1  # and some calls fail and must be retried
    rng = random.Random(7)
    command = [
        sys.executable,
        WORKER,
        standin.url,
        str(state_dir),
        str(events_path),
        str(secret_path),
    ]
    killed = 0
    for trial in range(TRIALS):
        # Each run is handed every event so far (as a core redelivers), new ones included,
        # so there is always delivery under way when the kill comes.
        episodes = NEW_EPISODES_PER_TRIAL * (trial + 1)
        events_path.write_text(json.dumps(_events(episodes)))
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert proc.stdout.readline().strip() == "DELIVERING"  # events are in the outbox
        # Six new actions at two or more slow calls each: delivery takes well over 0.25 s.
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=30)
        proc.stdout.close()
    assert killed >= 20
    standin.faults.reset()
    final = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert "DRAINED" in final.stdout, final.stderr

    incidents = standin.incidents()
    correlation_ids = [i["correlation_id"] for i in incidents]
    assert len(incidents) == episodes, correlation_ids  # none lost, none duplicated
    assert len(set(correlation_ids)) == episodes
    assert all(i["state"] == "6" for i in incidents)  # every recovery delivered too
