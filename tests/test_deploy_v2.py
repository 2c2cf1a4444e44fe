"""Greengrass V2 from the same topology: recipes, deployment, and v2-up.

moto has no greengrassv2, so those calls go through botocore's Stubber (which
checks every request against the service model); STS, S3 and Secrets
Manager are moto's.
"""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from test_deploy_support import fake_aws, make_site_packages, make_source_root

from agent.topology import default_topology
from deploy.awsapi import Api
from deploy.cli import main
from deploy.errors import DeployError, DeploymentFailed
from deploy.package import PackageOptions
from deploy.state import State
from deploy.v2 import (
    MQTT_PROXY,
    PUBSUB,
    SECRET_MANAGER,
    V2Deployer,
    V2Options,
    build_recipe,
    deployment_params,
    recipe_errors,
)
from deploy.validation import validation_errors

ACCOUNT, REGION = "123456789012", "us-east-1"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-snow-creds-AbCdEf"
SITE = [
    {"name": "requests", "version": "2.31.0", "files": {"requests/__init__.py": ""}},
    {
        "name": "awsiotsdk",
        "version": "1.21.0",
        "requires": ["awscrt"],
        "files": {"awsiot/__init__.py": ""},
    },
    {
        "name": "awscrt",
        "version": "0.19.19",
        "files": {"awscrt/__init__.py": "", "_awscrt.abi3.so": "ELF"},
    },
]


def recipe_for(function_id):
    topology = default_topology()
    spec = topology.function(function_id)
    return build_recipe(
        topology,
        spec,
        name="com.edgeagent." + function_id,
        version="1.0.0",
        artifact_uri="s3://bucket/key/{}-v2.zip".format(spec.lambda_name),
        zip_file="{}-v2.zip".format(spec.lambda_name),
        secret_arns={"snow-credentials": SECRET_ARN},
        device_requirements=["awsiotsdk>=1.11"],
    )


def test_sensor_recipe():
    recipe = recipe_for("sensor")
    assert recipe_errors(recipe) == []
    acl = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    cloud = acl[MQTT_PROXY]["com.edgeagent.sensor:publish-cloud"]
    assert cloud["operations"] == ["aws.greengrass#PublishToIoTCore"]
    assert cloud["resources"] == ["IoTBlog/sensorData", "IoTBlog/anomaly"]
    local = acl[PUBSUB]["com.edgeagent.sensor:publish-local"]
    assert local["operations"] == ["aws.greengrass#PublishToTopic"]
    assert local["resources"] == ["IoTBlog/anomaly"]
    assert SECRET_MANAGER not in acl and "ComponentDependencies" not in recipe
    lifecycle = recipe["Manifests"][0]["Lifecycle"]
    assert lifecycle["Run"]["Script"] == "{work:path}/venv/bin/python -m functions.sensor_function"
    env = lifecycle["Setenv"]
    spec = default_topology().function("sensor")
    assert {k: env[k] for k in spec.environment} == dict(spec.environment)
    assert env["PYTHONPATH"] == "{artifacts:decompressedPath}/edge-agent-sensor-v2"
    install = lifecycle["Install"]["Script"]
    # A venv in the work folder: PEP 668 refuses "pip install --user" on Raspberry Pi OS.
    assert install.startswith("python3 -m venv --system-site-packages {work:path}/venv && ")
    assert "venv/bin/python -m pip install 'awsiotsdk>=1.11'" in install
    artifact = recipe["Manifests"][0]["Artifacts"][0]
    assert artifact["Unarchive"] == "ZIP" and artifact["URI"].startswith("s3://")


def test_anomaly_recipe_reads_the_secret_and_subscribes_locally():
    recipe = recipe_for("anomaly")
    assert recipe_errors(recipe) == []
    acl = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    assert acl[SECRET_MANAGER]["com.edgeagent.anomaly:secrets"] == {
        "policyDescription": "read the ServiceNow credentials",
        "operations": ["aws.greengrass#GetSecretValue"],
        "resources": [SECRET_ARN],
    }
    subscribe = acl[PUBSUB]["com.edgeagent.anomaly:subscribe-local"]
    assert subscribe["operations"] == ["aws.greengrass#SubscribeToTopic"]
    assert subscribe["resources"] == ["IoTBlog/anomaly"]
    assert MQTT_PROXY not in acl  # it publishes nothing to the cloud
    assert recipe["ComponentDependencies"][SECRET_MANAGER]["DependencyType"] == "HARD"
    assert recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"] == (
        "{work:path}/venv/bin/python -m functions.anomaly_function"
    )
    assert (
        validation_errors(
            "greengrassv2", "CreateComponentVersion", {"inlineRecipe": json.dumps(recipe).encode()}
        )
        == []
    )


def test_recipe_errors_catch_structural_mistakes():
    recipe = recipe_for("anomaly")
    recipe["ComponentVersion"] = "1.0"
    acl = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    acl[PUBSUB]["com.edgeagent.anomaly:subscribe-local"]["operations"] = [
        "aws.greengrass#PublishToIoTCore"
    ]
    del recipe["Manifests"][0]["Lifecycle"]["Run"]
    errors = "\n".join(recipe_errors(recipe))
    assert "major.minor.patch" in errors
    assert "not valid for aws.greengrass.ipc.pubsub" in errors
    assert "Lifecycle.Run is missing" in errors


