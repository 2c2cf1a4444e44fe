"""The whole pipeline on a laptop: `edge-agent simulate`, with the default settings."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from devtools.simulate import SimulationOptions, run


def simulate(**kwargs):
    return run(SimulationOptions(fast=True, **kwargs))


def standin_records(summary):
    from devtools.servicenow_standin import ServiceNowStandIn

    path = "{}/servicenow-standin.sqlite3".format(summary["state_dir"])
    server = ServiceNowStandIn(db_path=path)  # read the stand-in's store after the run
    try:
        return server.incidents()
    finally:
        server.stop()


def test_cli_humid_spell_fast_opens_an_incident_that_says_what_breached(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.cli",
            "simulate",
            "--scenario",
            "humid-spell",
            "--fast",
            "--json",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["incidents_opened"] >= 1
    for key in (
        "samples",
        "readings_published",
        "anomalies_published",
        "incidents_opened",
        "incidents_updated",
        "incidents_resolved",
        "actions_queued",
        "actions_dead_lettered",
        "actions_pending",
        "errors",
    ):
        assert key in summary
    incident = standin_records(summary)[0]
    assert "Humidity above limit on sim-pi" in incident["short_description"]
    assert "Metric: humidity" in incident["description"]
    assert "above the limit" in incident["description"]  # by how much
    assert "Device: sim-pi" in incident["description"]
    # The console was live and readable.
    assert "BREACH" in result.stderr and "opened incident INC" in result.stderr


def test_a_ten_minute_humid_spell_is_exactly_one_incident_resolved_after(tmp_path):
    summary = simulate(scenario="humid-spell", state_dir=str(tmp_path))
    assert summary["samples"] == 180  # 15 minutes at 5 s
    assert summary["incidents_opened"] == 1
    assert summary["incidents_resolved"] == 1
    calls = summary["servicenow_calls"]
    writes = calls["POST"] + calls["PATCH"] - summary["incidents_updated"]
    assert writes <= 3
    (incident,) = standin_records(summary)
    assert incident["state"] == "6"
    assert summary["secret_fetches"] == 1


def test_flapping_inside_the_hysteresis_band_opens_nothing(tmp_path):
    summary = simulate(scenario="flapping", state_dir=str(tmp_path))
    assert summary["anomalies_published"] == 0
    assert summary["incidents_opened"] == 0
    assert standin_records(summary) == []


def test_steady_conditions_open_nothing_and_publish_every_reading(tmp_path):
    summary = simulate(scenario="steady", state_dir=str(tmp_path), duration=300)
    assert summary["readings_published"] == summary["samples"] == 60
    assert summary["messages_to_cloud"] == 60
    assert summary["incidents_opened"] == 0


def _two_episode_csv(path):
    """Humidity: normal, 4 minutes high, normal, 4 minutes high, normal (5 s samples)."""
    rows = []
    t = 1_790_000_000
    profile = [40.0] * 12 + [65.0] * 48 + [40.0] * 24 + [66.0] * 48 + [40.0] * 60
    for i, humidity in enumerate(profile):
        rows.append((t + 5 * i, 22.0, humidity))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "temperature", "humidity"])
        writer.writerows(rows)
    return len(rows)


def test_servicenow_down_for_ten_minutes_across_two_episodes_delivers_both_once(tmp_path):
    replay = tmp_path / "two-episodes.csv"
    _two_episode_csv(replay)
    # Down from before the first breach until after the second recovery.
    summary = simulate(
        replay=str(replay), outages=[(30.0, 630.0)], state_dir=str(tmp_path / "state")
    )
    assert summary["drained"] is True
    assert summary["actions_pending"] == 0
    records = standin_records(summary)
    assert len(records) == 2
    assert len({r["correlation_id"] for r in records}) == 2
    assert all(r["state"] == "6" for r in records)
    assert summary["retries"] > 0


def test_replay_of_a_csv_drives_the_pipeline(tmp_path):
    replay = tmp_path / "r.csv"
    n = _two_episode_csv(replay)
    summary = simulate(replay=str(replay), state_dir=str(tmp_path / "s"))
    assert summary["samples"] == n
    assert summary["incidents_opened"] == 2


@pytest.mark.parametrize("scenario", ["io-errors", "invalid-zeros", "stuck", "noisy"])
def test_sensor_faults_never_crash_the_pipeline(scenario, tmp_path):
    summary = simulate(scenario=scenario, state_dir=str(tmp_path), duration=300)
    assert summary["samples"] == 60
    # Faults and noise around normal values are never taken for a breach.
    assert summary["anomalies_published"] == 0
    if scenario == "io-errors":
        assert summary["errors"]["sensor"] > 0
        assert summary["readings_published"] == 60 - summary["errors"]["sensor"]


def test_a_bad_variable_gives_a_clear_error_and_exit_code(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.cli",
            "simulate",
            "--fast",
            "--set",
            "humidLimit=wet",
            "--state-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "humidLimit must be a finite number, got 'wet'" in result.stderr


def test_the_outbox_command_shows_what_was_delivered(tmp_path):
    simulate(scenario="heat-spike", state_dir=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "devtools.cli", "outbox", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"]["pending"] == 0 and report["counts"]["incidents"] == 1


def test_real_time_mode_runs_the_delivery_worker_thread(tmp_path):
    # Not --fast: a real clock, the anomaly function's own worker thread. A breaching
    # replay, its rows 20 ms apart, makes it deliver something within a fraction of a second.
    replay = tmp_path / "hot.csv"
    replay.write_text(
        "timestamp,temperature,humidity\n"
        + "".join("{:.2f},35.0,40.0\n".format(1_790_000_000 + 0.02 * i) for i in range(8))
    )
    summary = run(SimulationOptions(replay=str(replay), state_dir=str(tmp_path / "s")))
    assert summary["samples"] == 8
    assert summary["drained"] is True
    assert summary["incidents_opened"] == 1
