"""``edge-agent simulate --at SECONDS:NAME=VALUE``: the shadow changed during a run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devtools.simulate import SimulationOptions, run
from devtools.simulation_changes import parse_changes


def simulate(**kwargs):
    return run(SimulationOptions(fast=True, **kwargs))


def edge_agent(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "devtools.cli", "simulate", "--fast", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_raising_the_limit_mid_spell_resolves_the_incident_early_and_says_so(tmp_path):
    result = edge_agent("--json", "--state-dir", str(tmp_path), "--at", "300:humidLimit=70")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["config_changes_applied"] == 1 and summary["config_changes_rejected"] == 0
    assert summary["incidents_opened"] == 1 and summary["incidents_resolved"] == 1
    assert summary["episodes"] == {"breach": 1, "update": 0, "recovered": 1}
    console = result.stderr
    assert "SHADOW    desired humidLimit=70" in console
    assert "CONFIG    applied humidLimit=70 (was 50)" in console
    # recovered three readings after the change at 300 s, not at the end of the spell (~720 s)
    lines = console.splitlines()
    applied = next(i for i, line in enumerate(lines) if "CONFIG    applied" in line)
    recovered = next(i for i, line in enumerate(lines) if "RECOVERED" in line)
    assert applied < recovered and "(limit 70%RH" in lines[recovered]
    assert summary["samples"] == summary["readings_published"] == 180


def test_an_invalid_value_is_shown_rejected_and_changes_nothing(tmp_path):
    result = edge_agent("--json", "--at", "100:humidLimit=-5", "--at", "110:debounceSamples=soon")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["config_changes_rejected"] == 2 and summary["config_changes_applied"] == 0
    assert "CONFIG    rejected humidLimit=-5: humidLimit must be between 0 and 100" in result.stderr
    assert "humidLimit stays 50" in result.stderr
    assert "debounceSamples must be a whole number, got 'soon'" in result.stderr
    assert "WARNING" not in result.stderr  # shown once, as a CONFIG line
    assert summary["incidents_opened"] == 1 and summary["incidents_resolved"] == 1  # as without


def test_lowering_the_limit_on_a_steady_day_opens_an_incident():
    summary = simulate(scenario="steady", duration=120, changes=parse_changes(["60:humidLimit=30"]))
    assert summary["episodes"]["breach"] == 1 and summary["incidents_opened"] == 1
    assert summary["config_changes_applied"] == 1


def test_a_change_during_an_outage_loses_nothing():
    summary = simulate(outages=[(60, 660)], changes=parse_changes(["300:humidLimit=70"]))
    assert summary["drained"] and summary["exit_code"] == 0
    assert summary["incidents_opened"] == 1 and summary["incidents_resolved"] == 1
    assert summary["incidents_in_standin"] == 1
    assert summary["actions_pending"] == 0 and summary["readings_published"] == 180


def test_a_new_period_sets_the_pace_from_the_next_reading():
    summary = simulate(scenario="steady", duration=600, changes=parse_changes(["60:period=10"]))
    # 0..55 s every 5 s (12), then 60..590 s every 10 s (54)
    assert summary["samples"] == 66 and summary["config_changes_applied"] == 1


def test_a_second_run_on_the_same_state_folder_keeps_the_value_and_the_episode(tmp_path):
    first = simulate(
        scenario="steady",
        duration=120,
        state_dir=str(tmp_path),
        changes=parse_changes(["30:humidLimit=30"]),
    )
    assert first["episodes"]["breach"] == 1
    again = simulate(scenario="steady", duration=60, state_dir=str(tmp_path))
    assert again["config_changes_applied"] == 1  # from the saved state, at the first reading
    assert again["episodes"] == {"breach": 0, "update": 0, "recovered": 0}  # still the same one
    assert again["incidents_in_standin"] == 1


@pytest.mark.parametrize(
    "at, message",
    [
        (
            "60:humidLimt=55",
            "unknown variable 'humidLimt' in --at 60:humidLimt=55; did you mean humidLimit?",
        ),
        ("60:readingsTopic=x", "readingsTopic cannot change while the functions run"),
        ("humidLimit=55", "--at takes SECONDS:NAME=VALUE"),
        ("soon:humidLimit=55", "SECONDS must be a number of seconds"),
        ("-5:humidLimit=55", "SECONDS must not be negative"),
        ("60:humidLimit=", "has no value"),
        ("5000:humidLimit=55", "is at or after the end of the run (900 s)"),
    ],
)
def test_a_bad_at_is_refused_before_the_run(at, message):
    result = edge_agent("--at", at)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "start " not in result.stderr
