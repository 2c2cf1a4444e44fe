"""SIGKILL a site gateway while its groups form and resolve: no group lost, none doubled."""

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
TRIALS = 14
GROUPS = 10
STEP = 5  # events added per run: a group (7 events) is often half-handled when a run is killed
DEVICES = ("pi-1", "pi-2", "pi-3")


def _events(groups):
    """Each group: three Pis breach, one worsens, all recover; the next group is later."""
    events = []
    for g in range(groups):
        start = 1_790_000_000.0 + 1000 * g
        for k, device in enumerate(DEVICES):
            episode = "{}:humidity:upper:{}".format(device, int(start) + k)
            common = dict(started_at=start + k)
            events.append(anomaly("breach", 0, episode, ts=start + k, peak=60.0 + k, **common))
            if k == 1:
                events.append(anomaly("update", 1, episode, ts=start + 50, peak=75.0, **common))
        for k, device in enumerate(DEVICES):
            episode = "{}:humidity:upper:{}".format(device, int(start) + k)
            seq = 2 if k == 1 else 1
            events.append(
                anomaly(
                    "recovered", seq, episode, value=40.0, ts=start + 100 + k, started_at=start + k
                )
            )
    return events


@pytest.mark.slow
def test_sigkill_mid_group_loses_and_duplicates_nothing(standin, password, tmp_path):
    events_path = tmp_path / "events.json"
    secret_path = tmp_path / "secret.json"
    secret_path.write_text(secret_json(password))
    settings_path = tmp_path / "settings.json"
    # No wait and no interval: every event makes an action, so kills land mid-group.
    settings_path.write_text(
        json.dumps({"site": "lab", "groupWaitSeconds": "0", "groupIntervalSeconds": "0"})
    )
    standin.faults.latency = 0.03
    standin.faults.fail_rate = 0.1
    rng = random.Random(11)
    command = [
        sys.executable,
        WORKER,
        standin.url,
        str(tmp_path / "state"),
        str(events_path),
        str(secret_path),
        str(settings_path),
    ]
    killed = 0
    every = _events(GROUPS)
    for trial in range(TRIALS):
        # Every run is handed every event so far (as a core redelivers), and a few new ones.
        events_path.write_text(json.dumps(every[: STEP * (trial + 1)]))
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert proc.stdout.readline().strip() == "DELIVERING"
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=30)
        proc.stdout.close()
    assert killed >= 10
    standin.faults.reset()
    events_path.write_text(json.dumps(every))
    groups = GROUPS
    final = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert "DRAINED" in final.stdout, final.stderr

    incidents = standin.incidents()
    assert len(incidents) == groups, [i["correlation_id"] for i in incidents]
    assert len({i["correlation_id"] for i in incidents}) == groups
    for incident in incidents:
        assert incident["state"] == "6"
        assert "3 devices" in incident["short_description"] or "device" in incident["description"]
        notes = [e["value"] for e in incident["_journal"] if e["field"] == "work_notes"]
        assert len(notes) == len(set(notes)), notes  # no note twice
        assert sum(n.startswith("All devices back") for n in notes) == 1
        for device in DEVICES:
            assert device in notes[-1]
