"""v2 up, v2 status, v2 destroy against moto (IoT, IAM, S3, Secrets Manager, STS) and,
since moto has no greengrassv2, botocore's Stubber for those calls (it checks every
request against the service model; moto's calls go through botocore's validation too).
"""

from __future__ import annotations

import datetime
import json
import stat

import boto3
import pytest
import yaml
from botocore.stub import ANY, Stubber
from moto import mock_aws
from test_deploy_support import (
    DEVICE_DISTS,
    STATE_DIR,
    fake_aws,
    make_site_packages,
    make_source_root,
    make_wheelhouse,
    test_topology,
)

from agent.topology import default_topology
from deploy.awsapi import Api
from deploy.cli import main
from deploy.errors import DeployError, DeploymentFailed, DeploymentTimedOut
from deploy.package import PackageOptions
from deploy.state import State
from deploy.v2 import SECRET_MANAGER, V2Deployer, V2Options, recipe_errors
from deploy.v2.core_documents import core_iot_policy, token_exchange_access_policy
from deploy.v2.recipes import SHADOW_MANAGER

REGION = "us-east-1"
THING = "edge-agent-core"
GROUP_ARN = "arn:aws:iot:us-east-1:123456789012:thinggroup/pis"
WHEN = datetime.datetime(2026, 1, 1)


@pytest.fixture
def aws(monkeypatch):
    fake_aws(monkeypatch)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="artifacts")
        boto3.client("secretsmanager").create_secret(
            Name="greengrass-snow-creds", SecretString="{}"
        )
        yield


