"""deploy v2 plan / v1 plan --site NAME --devices N: a site's gateway and its Pis, offline,
every document checked against botocore's models."""

from __future__ import annotations

import json

import pytest
from test_deploy_support import (
    DEVICE_DISTS,
    STATE_DIR,
    make_site_packages,
    make_source_root,
    make_wheelhouse,
)

from deploy.cli import main
from deploy.v2.recipes import recipe_errors
from deploy.validation import validation_errors

READINGS, EPISODES = "IoTBlog/sensorData", "IoTBlog/anomaly"


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site-v2")
    out = tmp / "plan"
    code = main(
        ["v2", "plan", "--out", str(out), "--state", str(tmp / "none.json")]
        + ["--source-root", str(make_source_root(tmp / "src"))]
        + ["--site-packages", str(make_site_packages(tmp / "site", DEVICE_DISTS))]
        + ["--wheelhouse", str(make_wheelhouse(tmp / "wheels")), "--no-index"]
        + ["--package-dir", str(tmp / "pkg"), "--bucket", "artifacts"]
        + ["--site", "floor3", "--devices", "150"]
        + ["--rollout-per-minute", "5", "--abort-threshold", "20"]
    )
    assert code == 0
    return out


def load(out, name):
    return json.loads((out / name).read_text())


def test_the_gateway_deployment_has_the_client_device_components_and_a_staged_rollout(v2):
    deployment = load(v2, "deployment.json")
    assert validation_errors("greengrassv2", "CreateDeployment", deployment) == []
    assert deployment["targetArn"].endswith(":thinggroup/floor3-gateways")
    assert deployment["iotJobConfiguration"] == {
        "jobExecutionsRolloutConfig": {"maximumPerMinute": 5},
        "abortConfig": {
            "criteriaList": [
                {
                    "failureType": "FAILED",
                    "action": "CANCEL",
                    "thresholdPercentage": 20.0,
                    "minNumberOfExecutedThings": 1,
                }
            ]
        },
    }
    components = deployment["components"]
    auth = json.loads(
        components["aws.greengrass.clientdevices.Auth"]["configurationUpdate"]["merge"]
    )
    (group,) = auth["deviceGroups"]["definitions"].values()
    assert group["selectionRule"] == "thingName: floor3-pi-*"
    policy = auth["deviceGroups"]["policies"][group["policyName"]]
    published = [s for s in policy.values() if s["operations"] == ["mqtt:publish"]]
    assert published[0]["resources"] == ["mqtt:topic:" + READINGS, "mqtt:topic:" + EPISODES]
    assert "aws.greengrass.clientdevices.mqtt.Moquette" in components
    bridge = json.loads(
        components["aws.greengrass.clientdevices.mqtt.Bridge"]["configurationUpdate"]["merge"]
    )
    assert sorted(
        (m["topic"], m["source"], m["target"]) for m in bridge["mqttTopicMapping"].values()
    ) == [(EPISODES, "LocalMqtt", "Pubsub"), (READINGS, "LocalMqtt", "Pubsub")]
    gateway = json.loads(components["com.edgeagent.anomaly"]["configurationUpdate"]["merge"])
    assert gateway["site"] == "floor3"
    assert gateway["siteDevices"].split(",")[0] == "floor3-pi-0001"
    assert len(gateway["siteDevices"].split(",")) == 150


def test_the_gateway_may_subscribe_to_the_pis_readings(v2):
    assert recipe_errors(load(v2, "com.edgeagent.anomaly.recipe.json")) == []
    anomaly = load(v2, "deployment.json")["components"]["com.edgeagent.anomaly"]
    access = json.loads(anomaly["configurationUpdate"]["merge"])["accessControl"]
    subscribed = [
        resource
        for policy in access["aws.greengrass.ipc.pubsub"].values()
        if "aws.greengrass#SubscribeToTopic" in policy["operations"]
        for resource in policy["resources"]
    ]
    assert READINGS in subscribed and EPISODES in subscribed


def test_the_pis_documents_pass_botocore(v2):
    group = load(v2, "thing-group.json")
    assert validation_errors("iot", "CreateThingGroup", group) == []
    policy = load(v2, "site-device-iot-policy.json")
    params = {"policyName": "p", "policyDocument": json.dumps(policy)}
    assert validation_errors("iot", "CreatePolicy", params) == []
    batches = load(v2, "site-client-devices.json")["batches"]
    assert [len(b["entries"]) for b in batches] == [100, 50]  # the API takes 100 at a time
    for batch in batches:
        errors = validation_errors(
            "greengrassv2", "BatchAssociateClientDeviceWithCoreDevice", batch
        )
        assert errors == []
    assert (v2 / "site-devices.txt").read_text().split() == [
        "floor3-pi-{:04d}".format(i) for i in range(1, 151)
    ]


def test_v1_puts_the_pis_in_the_device_definition_subscribed_to_the_anomaly_function(tmp_path):
    out = tmp_path / "v1"
    code = main(
        ["v1", "plan", "--out", str(out), "--state", str(tmp_path / "none.json")]
        + ["--state-dir", STATE_DIR, "--site", "lab", "--devices", "3"]
    )
    assert code == 0
    devices = load(out, "device-definition.json")
    assert (
        validation_errors("greengrass", "CreateDeviceDefinition", {"InitialVersion": devices}) == []
    )
    assert [d["Id"] for d in devices["Devices"]] == ["lab-pi-0001", "lab-pi-0002", "lab-pi-0003"]
    subscriptions = load(out, "subscription-definition.json")
    params = {"InitialVersion": subscriptions}
    assert validation_errors("greengrass", "CreateSubscriptionDefinition", params) == []
    from_pis = [s for s in subscriptions["Subscriptions"] if ":thing/lab-pi-" in s["Source"]]
    assert len(from_pis) == 6
    assert {s["Subject"] for s in from_pis} == {READINGS, EPISODES}
    assert all(":function:edge-agent-anomaly:" in s["Target"] for s in from_pis)
    # Readings go to the gateway, not to IoT Core.
    assert not any(
        s["Subject"] == READINGS and s["Target"] == "cloud" for s in subscriptions["Subscriptions"]
    )


def test_a_site_without_devices_is_refused_with_the_reason(tmp_path, capsys):
    code = main(
        ["v1", "plan", "--out", str(tmp_path), "--state", str(tmp_path / "none.json")]
        + ["--site", "lab", "--devices", "0"]
    )
    assert code != 0
    assert "--devices must be 1 to" in capsys.readouterr().err
