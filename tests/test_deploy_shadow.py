"""``deploy set`` / ``deploy get``: one device's limits through its cloud shadow, against moto's iot-data.

The last test closes the loop: what ``set`` wrote in the cloud shadow reaches a
device (both functions on the local core, its shadow sync emulated by copying
desired down and reported up), which applies and reports it, and ``get`` says so.
"""

from __future__ import annotations

import json

import boto3
import pytest
from conftest import secret_json
from moto import mock_aws
from test_deploy_support import fake_aws

from agent.clock import VirtualClock
from agent.sensors import open_sensor
from agent.standalone.group import LocalGroup, function_environments
from agent.topology import default_topology
from deploy.cli import main

THING = "pi-kitchen"
REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    fake_aws(monkeypatch)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        boto3.client("iot", region_name=REGION).create_thing(thingName=THING)
        yield boto3.client("iot-data", region_name=REGION)


def deploy(tmp_path, *args):
    return main([args[0], "--state", str(tmp_path / "state.json"), "--region", REGION, *args[1:]])


def shadow(iot_data):
    return json.loads(iot_data.get_thing_shadow(thingName=THING)["payload"].read())


def test_set_writes_desired_and_get_shows_it_pending(aws, tmp_path, capsys):
    code = deploy(tmp_path, "set", "--thing", THING, "humidLimit=55", "tempLimit=28.5")
    out = capsys.readouterr().out
    assert code == 0, out
    assert shadow(aws)["state"]["desired"] == {"sensor": {"humidLimit": 55, "tempLimit": 28.5}}
    assert "thing pi-kitchen: desired.sensor humidLimit=55 tempLimit=28.5 (shadow version 1)" in out
    assert deploy(tmp_path, "get", "--thing", THING) == 0
    table = capsys.readouterr().out
    assert "humidLimit" in table and "pending: the device has not reported it yet" in table
    assert "the device has not reported yet" in table


def test_a_value_the_device_would_refuse_is_refused_and_nothing_is_sent(aws, tmp_path, capsys):
    assert deploy(tmp_path, "set", "--thing", THING, "humidLowLimit=40") == 0
    capsys.readouterr()
    code = deploy(tmp_path, "set", "--thing", THING, "humidLimit=35")  # below the low limit
    err = capsys.readouterr().err
    assert code == 2
    assert "humidLowLimit (40.0) must be below humidLimit (35.0)" in err
    assert "nothing was sent" in err
    assert shadow(aws)["version"] == 1


@pytest.mark.parametrize(
    "value, message",
    [
        ("humidLimit=-5", "humidLimit must be between 0 and 100 %RH"),
        ("humidLimt=55", "did you mean humidLimit?"),
        ("readingsTopic=x", "readingsTopic cannot change while the functions run"),
        ("humidLimit=", "no value"),
        ("humidLimit", "NAME=VALUE"),
    ],
)
def test_bad_values_are_usage_errors_before_any_call(aws, tmp_path, capsys, value, message):
    assert deploy(tmp_path, "set", "--thing", THING, value) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        aws.get_thing_shadow(thingName=THING)


def test_null_removes_the_override(aws, tmp_path, capsys):
    deploy(tmp_path, "set", "--thing", THING, "humidLimit=55", "period=10")
    assert deploy(tmp_path, "set", "--thing", THING, "humidLimit=null") == 0
    assert shadow(aws)["state"]["desired"] == {"sensor": {"period": 10}}


def test_get_of_a_thing_without_a_shadow_says_so(aws, tmp_path, capsys):
    assert deploy(tmp_path, "get", "--thing", THING) == 1
    err = capsys.readouterr().err
    assert "thing 'pi-kitchen' has no shadow in us-east-1" in err and "Traceback" not in err


def test_without_a_thing_name_it_asks_for_one(aws, tmp_path, capsys):
    assert deploy(tmp_path, "get") == 1
    assert "pass --thing NAME" in capsys.readouterr().err


def test_dry_run_shows_the_calls_and_needs_no_credentials(tmp_path, capsys, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    code = deploy(tmp_path, "set", "--dry-run", "--thing", THING, "humidLimit=55")
    out = capsys.readouterr().out
    assert code == 0
    assert "[dry-run] iot-data.GetThingShadow thingName=pi-kitchen" in out
    assert "[dry-run] iot-data.UpdateThingShadow payload=<" in out


def test_set_reaches_the_device_which_applies_and_reports_it(
    aws, tmp_path, capsys, standin, password
):
    clock = VirtualClock()
    sensor_env, anomaly_env = function_environments(
        default_topology(), {"deviceId": THING, "stateDir": str(tmp_path)}, {"snowUrl": standin.url}
    )
    fake = open_sensor("fake", clock=clock, scenario="steady")
    with LocalGroup(
        sensor_env, anomaly_env, clock, sensor=fake, secret_value=secret_json(password)
    ) as group:
        core, sensor = group.core, group.sensor

        def sync():  # the core's shadow sync: desired down, reported up
            cloud = shadow(aws)
            desired = cloud["state"].get("desired")
            if desired:
                core.update_shadow_from_cloud(THING, {"state": {"desired": desired}})
            local = core.shadows.document(THING)["state"]
            aws.update_thing_shadow(
                thingName=THING,
                payload=json.dumps({"state": {"reported": local["reported"]}}).encode(),
            )

        assert deploy(tmp_path, "set", "--thing", THING, "humidLimit=55", "debounceSamples=0") == 2
        assert deploy(tmp_path, "set", "--thing", THING, "humidLimit=55") == 0
        sync()
        sensor.tick()  # applied at the next reading, then reported
        sync()
        capsys.readouterr()
        assert deploy(tmp_path, "get", "--thing", THING) == 0
        table = capsys.readouterr().out
        [row] = [line for line in table.splitlines() if line.startswith("humidLimit ")]
        assert row.split()[:3] == ["humidLimit", "55", "55"]
        assert "in force (from the shadow)" in row
        # converged: nothing of the sensor's left in the delta (moto keeps an empty {"sensor": {}})
        assert not shadow(aws)["state"].get("delta", {}).get("sensor")
        assert sensor.settings.limits[1].upper == 55.0