class V2Setup:
    """One project, one Stubber for greengrassv2, moto for the rest."""

    def __init__(self, tmp_path) -> None:
        self.tmp = tmp_path
        self.src = make_source_root(tmp_path / "src")
        self.site = make_site_packages(tmp_path / "site", DEVICE_DISTS)
        self.wheelhouse = make_wheelhouse(tmp_path / "wheels")
        self.certs = tmp_path / "certs"
        self.state_path = tmp_path / "state.json"
        self.lines = []
        self.client = boto3.client("greengrassv2", region_name=REGION)
        self.stub = Stubber(self.client)
        self.recipes = []
        self.deployments = []
        self.client.meta.events.register(
            "provide-client-params.greengrassv2.CreateComponentVersion",
            lambda params, **kw: self.recipes.append(json.loads(params["inlineRecipe"])),
        )
        self.client.meta.events.register(
            "provide-client-params.greengrassv2.CreateDeployment",
            lambda params, **kw: self.deployments.append(params),
        )

    @property
    def out(self) -> str:
        return "\n".join(self.lines)

    def deployer(self, topology=None, **overrides):
        options = V2Options(
            bucket="artifacts",
            packaging=PackageOptions(
                package_dir=self.tmp / "pkg", source_root=self.src, site_packages=self.site
            ),
            wheelhouse=self.wheelhouse,
            no_index=True,
            certs_dir=self.certs,
            version="1.0.0",
            poll_interval=1,
            timeout=30,
        )
        for key, value in overrides.items():
            setattr(options, key, value)
        api = Api(REGION, clients={"greengrassv2": self.client}, out=self.lines.append)
        state = State.load(self.state_path)
        return V2Deployer(api, topology or test_topology(), state, options, out=self.lines.append)

    def state(self):
        return json.loads(self.state_path.read_text())

    def component_arn(self, fid):
        return (
            "arn:aws:greengrass:{}:123456789012:components:com.edgeagent.{}:versions:1.0.0".format(
                REGION, fid
            )
        )

    # -- expected greengrassv2 calls --------------------------------------------------

    def expect_secret_manager_versions(self):
        """The AWS-provided components v2 up deploys: SecretManager, then ShadowManager."""
        self.stub.add_response(
            "list_component_versions",
            {
                "componentVersions": [
                    {"componentName": SECRET_MANAGER, "componentVersion": "2.1.8", "arn": "a"},
                    {"componentName": SECRET_MANAGER, "componentVersion": "2.2.3", "arn": "b"},
                ]
            },
            {"arn": "arn:aws:greengrass:us-east-1:aws:components:" + SECRET_MANAGER},
        )
        self.stub.add_response(
            "list_component_versions",
            {
                "componentVersions": [
                    {"componentName": SHADOW_MANAGER, "componentVersion": "2.3.9", "arn": "c"},
                    {"componentName": SHADOW_MANAGER, "componentVersion": "2.3.12", "arn": "d"},
                ]
            },
            {"arn": "arn:aws:greengrass:us-east-1:aws:components:" + SHADOW_MANAGER},
        )

    def expect_new_components(self):
        for fid in ("sensor", "anomaly"):
            arn = self.component_arn(fid)
            self.stub.add_client_error(
                "describe_component",
                "ResourceNotFoundException",
                http_status_code=404,
                expected_params={"arn": arn},
            )
            self.stub.add_response(
                "create_component_version",
                {
                    "arn": arn,
                    "componentName": "com.edgeagent." + fid,
                    "componentVersion": "1.0.0",
                    "creationTimestamp": WHEN,
                    "status": {"componentState": "REQUESTED", "message": "accepted"},
                },
                {"inlineRecipe": ANY},
            )
            self.stub.add_response(
                "describe_component",
                {"arn": arn, "status": {"componentState": "DEPLOYABLE"}},
                {"arn": arn},
            )

    def expect_existing_components(self):
        for fid in ("sensor", "anomaly"):
            arn = self.component_arn(fid)
            self.stub.add_response("describe_component", {"arn": arn}, {"arn": arn})

    def expect_deployment(self, deployment_id="d-1"):
        self.stub.add_response("create_deployment", {"deploymentId": deployment_id})

    def expect_core_device(self, thing=THING, connected=True):
        if connected:
            self.stub.add_response(
                "get_core_device",
                {
                    "coreDeviceThingName": thing,
                    "status": "HEALTHY",
                    "lastStatusUpdateTimestamp": WHEN,
                },
                {"coreDeviceThingName": thing},
            )
        else:
            self.stub.add_client_error(
                "get_core_device",
                "ResourceNotFoundException",
                http_status_code=404,
                expected_params={"coreDeviceThingName": thing},
            )

    def expect_effective(self, thing, status, deployment_id="d-1", **extra):
        entries = []
        if status is not None:
            entry = {
                "deploymentId": deployment_id,
                "deploymentName": "edge-agent",
                "iotJobId": "j",
                "targetArn": "t",
                "coreDeviceExecutionStatus": status,
                "creationTimestamp": WHEN,
                "modifiedTimestamp": WHEN,
            }
            entry.update(extra)
            entries.append(entry)
        self.stub.add_response(
            "list_effective_deployments",
            {"effectiveDeployments": entries},
            {"coreDeviceThingName": thing},
        )

    def expect_group_devices(self, *things):
        self.stub.add_response(
            "list_core_devices",
            {
                "coreDevices": [
                    {
                        "coreDeviceThingName": t,
                        "status": "HEALTHY",
                        "lastStatusUpdateTimestamp": WHEN,
                    }
                    for t in things
                ]
            },
            {"thingGroupArn": GROUP_ARN},
        )

    def first_up(self, connected=False, **overrides):
        self.expect_secret_manager_versions()
        self.expect_new_components()
        self.expect_deployment()
        self.expect_core_device(connected=connected)
        with self.stub:
            code = self.deployer(**overrides).up()
            self.stub.assert_no_pending_responses()
        return code


@pytest.fixture
def v2(aws, tmp_path, monkeypatch):
    import deploy.awsapi

    monkeypatch.setattr(deploy.awsapi, "_sleep", lambda s: None)
    return V2Setup(tmp_path)