def test_deployment_params_configure_secret_manager_and_run_as_user():
    topology = default_topology()
    params = deployment_params(
        topology,
        target_arn="arn:aws:iot:us-east-1:123456789012:thing/edge-agent-core",
        components={"sensor": "1.0.0", "anomaly": "1.0.0"},
        prefix="com.edgeagent",
        secret_arns={"snow-credentials": SECRET_ARN},
        secret_manager_version="2.2.3",
        posix_user="1000:1000",
    )
    assert validation_errors("greengrassv2", "CreateDeployment", params) == []
    secret_manager = params["components"][SECRET_MANAGER]
    assert json.loads(secret_manager["configurationUpdate"]["merge"]) == {
        "cloudSecrets": [{"arn": SECRET_ARN}]
    }
    sensor = params["components"]["com.edgeagent.sensor"]
    assert sensor["runWith"] == {
        "posixUser": "1000:1000",
        "systemResourceLimits": {"memory": 48 * 1024},
    }


def test_v2_plan_writes_valid_documents(tmp_path, capsys):
    src = make_source_root(tmp_path / "src")
    site = make_site_packages(tmp_path / "site", SITE)
    out = tmp_path / "v2"
    code = main(
        [
            "v2-plan",
            "--out",
            str(out),
            "--source-root",
            str(src),
            "--site-packages",
            str(site),
            "--package-dir",
            str(tmp_path / "pkg"),
            "--bucket",
            "artifacts",
            "--uid",
            "1001",
            "--gid",
            "1001",
            "--state",
            str(tmp_path / "none.json"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    recipes = sorted(p.name for p in out.glob("*.recipe.json"))
    assert recipes == ["com.edgeagent.anomaly.recipe.json", "com.edgeagent.sensor.recipe.json"]
    for name in recipes:
        assert recipe_errors(json.loads((out / name).read_text())) == []
    deployment = json.loads((out / "deployment.json").read_text())
    assert validation_errors("greengrassv2", "CreateDeployment", deployment) == []
    assert deployment["components"]["com.edgeagent.anomaly"]["runWith"]["posixUser"] == "1001:1001"
    assert "placeholders used" in capsys.readouterr().out


# --- v2-up with Stubber ------------------------------------------------------------------


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
    def __init__(self, tmp_path) -> None:
        self.tmp = tmp_path
        self.src = make_source_root(tmp_path / "src")
        self.site = make_site_packages(tmp_path / "site", SITE)
        self.state = State.load(tmp_path / "state.json")
        self.lines = []
        self.client = boto3.client("greengrassv2", region_name=REGION)
        self.stub = Stubber(self.client)
        self.recipes = []
        self.client.meta.events.register(
            "provide-client-params.greengrassv2.CreateComponentVersion",
            lambda params, **kw: self.recipes.append(json.loads(params["inlineRecipe"])),
        )

    def deployer(self, **overrides):
        options = V2Options(
            bucket="artifacts",
            packaging=PackageOptions(
                package_dir=self.tmp / "pkg", source_root=self.src, site_packages=self.site
            ),
            version="1.0.0",
            poll_interval=1,
            timeout=30,
        )
        for key, value in overrides.items():
            setattr(options, key, value)
        api = Api(REGION, clients={"greengrassv2": self.client}, out=self.lines.append)
        return V2Deployer(api, default_topology(), self.state, options, out=self.lines.append)

    def component_arn(self, fid):
        return "arn:aws:greengrass:{}:{}:components:com.edgeagent.{}:versions:1.0.0".format(
            REGION, ACCOUNT, fid
        )

    def expect_secret_manager_versions(self):
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
                    "creationTimestamp": datetime.datetime(2026, 1, 1),
                    "status": {"componentState": "REQUESTED", "message": "accepted"},
                },
                {"inlineRecipe": ANY},
            )
            self.stub.add_response(
                "describe_component",
                {
                    "arn": arn,
                    "componentName": "com.edgeagent." + fid,
                    "componentVersion": "1.0.0",
                    "status": {"componentState": "DEPLOYABLE"},
                },
                {"arn": arn},
            )

    def expect_deployment(self):
        secret_arn = boto3.client("secretsmanager").describe_secret(
            SecretId="greengrass-snow-creds"
        )["ARN"]
        self.stub.add_response(
            "create_deployment",
            {"deploymentId": "d-1"},
            {
                "targetArn": "arn:aws:iot:us-east-1:123456789012:thing/edge-agent-core",
                "deploymentName": "edge-agent",
                "components": {
                    "com.edgeagent.sensor": {
                        "componentVersion": "1.0.0",
                        "runWith": {
                            "posixUser": "1000:1000",
                            "systemResourceLimits": {"memory": 49152},
                        },
                    },
                    "com.edgeagent.anomaly": {
                        "componentVersion": "1.0.0",
                        "runWith": {
                            "posixUser": "1000:1000",
                            "systemResourceLimits": {"memory": 65536},
                        },
                    },
                    SECRET_MANAGER: {
                        "componentVersion": "2.2.3",
                        "configurationUpdate": {
                            "merge": json.dumps({"cloudSecrets": [{"arn": secret_arn}]})
                        },
                    },
                },
            },
        )

    def expect_effective(self, *statuses, **extra):
        for status in statuses:
            entry = {
                "deploymentId": "d-1",
                "deploymentName": "edge-agent",
                "iotJobId": "j",
                "targetArn": "t",
                "coreDeviceExecutionStatus": status,
                "creationTimestamp": datetime.datetime(2026, 1, 1),
                "modifiedTimestamp": datetime.datetime(2026, 1, 1),
            }
            entry.update(extra)
            self.stub.add_response(
                "list_effective_deployments",
                {"effectiveDeployments": [entry]},
                {"coreDeviceThingName": "edge-agent-core"},
            )


@pytest.fixture
def v2(aws, tmp_path, monkeypatch):
    import deploy.awsapi

    monkeypatch.setattr(deploy.awsapi, "_sleep", lambda s: None)
    return V2Setup(tmp_path)


def test_v2_up_uploads_creates_components_and_deploys(v2):
    v2.expect_secret_manager_versions()
    v2.expect_new_components()
    v2.expect_deployment()
    v2.expect_effective("IN_PROGRESS", "SUCCEEDED")
    with v2.stub:
        assert v2.deployer().up() == 0
        v2.stub.assert_no_pending_responses()
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="artifacts")["Contents"]]
    assert sorted(keys) == [
        "edge-agent/artifacts/com.edgeagent.anomaly/1.0.0/edge-agent-anomaly-v2.zip",
        "edge-agent/artifacts/com.edgeagent.sensor/1.0.0/edge-agent-sensor-v2.zip",
    ]
    assert [r["ComponentName"] for r in v2.recipes] == [
        "com.edgeagent.sensor",
        "com.edgeagent.anomaly",
    ]
    assert all(recipe_errors(r) == [] for r in v2.recipes)
    assert "SUCCEEDED" in "\n".join(v2.lines)
    recorded = v2.state["v2"]
    assert recorded["deployment"]["id"] == "d-1"
    assert set(recorded["components"]) == {"com.edgeagent.sensor", "com.edgeagent.anomaly"}


