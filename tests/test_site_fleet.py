"""``simulate --fleet``: N sensor functions and one gateway, against the ServiceNow stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import secret_json

from agent.errors import ConfigError
from devtools.fleet import FleetOptions, run_fleet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def notes(incident):
    return [e["value"] for e in incident["_journal"] if e["field"] == "work_notes"]


def fleet(standin, password, tmp_path, **kwargs):
    secret = tmp_path / "secret.json"
    secret.write_text(secret_json(password))
    options = FleetOptions(snow_url=standin.url, secret_file=str(secret), fast=True, **kwargs)
    return run_fleet(options)


def test_a_humid_spell_on_fifty_pis_is_one_incident_that_names_every_device(
    standin, password, tmp_path
):
    summary = fleet(standin, password, tmp_path, devices=50, scenario="site-humid-spell")
    (incident,) = standin.incidents()
    assert incident["state"] == "6"
    (group,) = summary["groups"]
    assert summary["servicenow_calls"] <= 12
    assert group["servicenow_calls"] == summary["servicenow_calls"]
    breached = sorted(group["members"])
    assert 40 <= len(breached) < 50  # nine in ten devices
    said = incident["description"] + " ".join(notes(incident))
    for device in breached:
        assert device in said
    assert all(device in notes(incident)[-1] for device in breached)
    assert summary["episodes"]["breach"] == len(breached)


def test_a_switch_failure_is_one_incident_listing_the_silent_devices(standin, password, tmp_path):
    summary = fleet(standin, password, tmp_path, devices=30, scenario="switch-failure")
    (incident,) = standin.incidents()
    assert incident["short_description"] == "No readings from 10 devices at site sim-site"
    assert incident["state"] == "6"
    (group,) = summary["groups"]
    assert group["members"] == ["pi-{:04d}".format(i + 1) for i in range(0, 30, 3)]


def test_a_replay_with_a_device_column_is_a_site(standin, password, tmp_path):
    rows = ["device,timestamp,temperature,humidity"]
    for i in range(60):
        ts = 1_790_000_000 + 5 * i
        for device in ("pi-a", "pi-b", "pi-c"):
            humid = 60.0 if device != "pi-c" and 10 <= i < 40 else 40.0
            rows.append("{},{},22.0,{}".format(device, ts, humid))
    path = tmp_path / "site.csv"
    path.write_text("\n".join(rows) + "\n")
    summary = fleet(standin, password, tmp_path, devices=0, replay=str(path))
    assert summary["devices"]["count"] == 3
    (incident,) = standin.incidents()
    (group,) = summary["groups"]
    assert group["members"] == ["pi-a", "pi-b"]
    assert incident["state"] == "6"


def test_a_fleet_needs_a_site_story():
    with pytest.raises(ConfigError, match="--fleet runs a site's story"):
        run_fleet(FleetOptions(devices=3, scenario="heat-spike", fast=True))


def test_the_command_groups_its_lines_by_incident_and_says_what_each_cost(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "devtools.cli",
            "simulate",
            "--fleet",
            "12",
            "--scenario",
            "site-humid-spell",
            "--fast",
            "--duration",
            "1800",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["devices"]["count"] == 12
    # The documented shape, each field once, under its own schema name.
    from devtools.summary_fields import FLEET_FIELDS, FLEET_SUMMARY_SCHEMA, markdown_table

    assert summary["schema"] == FLEET_SUMMARY_SCHEMA
    found = {k for k in summary if k not in ("devices", "episodes")}
    found |= {"{}.{}".format(k, inner) for k in ("devices", "episodes") for inner in summary[k]}
    assert found == {f.name for f in FLEET_FIELDS}
    with open(os.path.join(REPO, "docs", "site.md"), encoding="utf-8") as handle:
        docs = handle.read()
    assert markdown_table(FLEET_FIELDS) in docs
    (group,) = summary["groups"]
    assert group["servicenow_calls"] > 0 and group["actions"][0] == "opened"
    number = group["number"]
    block = [line for line in done.stderr.splitlines() if number in line]
    assert any("opened" in line for line in block) and any("resolved" in line for line in block)


def test_the_site_topology_routes_readings_to_the_gateway_and_sets_its_variables():
    from agent.config import check_group
    from agent.names import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID
    from agent.site.topology import site_topology

    topology = site_topology(
        "floor-3", ["pi-1", "pi-2"], {"period": "10", "groupWaitSeconds": "45"}
    )
    check_group(topology)  # every function's variables pass the one validation
    gateway = topology.function(ANOMALY_FUNCTION_ID).environment
    assert gateway["site"] == "floor-3" and gateway["siteDevices"] == "pi-1,pi-2"
    assert gateway["period"] == "10" and gateway["groupWaitSeconds"] == "45"
    routes = {(s.source, s.subject, s.target) for s in topology.subscriptions}
    readings = topology.function(SENSOR_FUNCTION_ID).environment["readingsTopic"]
    assert (SENSOR_FUNCTION_ID, readings, ANOMALY_FUNCTION_ID) in routes
    assert (SENSOR_FUNCTION_ID, readings, "cloud") not in routes