def test_v2_up_creates_a_core_a_nucleus_can_be_installed_with(v2):
    assert v2.first_up() == 0
    iot, iam = boto3.client("iot"), boto3.client("iam")
    account = boto3.client("sts").get_caller_identity()["Account"]
    state = v2.state()["v2"]
    # the thing, its active certificate (key on disk, 0600) and the scoped policy
    cert_arn = state["certificate"]["arn"]
    assert iot.list_thing_principals(thingName=THING)["principals"] == [cert_arn]
    key = v2.certs / state["certificate"]["key_file"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "PRIVATE KEY" in key.read_text()
    policies = iot.list_attached_policies(target=cert_arn)["policies"]
    assert [p["policyName"] for p in policies] == ["edge-agent-core-v2-policy"]
    document = json.loads(iot.get_policy(policyName="edge-agent-core-v2-policy")["policyDocument"])
    assert document == core_iot_policy(
        test_topology(), REGION, account, THING, "edge-agent-token-exchange-alias"
    )
    # the token exchange role, its permissions and the role alias
    role = iam.get_role(RoleName="edge-agent-token-exchange-role")["Role"]
    principal = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "credentials.iot.amazonaws.com"}
    access = iam.get_role_policy(
        RoleName="edge-agent-token-exchange-role", PolicyName="edge-agent-token-exchange-access"
    )["PolicyDocument"]
    secret = boto3.client("secretsmanager").describe_secret(SecretId="greengrass-snow-creds")["ARN"]
    assert access == token_exchange_access_policy(
        "aws", "artifacts", "edge-agent/artifacts", [secret]
    )
    alias = iot.describe_role_alias(roleAlias="edge-agent-token-exchange-alias")
    assert alias["roleAliasDescription"]["roleArn"] == role["Arn"]
    # the components and the deployment
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="artifacts")["Contents"]]
    # the code, and the wheels each architecture installs offline (armv7l has none)
    assert sorted(keys) == [
        "edge-agent/artifacts/com.edgeagent.{0}/1.0.0/edge-agent-{0}-v2{1}.zip".format(fid, kind)
        for fid in ("anomaly", "sensor")
        for kind in ("-wheels-aarch64", "-wheels-amd64", "")
    ]
    assert all(recipe_errors(r) == [] for r in v2.recipes)
    assert state["deployment"]["id"] == "d-1"
    # what the Pi needs: config.yaml with this account's endpoints, and the install script
    config = yaml.safe_load((v2.certs / "config.yaml").read_text())
    nucleus = config["services"]["aws.greengrass.Nucleus"]["configuration"]
    assert nucleus == {
        "awsRegion": REGION,
        "iotRoleAlias": "edge-agent-token-exchange-alias",
        "iotDataEndpoint": state["iot_endpoint"],  # as DescribeEndpoint answered
        "iotCredEndpoint": state["credentials_endpoint"],
        # {iot:thingName} in a thing group deployment's access control (the shadow)
        "interpolateComponentConfiguration": True,
    }
    assert nucleus["iotDataEndpoint"].endswith("-ats.iot.us-east-1.amazonaws.com")
    assert nucleus["iotCredEndpoint"].endswith(".credentials.iot.us-east-1.amazonaws.com")
    assert config["system"]["thingName"] == THING
    assert (
        config["system"]["privateKeyPath"] == "/greengrass/v2/" + state["certificate"]["key_file"]
    )
    script = (v2.certs / "install-on-pi.sh").read_text()
    assert "install -d -o 1000 -g 1000 -m 0750 {}".format(STATE_DIR) in script
    assert (
        "install -m 0600 {} {} /greengrass/v2/".format(
            state["certificate"]["cert_file"], state["certificate"]["key_file"]
        )
        in script
    )
    assert (
        'java -Droot="/greengrass/v2" -Dlog.store=FILE -jar ./GreengrassInstaller/lib/'
        "Greengrass.jar --init-config ./config.yaml --component-default-user ggc_user:ggc_group "
        "--setup-system-service true" in v2.out
    )
    # not installed yet: no waiting for a core that cannot answer
    assert "core device edge-agent-core has not connected yet" in v2.out