def test_v2_up_again_changes_nothing(v2):
    v2.expect_secret_manager_versions()
    v2.expect_new_components()
    v2.expect_deployment()
    with v2.stub:
        v2.deployer(wait=False).up()
    v2.expect_secret_manager_versions()
    for fid in ("sensor", "anomaly"):
        v2.stub.add_response(
            "describe_component", {"arn": v2.component_arn(fid)}, {"arn": v2.component_arn(fid)}
        )
    with v2.stub:
        assert v2.deployer(wait=False).up() == 0
        v2.stub.assert_no_pending_responses()  # no create_component_version, no create_deployment
    assert "v2 deployment: unchanged (d-1)" in "\n".join(v2.lines)


def test_v2_changed_recipe_needs_a_new_version(v2):
    v2.expect_secret_manager_versions()
    v2.expect_new_components()
    v2.expect_deployment()
    with v2.stub:
        v2.deployer(wait=False).up()
    (v2.src / "functions" / "sensor_function.py").write_text("def function_handler(e, c): pass\n")
    v2.state["v2"]["components"]["com.edgeagent.sensor"]["recipe_hash"] = "other"
    v2.expect_secret_manager_versions()
    v2.stub.add_response(
        "describe_component",
        {"arn": v2.component_arn("sensor")},
        {"arn": v2.component_arn("sensor")},
    )
    with v2.stub, pytest.raises(DeployError, match="--component-version"):
        v2.deployer(wait=False).up()


def test_v2_failed_deployment_reports_the_reason(v2):
    v2.expect_secret_manager_versions()
    v2.expect_new_components()
    v2.expect_deployment()
    v2.expect_effective(
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
    assert "FAILED: COMPONENT_BROKEN" in text and "USER_COMPONENT_ERROR" in text
    assert failure.value.exit_code == 3


def test_v2_up_dry_run_makes_no_calls(tmp_path, capsys, monkeypatch):
    from test_deploy_support import no_aws_credentials

    no_aws_credentials(monkeypatch, tmp_path)
    src = make_source_root(tmp_path / "src")
    site = make_site_packages(tmp_path / "site", SITE)
    code = main(
        [
            "v2-up",
            "--dry-run",
            "--bucket",
            "artifacts",
            "--source-root",
            str(src),
            "--site-packages",
            str(site),
            "--package-dir",
            str(tmp_path / "pkg"),
            "--state",
            str(tmp_path / "state.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for call in (
        "greengrassv2.ListComponentVersions",
        "s3.PutObject",
        "greengrassv2.CreateComponentVersion",
        "greengrassv2.CreateDeployment",
    ):
        assert "[dry-run] " + call in out
    assert not (tmp_path / "state.json").exists()
