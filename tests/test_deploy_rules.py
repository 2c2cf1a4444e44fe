"""AWS's documented rules: ``plan`` and ``up`` refuse what a core or IAM would refuse later.

Each rule: a topology (or document) that breaks it is refused with a message naming
the resource, the rule and the AWS document; the valid neighbours pass.
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from test_deploy_support import STATE_DIR, fake_aws, test_topology

from agent.topology import (
    CLOUD,
    DeviceResource,
    ResourceAccess,
    Subscription,
    VolumeResource,
    default_topology,
)
from deploy.cli import main
from deploy.roles import greengrass_trust_policy, lambda_trust_policy, service_trust_policy
from deploy.validation import trust_policy_violations

ACCOUNT = "123456789012"


def plan(tmp_path, capsys, topology, *args):
    out = tmp_path / "plan"
    code = main(
        ["v1", "plan", "--out", str(out), "--state", str(tmp_path / "none.json"), *args],
        topology=topology,
    )
    captured = capsys.readouterr()
    return code, captured.out + captured.err, out


def with_volume(source, destination=None, permission="rw"):
    """The test topology plus one more volume, granted to the sensor function."""
    topology = test_topology()
    volume = VolumeResource("extra-volume", source, destination or source)
    sensor = topology.function("sensor")
    sensor = sensor.with_changes(
        resource_access=sensor.resource_access + (ResourceAccess(volume.id, permission),)
    )
    return topology.with_changes(
        volumes=topology.volumes + (volume,),
        functions=(sensor, topology.function("anomaly")),
    )


@pytest.mark.parametrize(
    "source", ["/var/lib/edge-agent", "/var", "/sys/class/thermal", "/dev/input", "/dev"]
)
def test_volume_sources_under_sys_dev_var_are_refused(tmp_path, capsys, source):
    code, text, out = plan(tmp_path, capsys, with_volume(source, "/data"))
    assert code == 1
    assert "resource 'extra-volume': volume source {} is under".format(source) in text
    assert "except under /sys, /dev or /var" in text
    assert "Access local resources with Lambda functions and connectors" in text
    assert "Traceback" not in text
    assert not out.exists()  # nothing written for review that could not be deployed


def test_the_default_state_volume_under_var_is_refused_with_a_way_out(tmp_path, capsys):
    topology = default_topology().with_changes(
        volumes=(VolumeResource("edge-agent-state", "/var/lib/edge-agent", "/var/lib/edge-agent"),),
    )
    code, text, _ = plan(tmp_path, capsys, topology)
    assert code == 1 and "resource 'edge-agent-state'" in text
    assert "--state-dir" in text  # what to do instead
    code, text, out = plan(tmp_path, capsys, topology, "--state-dir", STATE_DIR)
    assert code == 0, text
    resources = json.loads((out / "resource-definition.json").read_text())["Resources"]
    volume = [r for r in resources if r["Id"] == "edge-agent-state"][0]
    assert volume["ResourceDataContainer"]["LocalVolumeResourceData"]["SourcePath"] == STATE_DIR


@pytest.mark.parametrize(
    "source,destination,permission",
    [
        ("/opt/edge-agent/extra", "/data", "rw"),
        ("/variable-data", "/data", "rw"),  # /var only as a whole path component
        ("/dev/shm", "/dev/shm", "rw"),  # the documented exception
        ("/proc/net", "/host-proc/net", "ro"),
    ],
)
def test_valid_volumes_pass(tmp_path, capsys, source, destination, permission):
    code, text, _ = plan(tmp_path, capsys, with_volume(source, destination, permission))
    assert code == 0, text


@pytest.mark.parametrize(
    "source,destination,permission,problem",
    [
        ("/dev/shm", "/dev/shm", "ro", "permission 'ro' on /dev/shm"),
        ("/proc/net", "/host-proc/net", "rw", "permission 'rw' on a /proc volume"),
        ("/proc", "/proc", "ro", "volume destination /proc is under /proc"),
        ("relative/dir", "/data", "rw", "volume source 'relative/dir' is not an absolute path"),
        ("/opt/x/../../var", "/data", "rw", "is not a normalized path"),
        ("/opt/edge-agent/extra", "/", "rw", "volume destination is /"),
    ],
)
def test_volume_permission_and_destination_rules(
    tmp_path, capsys, source, destination, permission, problem
):
    code, text, _ = plan(tmp_path, capsys, with_volume(source, destination, permission))
    assert code == 1 and problem in text, text


@pytest.mark.parametrize("path", ["/opt/i2c-1", "/dev/shm/ring", "dev/i2c-1", "/dev"])
def test_device_resources_must_be_device_files_under_dev(tmp_path, capsys, path):
    topology = test_topology()
    topology = topology.with_changes(
        devices=tuple(
            DeviceResource(d.id, path) if d.id == "i2c-bus" else d for d in topology.devices
        ),
    )
    code, text, _ = plan(tmp_path, capsys, topology)
    assert code == 1 and "resource 'i2c-bus': device source" in text, text
    assert "character or block device under /dev" in text


def test_secret_resources_are_read_only(tmp_path, capsys):
    topology = test_topology()
    anomaly = topology.function("anomaly")
    anomaly = anomaly.with_changes(
        resource_access=tuple(
            ResourceAccess(a.resource_id, "rw") if a.resource_id == "snow-credentials" else a
            for a in anomaly.resource_access
        ),
    )
    topology = topology.with_changes(functions=(topology.function("sensor"), anomaly))
    code, text, _ = plan(tmp_path, capsys, topology)
    assert code == 1
    assert "function 'anomaly', resource 'snow-credentials': permission 'rw' on a secret" in text
    assert "Only 'ro' is supported for secret resources" in text
    assert "Deploy secrets to the core" in text


@pytest.mark.parametrize(
    "endpoint,problem",
    [
        ("arn:aws:lambda:us-east-1:123456789012:function:other", "is unqualified"),
        ("arn:aws:lambda:us-east-1:123456789012:function:other:$LATEST", "points at $LATEST"),
        ("arn:aws:sns:us-east-1:123456789012:topic", "is neither a qualified function ARN"),
    ],
)
def test_subscriptions_reference_functions_by_version_or_alias_only(
    tmp_path, capsys, endpoint, problem
):
    topology = test_topology()
    extra = Subscription("to-other", "sensor", "IoTBlog/anomaly", endpoint)
    topology = topology.with_changes(subscriptions=topology.subscriptions + (extra,))
    code, text, _ = plan(tmp_path, capsys, topology)
    assert code == 1, text
    assert "subscription 'to-other': target" in text and problem in text
    assert "Reference Lambda functions by alias or version" in text


@pytest.mark.parametrize(
    "endpoint",
    [
        "arn:aws:lambda:us-east-1:123456789012:function:other:7",
        "arn:aws:lambda:us-east-1:123456789012:function:other:prod",
        "arn:aws:iot:us-east-1:123456789012:thing/sensor-device",
        CLOUD,
        "GGShadowService",
    ],
)
def test_qualified_functions_devices_cloud_and_shadow_are_valid_targets(tmp_path, capsys, endpoint):
    topology = test_topology()
    extra = Subscription("to-other", "sensor", "IoTBlog/anomaly", endpoint)
    topology = topology.with_changes(subscriptions=topology.subscriptions + (extra,))
    code, text, _ = plan(tmp_path, capsys, topology)
    assert code == 0, text


def test_every_broken_rule_is_reported_at_once(tmp_path, capsys):
    topology = with_volume("/sys/kernel", "/data")
    extra = Subscription("to-latest", "sensor", "x/y", "arn:aws:lambda:us-east-1:1:function:f")
    topology = topology.with_changes(subscriptions=topology.subscriptions + (extra,))
    code, text, _ = plan(tmp_path, capsys, topology)
    assert code == 1
    assert "2 of AWS's documented rules broken" in text
    assert "resource 'extra-volume'" in text and "subscription 'to-latest'" in text


# --- trust policies (confused deputy) -----------------------------------------------------


def test_trust_policies_carry_source_conditions(tmp_path, capsys):
    code, text, out = plan(tmp_path, capsys, test_topology(), "--account", ACCOUNT)
    assert code == 0, text
    group = json.loads((out / "edge-agent-greengrass-group-role-trust.json").read_text())
    condition = group["Statement"][0]["Condition"]
    assert condition == {
        "ArnLike": {"aws:SourceArn": "arn:aws:greengrass:us-east-1:{}:*".format(ACCOUNT)},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }
    service = json.loads((out / "edge-agent-greengrass-service-role-trust.json").read_text())
    assert service == group
    lam = json.loads((out / "edge-agent-lambda-role-trust.json").read_text())
    assert lam["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


@pytest.mark.parametrize(
    "trust,problem",
    [
        (service_trust_policy("greengrass.amazonaws.com"), "without aws:SourceArn"),
        (
            greengrass_trust_policy("aws", "us-east-1", "999999999999"),
            "without aws:SourceArn = account " + ACCOUNT,
        ),
        (service_trust_policy("lambda.amazonaws.com"), "without aws:SourceAccount"),
    ],
)
def test_a_trust_policy_without_source_conditions_is_a_violation(trust, problem):
    found = trust_policy_violations("my-role", trust, ACCOUNT)
    assert found and problem in str(found[0]) and "role 'my-role'" in str(found[0])
    assert "confused deputy" in str(found[0])


def test_the_documented_trust_policies_pass():
    assert (
        trust_policy_violations("r", greengrass_trust_policy("aws", "eu-west-1", ACCOUNT), ACCOUNT)
        == []
    )
    assert trust_policy_violations("r", lambda_trust_policy(ACCOUNT), ACCOUNT) == []
    # the token exchange role: AWS documents no source keys for the IoT credentials provider
    trust = service_trust_policy("credentials.iot.amazonaws.com")
    assert trust_policy_violations("r", trust, ACCOUNT) == []


@pytest.fixture
def aws(monkeypatch):
    fake_aws(monkeypatch)
    with mock_aws():
        yield


def test_up_gives_its_roles_the_conditions_and_fixes_roles_it_made_before(aws, tmp_path, capsys):
    from test_deploy_support import DEVICE_DISTS, make_site_packages, make_source_root

    src = make_source_root(tmp_path / "src")
    site = make_site_packages(tmp_path / "site", DEVICE_DISTS)
    secret = tmp_path / "snow.json"
    secret.write_text(json.dumps({"username": "u", "password": "p"}))
    secret.chmod(0o600)
    argv = ["v1", "up", "--state", str(tmp_path / "state.json"), "--state-dir", STATE_DIR]
    argv += ["--source-root", str(src), "--site-packages", str(site), "--no-wait"]
    argv += ["--package-dir", str(tmp_path / "pkg"), "--certs-dir", str(tmp_path / "certs")]
    assert main(argv + ["--create-secret", "--secret-file", str(secret)]) == 0, capsys.readouterr()
    iam = boto3.client("iam")
    account = boto3.client("sts").get_caller_identity()["Account"]

    def trust(name):
        return iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]

    assert trust("edge-agent-greengrass-group-role") == greengrass_trust_policy(
        "aws", "us-east-1", account
    )
    assert trust("edge-agent-lambda-role") == lambda_trust_policy(account)
    # a role an earlier version of up created without conditions
    iam.update_assume_role_policy(
        RoleName="edge-agent-greengrass-group-role",
        PolicyDocument=json.dumps(service_trust_policy("greengrass.amazonaws.com")),
    )
    capsys.readouterr()
    assert main(argv) == 0
    assert "role edge-agent-greengrass-group-role: trust policy updated" in capsys.readouterr().out
    assert trust("edge-agent-greengrass-group-role") == greengrass_trust_policy(
        "aws", "us-east-1", account
    )