def test_v2_up_again_changes_nothing(v2):
    v2.first_up()
    iot = boto3.client("iot")
    versions = iot.list_policy_versions(policyName="edge-agent-core-v2-policy")["policyVersions"]
    v2.lines.clear()
    v2.expect_secret_manager_versions()
    v2.expect_existing_components()
    with v2.stub:
        assert v2.deployer().up() == 0
        v2.stub.assert_no_pending_responses()  # no create_component_version/create_deployment
    assert "v2 deployment: unchanged (d-1)" in v2.out and "v2 up: nothing changed" in v2.out
    assert "before the first breach: check ServiceNow with  edge-agent check-servicenow" in v2.out
    assert iot.list_policy_versions(policyName="edge-agent-core-v2-policy")["policyVersions"] == (
        versions
    )
    assert len(iot.list_certificates()["certificates"]) == 1


def test_a_changed_limit_is_a_new_deployment_of_the_same_versions(v2):
    v2.first_up()
    v2.lines.clear()
    v2.expect_secret_manager_versions()
    v2.expect_existing_components()
    v2.expect_deployment("d-2")
    v2.expect_core_device(connected=True)
    v2.expect_effective(THING, "IN_PROGRESS", "d-2")
    v2.expect_effective(THING, "SUCCEEDED", "d-2")
    topology = test_topology(environment={"sensor": {"tempLimit": "28"}})
    with v2.stub:
        assert v2.deployer(topology).up() == 0
        v2.stub.assert_no_pending_responses()
    assert len(v2.recipes) == 2  # both from the first up only
    merge = json.loads(
        v2.deployments[-1]["components"]["com.edgeagent.sensor"]["configurationUpdate"]["merge"]
    )
    assert merge["tempLimit"] == "28"
    assert v2.deployments[-1]["components"]["com.edgeagent.sensor"]["componentVersion"] == "1.0.0"
    assert "component com.edgeagent.sensor 1.0.0: unchanged" in v2.out
    assert "v2 deployment d-2 on edge-agent-core: SUCCEEDED" in v2.out
    assert v2.state()["v2"]["deployment"]["previous"] == ["d-1"]


def test_changed_code_under_the_same_version_is_refused(v2):
    v2.first_up()
    (v2.src / "functions" / "sensor_function.py").write_text("def function_handler(e, c): pass\n")
    v2.expect_secret_manager_versions()
    v2.stub.add_response(
        "describe_component",
        {"arn": v2.component_arn("sensor")},
        {"arn": v2.component_arn("sensor")},
    )
    with v2.stub, pytest.raises(DeployError, match="--component-version"):
        v2.deployer().up()


def test_a_failed_deployment_reports_the_device_and_the_reason(v2):
    v2.expect_secret_manager_versions()
    v2.expect_new_components()
    v2.expect_deployment()
    v2.expect_core_device(connected=True)
    v2.expect_effective(
        THING,
        "FAILED",
        reason="COMPONENT_BROKEN",
        statusDetails={
            "errorStack": ["DEPLOYMENT_FAILURE", "COMPONENT_BROKEN"],
            "errorTypes": ["USER_COMPONENT_ERROR"],
        },
    )
    with v2.stub, pytest.raises(DeploymentFailed) as failure:
        v2.deployer().up()
    text = str(failure.value)
    assert "FAILED on edge-agent-core: COMPONENT_BROKEN" in text and "USER_COMPONENT_ERROR" in text
    assert failure.value.exit_code == 3


def test_a_thing_group_deployment_reports_each_device(v2):
    v2.expect_secret_manager_versions()
    v2.expect_new_components()
    v2.expect_deployment()
    v2.expect_core_device(connected=True)
    v2.expect_group_devices(THING, "pi-2")
    v2.expect_effective(THING, "IN_PROGRESS")
    v2.expect_effective("pi-2", None)  # not received yet
    v2.expect_effective(THING, "SUCCEEDED")
    v2.expect_effective("pi-2", "FAILED", reason="NETWORK_ERROR")
    with v2.stub, pytest.raises(DeploymentFailed) as failure:
        v2.deployer(thing_group="pis").up()
        v2.stub.assert_no_pending_responses()
    assert v2.deployments[0]["targetArn"] == GROUP_ARN
    iot = boto3.client("iot")
    members = iot.list_things_in_thing_group(thingGroupName="pis")["things"]
    assert members == [THING]
    for line in (
        "v2 deployment d-1 on edge-agent-core: IN_PROGRESS",
        "v2 deployment d-1 on pi-2: QUEUED",
        "v2 deployment d-1 on edge-agent-core: SUCCEEDED",
        "v2 deployment d-1 on pi-2: FAILED",
    ):
        assert line in v2.out
    text = str(failure.value)
    assert "pi-2: NETWORK_ERROR" in text and "edge-agent-core" not in text


def test_a_group_device_that_never_finishes_is_named_in_the_timeout(v2, monkeypatch):
    import deploy.awsapi

    now = [0.0]
    monkeypatch.setattr(deploy.awsapi, "_monotonic", lambda: now[0])
    monkeypatch.setattr(deploy.awsapi, "_sleep", lambda s: now.__setitem__(0, now[0] + s))
    v2.expect_secret_manager_versions()
    v2.expect_new_components()
    v2.expect_deployment()
    v2.expect_core_device(connected=True)
    v2.expect_group_devices(THING, "pi-2")
    for _ in range(3):  # at 0 s, 15 s, 30 s
        v2.expect_effective(THING, "SUCCEEDED")
        v2.expect_effective("pi-2", "IN_PROGRESS")
    with v2.stub, pytest.raises(DeploymentTimedOut) as failure:
        v2.deployer(thing_group="pis", poll_interval=15, timeout=30).up()
    assert "pi-2 IN_PROGRESS" in str(failure.value) and failure.value.exit_code == 4


def test_v2_status_shows_each_device(v2, capsys):
    v2.first_up()
    v2.expect_effective(THING, "SUCCEEDED")
    v2.expect_core_device(connected=True)
    with v2.stub:
        assert v2.deployer().status() == 0
    assert "edge-agent-core: SUCCEEDED (core device HEALTHY" in v2.out


def test_v2_destroy_removes_what_v2_up_made(v2):
    v2.first_up()
    state = v2.state()["v2"]
    v2.stub.add_response("create_deployment", {"deploymentId": "d-removal"})
    v2.expect_core_device(connected=False)  # never installed: nothing to wait for
    for deployment_id in ("d-1", "d-removal"):
        v2.stub.add_response(
            "cancel_deployment", {"message": "cancelled"}, {"deploymentId": deployment_id}
        )
        v2.stub.add_response("delete_deployment", {}, {"deploymentId": deployment_id})
    for fid in ("anomaly", "sensor"):
        v2.stub.add_response("delete_component", {}, {"arn": v2.component_arn(fid)})
    v2.stub.add_client_error(
        "delete_core_device",
        "ResourceNotFoundException",
        http_status_code=404,
        expected_params={"coreDeviceThingName": THING},
    )
    with v2.stub:
        assert v2.deployer().destroy() == 0
        v2.stub.assert_no_pending_responses()
    assert v2.deployments[-1]["components"] == {}  # the cores remove the components
    iot, iam = boto3.client("iot"), boto3.client("iam")
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
    assert iot.list_role_aliases()["roleAliases"] == []
    assert iam.list_roles()["Roles"] == []
    assert boto3.client("s3").list_objects_v2(Bucket="artifacts").get("Contents") is None
    assert not (v2.certs / state["certificate"]["key_file"]).exists()
    assert not (v2.certs / "config.yaml").exists()
    # the secret is kept unless asked; the state file keeps only that
    boto3.client("secretsmanager").describe_secret(SecretId="greengrass-snow-creds")
    assert "secret greengrass-snow-creds: kept (--delete-secret" in v2.out
    assert set(v2.state()) == {"format", "region", "account", "secrets"}


def test_v2_destroy_waits_for_a_connected_core_unless_forced(v2):
    v2.first_up()
    v2.stub.add_response("create_deployment", {"deploymentId": "d-removal"})
    v2.expect_core_device(connected=True)
    v2.expect_effective(THING, "IN_PROGRESS", "d-removal")
    v2.expect_effective(THING, "FAILED", "d-removal", reason="BROKEN")
    with v2.stub, pytest.raises(DeployError, match="--force"):
        v2.deployer().destroy()
    # --force: cloud side only, no removal deployment
    v2.stub.add_response("cancel_deployment", {"message": "ok"}, {"deploymentId": "d-1"})
    v2.stub.add_response("delete_deployment", {}, {"deploymentId": "d-1"})
    for fid in ("anomaly", "sensor"):
        v2.stub.add_response("delete_component", {}, {"arn": v2.component_arn(fid)})
    v2.stub.add_response("delete_core_device", {}, {"coreDeviceThingName": THING})
    with v2.stub:
        assert v2.deployer().destroy(force=True) == 0
        v2.stub.assert_no_pending_responses()
    assert boto3.client("iot").list_things()["things"] == []


def test_v2_up_needs_the_secret_or_creates_it_from_a_file(v2):
    from conftest import new_secret

    boto3.client("secretsmanager").delete_secret(
        SecretId="greengrass-snow-creds", ForceDeleteWithoutRecovery=True
    )
    with v2.stub, pytest.raises(DeployError, match=r"greengrass-snow-creds(.|\n)*--create-secret"):
        v2.deployer().up()
    password = new_secret("snow")
    secret_file = v2.tmp / "snow.json"
    secret_file.write_text(json.dumps({"username": "edge", "password": password}))
    secret_file.chmod(0o600)
    assert v2.first_up(create_secret=True, secret_file=secret_file) == 0
    assert password not in v2.out
    assert v2.state()["secrets"]["snow-credentials"]["created"] is True


def test_v2_up_dry_run_makes_no_calls(tmp_path, capsys, monkeypatch):
    from test_deploy_support import no_aws_credentials

    no_aws_credentials(monkeypatch, tmp_path)
    src = make_source_root(tmp_path / "src")
    site = make_site_packages(tmp_path / "site", DEVICE_DISTS)
    wheels = make_wheelhouse(tmp_path / "wheels")
    code = main(
        ["v2", "up", "--dry-run", "--bucket", "artifacts", "--source-root", str(src)]
        + ["--site-packages", str(site), "--package-dir", str(tmp_path / "pkg")]
        + ["--wheelhouse", str(wheels), "--no-index"]
        + ["--state", str(tmp_path / "state.json"), "--certs-dir", str(tmp_path / "certs")]
    )
    out = capsys.readouterr().out
    assert code == 0
    for call in (
        "iot.CreateThing",
        "iot.CreateKeysAndCertificate",
        "iam.CreateRole",
        "iam.PutRolePolicy",
        "iot.CreateRoleAlias",
        "iot.CreatePolicy",
        "greengrassv2.ListComponentVersions",
        "s3.PutObject",
        "greengrassv2.CreateComponentVersion",
        "greengrassv2.CreateDeployment",
    ):
        assert "[dry-run] " + call in out, call
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "certs").exists()


def test_v2_destroy_asks_for_confirmation(tmp_path, capsys):
    code = main(["v2", "destroy", "--state", str(tmp_path / "s.json"), "--region", REGION])
    assert code == 1 and "--yes" in capsys.readouterr().err


def test_the_default_topology_deploys_on_v2_whatever_its_state_dir():
    """V1's volume rules do not apply to V2 components (no container, no volumes)."""
    from deploy.v2.core_documents import state_directories

    assert state_directories(default_topology())
