"""deploy v1 up/status/reset/destroy against moto's Greengrass V1, IoT, Lambda, IAM, Secrets Manager.

moto quirks this file works with: deployments stay InProgress forever (so
polling, success and failure are driven by patching GetDeploymentStatus),
create_*_definition needs InitialVersion (up always sends one), and IAM's
AWS managed policies are loaded only on request (test_deploy_support keeps
that to the two up attaches, for speed).
"""

from __future__ import annotations

import json
import logging
import secrets
import stat
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.client import BaseClient
from moto import mock_aws
from test_deploy_support import (
    DEVICE_DISTS,
    STATE_DIR,
    WireFaults,
    fake_aws,
    make_site_packages,
    make_source_root,
    no_aws_credentials,
)

import deploy.awsapi
from deploy.awsapi import quiet_sdk_logging
from deploy.cli import main
from deploy.errors import DeployError
from deploy.v1 import read_secret_value

try:  # registers the value with the suite's "no secret in any log line" guard
    from conftest import new_secret
except ImportError:  # pragma: no cover - the guard lives in tests/conftest.py

    def new_secret(prefix: str = "pw") -> str:
        return "{}-{}".format(prefix, secrets.token_hex(8))


REAL_CALL = BaseClient._make_api_call


@pytest.fixture
def aws(monkeypatch):
    fake_aws(monkeypatch)
    with mock_aws():
        yield


class Project:
    def __init__(self, tmp_path: Path, capsys) -> None:
        self.tmp = tmp_path
        self.capsys = capsys
        self.src = make_source_root(tmp_path / "src")
        # fake device dependencies: fast, offline and independent of the venv
        self.site = make_site_packages(tmp_path / "site", DEVICE_DISTS)
        self.state = tmp_path / "out" / "state.json"
        self.certs = tmp_path / "certs"
        self.password = new_secret("snow")  # the conftest guard checks no log line shows it
        self.secret_file = tmp_path / "snow.json"
        self.secret_file.write_text(json.dumps({"username": "edge", "password": self.password}))
        self.secret_file.chmod(0o600)

    def run(self, command: str, *args: str):
        argv = ["v1", command, "--state", str(self.state)]
        if command != "render-config":
            argv += ["--state-dir", STATE_DIR]
        if command == "up":
            argv += [
                "--source-root",
                str(self.src),
                "--site-packages",
                str(self.site),
                "--package-dir",
                str(self.tmp / "out" / "package"),
                "--certs-dir",
                str(self.certs),
            ]
        code = main(argv + list(args))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def up(self, *args: str):
        code, out, err = self.run("up", *args)
        assert code == 0, out + err
        return out

    def first_up(self, *args: str):
        return self.up(
            "--create-secret", "--secret-file", str(self.secret_file), "--no-wait", *args
        )

    def load_state(self):
        return json.loads(self.state.read_text())


@pytest.fixture
def project(tmp_path, capsys):
    return Project(tmp_path, capsys)


def snapshot(state):
    gg, lam, iot = boto3.client("greengrass"), boto3.client("lambda"), boto3.client("iot")
    definitions = state["definitions"]
    result = {
        "groups": len(gg.list_groups()["Groups"]),
        "group_versions": len(gg.list_group_versions(GroupId=state["group"]["id"])["Versions"]),
        "deployments": len(gg.list_deployments(GroupId=state["group"]["id"])["Deployments"]),
        "certificates": len(iot.list_certificates()["certificates"]),
        "policy_versions": len(
            iot.list_policy_versions(policyName=state["policy"]["name"])["policyVersions"]
        ),
    }
    for kind, label in (
        ("core", "Core"),
        ("function", "Function"),
        ("resource", "Resource"),
        ("subscription", "Subscription"),
    ):
        versions = getattr(gg, "list_{}_definition_versions".format(kind))(
            **{"{}DefinitionId".format(label): definitions[kind]["id"]}
        )["Versions"]
        result[kind + "_definition_versions"] = len(versions)
    for function in state["functions"].values():
        versions = lam.list_versions_by_function(FunctionName=function["name"])["Versions"]
        result["lambda:" + function["name"]] = len(versions)
    return result


def changed(before, after):
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


# --- up ------------------------------------------------------------------------------


def test_up_creates_everything(aws, project):
    out = project.first_up()
    state = project.load_state()
    lam, iot, gg, iam = (boto3.client(s) for s in ("lambda", "iot", "greengrass", "iam"))

    for function in state["functions"].values():
        config = lam.get_function(FunctionName=function["name"])["Configuration"]
        assert config["Runtime"] == "python3.8"
        assert config["Handler"].startswith("functions.") and config["Handler"].endswith(
            ".function_handler"
        )
        alias = lam.get_alias(FunctionName=function["name"], Name="live")
        assert alias["FunctionVersion"] == function["version"] == "1"
    role = state["roles"]["lambda"]
    assert role["created"] is True
    attached = iam.list_attached_role_policies(RoleName=role["name"])["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AWSLambdaBasicExecutionRole"]

    thing = iot.describe_thing(thingName="edge-agent-core")
    cert_arn = state["certificate"]["arn"]
    assert iot.list_thing_principals(thingName="edge-agent-core")["principals"] == [cert_arn]
    policies = iot.list_attached_policies(target=cert_arn)["policies"]
    assert [p["policyName"] for p in policies] == ["edge-agent-core-policy"]
    document = json.loads(iot.get_policy(policyName="edge-agent-core-policy")["policyDocument"])
    assert any("client/edge-agent-core" in r for s in document["Statement"] for r in s["Resource"])

    group = gg.get_group(GroupId=state["group"]["id"])
    assert group["Name"] == "edge-agent"
    assert gg.get_associated_role(GroupId=group["Id"])["RoleArn"] == state["roles"]["group"]["arn"]
    version = gg.get_group_version(
        GroupId=group["Id"], GroupVersionId=state["group_version"]["id"]
    )["Definition"]
    assert (
        version["FunctionDefinitionVersionArn"] == state["definitions"]["function"]["version_arn"]
    )
    core = state["definitions"]["core"]
    cores = gg.get_core_definition_version(
        CoreDefinitionId=core["id"], CoreDefinitionVersionId=core["version_id"]
    )["Definition"]
    assert cores["Cores"][0]["ThingArn"] == thing["thingArn"]
    assert cores["Cores"][0]["CertificateArn"] == cert_arn
    subs = state["definitions"]["subscription"]
    table = gg.get_subscription_definition_version(
        SubscriptionDefinitionId=subs["id"], SubscriptionDefinitionVersionId=subs["version_id"]
    )["Definition"]["Subscriptions"]
    sensor = state["functions"]["sensor"]["alias_arn"]
    assert {s["Target"] for s in table} == {
        "cloud",
        state["functions"]["anomaly"]["alias_arn"],
        sensor,  # the local shadow service's deltas and answers
        "GGShadowService",  # the sensor's shadow requests
    }
    shadow = {s["Subject"] for s in table if "GGShadowService" in (s["Source"], s["Target"])}
    prefix = "$aws/things/{}/shadow/".format(thing["thingName"])
    assert shadow == {
        prefix + t
        for t in ("update", "get", "update/delta", "update/documents", "update/rejected")
        + ("get/accepted", "get/rejected")
    }

    deployments = gg.list_deployments(GroupId=group["Id"])["Deployments"]
    assert [d["DeploymentId"] for d in deployments] == [state["deployment"]["id"]]
    with quiet_sdk_logging():  # botocore would log the response body at DEBUG
        secret = boto3.client("secretsmanager").get_secret_value(SecretId="greengrass-snow-creds")
    assert json.loads(secret["SecretString"]) == {"username": "edge", "password": project.password}
    assert "deployment" in out and "created" in out


def test_certificate_and_key_are_private_and_never_printed(aws, project, caplog):
    caplog.set_level(logging.DEBUG)  # botocore logs request/response bodies at DEBUG
    caplog.set_level(logging.DEBUG, logger="botocore")
    out = project.first_up()
    state = project.load_state()
    cert = project.certs / state["certificate"]["cert_file"]
    key = project.certs / state["certificate"]["key_file"]
    assert stat.S_IMODE(project.certs.stat().st_mode) == 0o700
    assert stat.S_IMODE(cert.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key_body = "".join(key.read_text().splitlines()[1:-1])[:64]
    assert key_body and "PRIVATE KEY" in key.read_text()
    for text in (out, caplog.text, project.state.read_text()):
        assert key_body not in text
        assert "PRIVATE KEY" not in text
        assert project.password not in text


def test_reup_with_nothing_changed_creates_nothing(aws, project):
    project.first_up()
    state = project.load_state()
    before = snapshot(state)
    out = project.up("--no-wait")
    assert snapshot(project.load_state()) == before
    assert "up: nothing changed" in out
    assert "not redeploying" in out
    assert project.load_state()["group_version"] == state["group_version"]


def test_environment_change_makes_only_a_function_definition_and_group_version(aws, project):
    project.first_up()
    before = snapshot(project.load_state())
    out = project.up("--no-wait", "--env", "sensor:tempLimit=28")
    diff = changed(before, snapshot(project.load_state()))
    assert diff == {
        "function_definition_versions": (1, 2),
        "group_versions": (before["group_versions"], before["group_versions"] + 1),
        "deployments": (1, 2),
    }
    assert "function definition: new version" in out
    state = project.load_state()
    function = state["definitions"]["function"]
    doc = boto3.client("greengrass").get_function_definition_version(
        FunctionDefinitionId=function["id"], FunctionDefinitionVersionId=function["version_id"]
    )
    sensor = [f for f in doc["Definition"]["Functions"] if f["Id"] == "sensor"][0]
    assert sensor["FunctionConfiguration"]["Environment"]["Variables"]["tempLimit"] == "28"


def test_code_change_publishes_one_new_lambda_version_and_redeploys(aws, project):
    project.first_up()
    before = snapshot(project.load_state())
    (project.src / "functions" / "sensor_function.py").write_text(
        "def function_handler(event, context):\n    return 'v2'\n"
    )
    out = project.up("--no-wait")
    diff = changed(before, snapshot(project.load_state()))
    key = "lambda:edge-agent-sensor"
    assert diff == {key: (before[key], before[key] + 1), "deployments": (1, 2)}
    assert "new Lambda version behind alias live" in out
    assert (
        boto3.client("lambda").get_alias(FunctionName="edge-agent-sensor", Name="live")[
            "FunctionVersion"
        ]
        == "2"
    )


def test_a_version_published_without_deploying_is_deployed_by_the_next_up(aws, project):
    project.first_up()
    (project.src / "functions" / "sensor_function.py").write_text(
        "def function_handler(event, context):\n    return 'v2'\n"
    )
    project.up("--no-deploy")  # publishes version 2, deploys nothing
    before = snapshot(project.load_state())
    out = project.up("--no-wait")
    diff = changed(before, snapshot(project.load_state()))
    assert diff == {"deployments": (before["deployments"], before["deployments"] + 1)}
    assert "not deployed yet" in out
    assert "nothing changed" in project.up("--no-wait")  # and then it is settled


def test_lost_state_reuses_the_group_by_name(aws, project):
    project.first_up()
    project.state.unlink()
    project.up("--no-wait")
    assert len(boto3.client("greengrass").list_groups()["Groups"]) == 1
    lam = boto3.client("lambda")
    assert len(lam.list_versions_by_function(FunctionName="edge-agent-anomaly")["Versions"]) == 2


def test_missing_secret_is_a_clear_error(aws, project):
    code, _out, err = project.run("up", "--no-wait")
    assert code == 1
    assert "greengrass-snow-creds" in err and "--create-secret" in err


def test_bad_secret_file_names_keys_not_values(aws, project):
    project.secret_file.write_text(json.dumps({"user": "edge", "pass": project.password}))
    code, out, err = project.run("up", "--create-secret", "--secret-file", str(project.secret_file))
    assert code == 1
    assert "username" in err and "pass, user" in err
    assert project.password not in out + err


def test_secret_value_cannot_come_from_the_command_line(aws, project):
    code, _out, err = project.run("up", "--secret-value", "hunter2")
    assert code == 2 and "unrecognized arguments" in err


def test_secret_prompt_is_hidden_input_and_needs_a_terminal():
    import getpass
    import inspect

    assert inspect.signature(read_secret_value).parameters["prompt"].default is getpass.getpass
    answers = iter(["edge", "hidden-value"])
    value = read_secret_value(None, prompt=lambda _text: next(answers), interactive=True)
    assert value == {"username": "edge", "password": "hidden-value"}
    with pytest.raises(DeployError, match="--secret-file"):
        read_secret_value(None, interactive=False)


def test_run_as_root_only_when_asked_and_says_what_config_json_needs(aws, project):
    out = project.first_up("--run-as-root")
    assert '"allowFunctionsToRunAsRoot": "yes"' in out
    state = project.load_state()
    function = state["definitions"]["function"]
    doc = boto3.client("greengrass").get_function_definition_version(
        FunctionDefinitionId=function["id"], FunctionDefinitionVersionId=function["version_id"]
    )
    # (moto drops DefaultConfig from stored versions; the per-function RunAs is kept)
    for function_doc in doc["Definition"]["Functions"]:
        execution = function_doc["FunctionConfiguration"]["Environment"]["Execution"]
        assert execution["RunAs"] == {"Uid": 0, "Gid": 0}
    assert state["run_as"] == {"uid": 0, "gid": 0, "root": True}


# --- deployment polling ---------------------------------------------------------------


class FakeClock:
    def __init__(self, monkeypatch) -> None:
        self.now = 1000.0
        self.sleeps = []
        monkeypatch.setattr(deploy.awsapi, "_monotonic", lambda: self.now)
        monkeypatch.setattr(deploy.awsapi, "_sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def patch_status(monkeypatch, responses):
    """GetDeploymentStatus answers from ``responses`` (the last one repeats)."""
    calls = []

    def fake(self, operation, params):
        if operation == "GetDeploymentStatus":
            calls.append(params)
            return dict(responses[min(len(calls), len(responses)) - 1])
        return REAL_CALL(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", fake)
    return calls


def test_polling_times_out_while_moto_stays_in_progress(aws, project, monkeypatch):
    clock = FakeClock(monkeypatch)
    code, out, err = project.run(
        "up",
        "--create-secret",
        "--secret-file",
        str(project.secret_file),
        "--timeout",
        "30",
        "--poll-interval",
        "10",
    )
    assert code == 4
    assert clock.sleeps == [10, 10, 10]
    assert "InProgress" in out and "still InProgress after 30s" in err
    assert project.load_state()["deployment"]["status"] == "InProgress"


def test_polling_until_success(aws, project, monkeypatch):
    clock = FakeClock(monkeypatch)
    calls = patch_status(
        monkeypatch,
        [
            {"DeploymentStatus": "Building"},
            {"DeploymentStatus": "InProgress"},
            {"DeploymentStatus": "Success"},
        ],
    )
    code, out, _err = project.run(
        "up", "--create-secret", "--secret-file", str(project.secret_file), "--poll-interval", "2"
    )
    assert code == 0
    assert len(calls) == 3 and clock.sleeps == [2, 2]
    assert project.load_state()["deployment"]["status"] == "Success"
    assert out.index("Building") < out.index("InProgress") < out.index("Success")


def test_failed_deployment_shows_the_cores_error_and_exits_non_zero(aws, project, monkeypatch):
    FakeClock(monkeypatch)
    patch_status(
        monkeypatch,
        [
            {
                "DeploymentStatus": "Failure",
                "DeploymentType": "NewDeployment",
                "ErrorMessage": "Greengrass is not configured to run lambdas with root permissions",
                "ErrorDetails": [
                    {
                        "DetailedErrorCode": "GG-40",
                        "DetailedErrorMessage": "function edge-agent-sensor runs as uid 0",
                    }
                ],
            }
        ],
    )
    code, _out, err = project.run(
        "up", "--create-secret", "--secret-file", str(project.secret_file)
    )
    assert code == 3
    assert "not configured to run lambdas with root permissions" in err
    assert "GG-40: function edge-agent-sensor runs as uid 0" in err
    assert "allowFunctionsToRunAsRoot" in err  # the hint
    assert project.load_state()["deployment"]["status"] == "Failure"
    # a re-run redeploys because the last deployment failed
    patch_status(
        monkeypatch,
        [{"DeploymentStatus": "Failure", "ErrorMessage": "x"}, {"DeploymentStatus": "Success"}],
    )
    code, out, _ = project.run("up", "--no-wait")
    assert code == 0 and "last deployment Failure" in out


# --- status, reset, destroy --------------------------------------------------------------


def test_status_reports_group_version_and_deployment(aws, project, monkeypatch):
    project.first_up()
    state = project.load_state()
    code, out, _ = project.run("status")
    assert code == 0
    assert state["group"]["id"] in out
    assert state["group_version"]["id"] in out
    assert "InProgress" in out
    assert "edge-agent-sensor:live -> version 1" in out
    patch_status(monkeypatch, [{"DeploymentStatus": "Failure", "ErrorMessage": "boom"}])
    code, out, _ = project.run("status")
    assert code == 3 and "boom" in out


def test_status_without_state_is_a_clear_error(aws, project):
    code, _out, err = project.run("status")
    assert code == 1 and "run python -m deploy v1 up first" in err


def test_reset(aws, project):
    project.first_up()
    code, out, _ = project.run("reset", "--force")
    assert code == 0 and "forced" in out
    state = project.load_state()
    deployments = boto3.client("greengrass").list_deployments(GroupId=state["group"]["id"])[
        "Deployments"
    ]
    assert state["deployment"]["id"] in [d["DeploymentId"] for d in deployments]


def test_destroy_removes_everything_up_created(aws, project):
    project.first_up()
    state = project.load_state()
    code, out, _ = project.run(
        "destroy", "--yes", "--force", "--delete-secret", "--recovery-days", "7"
    )
    assert code == 0, out
    lam, iot, gg, iam = (boto3.client(s) for s in ("lambda", "iot", "greengrass", "iam"))
    assert lam.list_functions()["Functions"] == []
    assert iot.list_things()["things"] == []
    assert iot.list_policies()["policies"] == []
    assert iot.list_certificates()["certificates"] == []
    assert gg.list_groups()["Groups"] == []
    assert gg.list_function_definitions()["Definitions"] == []
    assert gg.list_core_definitions()["Definitions"] == []
    assert gg.list_resource_definitions()["Definitions"] == []
    assert gg.list_subscription_definitions()["Definitions"] == []
    assert iam.list_roles()["Roles"] == []
    secret = boto3.client("secretsmanager").describe_secret(SecretId="greengrass-snow-creds")
    assert "DeletedDate" in secret
    assert not project.state.exists()
    assert not (project.certs / state["certificate"]["key_file"]).exists()
    assert out.index("group edge-agent: deleted") < out.index("certificate")
    assert out.index("certificate") < out.index("lambda")


def test_a_replaced_certificate_is_detached_and_destroy_still_cleans_up(aws, project):
    project.first_up()
    old = project.load_state()["certificate"]
    iot = boto3.client("iot")
    iot.update_certificate(certificateId=old["id"], newStatus="INACTIVE")  # rotated by hand
    out = project.up("--no-wait")
    state = project.load_state()
    assert state["certificate"]["id"] != old["id"]
    assert "detached and deleted (replaced)" in out
    principals = iot.list_thing_principals(thingName=state["thing"]["name"])["principals"]
    assert principals == [state["certificate"]["arn"]]
    targets = iot.list_targets_for_policy(policyName=state["policy"]["name"])["targets"]
    assert targets == [state["certificate"]["arn"]]
    code, out, _ = project.run("destroy", "--yes", "--force")
    assert code == 0, out
    assert iot.list_policies()["policies"] == [] and iot.list_things()["things"] == []


def test_a_secret_scheduled_for_deletion_is_a_clear_error(aws, project):
    project.first_up()
    boto3.client("secretsmanager").delete_secret(
        SecretId="greengrass-snow-creds", RecoveryWindowInDays=7
    )
    code, out, err = project.run("up", "--no-wait")
    assert code == 1
    assert "scheduled for deletion" in err and "restore-secret" in err


def test_destroy_keeps_the_secret_unless_asked(aws, project):
    project.first_up()
    code, out, _ = project.run("destroy", "--yes", "--force")
    assert code == 0
    assert "kept (--delete-secret" in out
    boto3.client("secretsmanager").describe_secret(SecretId="greengrass-snow-creds")
    assert set(project.load_state()) == {"format", "region", "account", "secrets"}


def test_destroy_asks_for_confirmation(aws, project):
    project.first_up()
    code, _out, err = project.run("destroy")
    assert code == 1 and "--yes" in err
    assert project.state.exists()


def test_destroy_leaves_what_up_did_not_create(aws, project):
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="shared-lambda-role", AssumeRolePolicyDocument="{}")
    boto3.client("iot").create_thing(thingName="edge-agent-core")
    project.first_up("--lambda-role-arn", role["Role"]["Arn"])
    code, out, _ = project.run("destroy", "--yes", "--force")
    assert code == 0
    assert "thing edge-agent-core: not created by up" in out
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["shared-lambda-role"]
    assert boto3.client("iot").list_things()["things"][0]["thingName"] == "edge-agent-core"


# --- dry-run and errors -----------------------------------------------------------------


def test_dry_run_prints_every_call_and_makes_none_without_credentials(
    project, monkeypatch, tmp_path
):
    no_aws_credentials(monkeypatch, tmp_path)

    def no_clients(*args, **kwargs):
        raise AssertionError("dry-run created an AWS client")

    monkeypatch.setattr(boto3, "Session", no_clients)
    monkeypatch.setattr(botocore.session.Session, "create_client", no_clients)
    code, out, err = project.run(
        "up",
        "--dry-run",
        "--region",
        "eu-west-1",
        "--create-secret",
        "--secret-file",
        str(project.secret_file),
        "--create-service-role",
    )
    assert code == 0, err
    for call in (
        "sts.GetCallerIdentity",
        "iam.CreateRole",
        "iam.AttachRolePolicy",
        "lambda.CreateFunction",
        "lambda.PublishVersion",
        "lambda.CreateAlias",
        "secretsmanager.CreateSecret",
        "iot.CreateThing",
        "iot.CreateKeysAndCertificate",
        "greengrass.CreateGroup",
        "greengrass.AssociateRoleToGroup",
        "greengrass.AssociateServiceRoleToAccount",
        "iot.CreatePolicy",
        "iot.AttachPolicy",
        "iot.AttachThingPrincipal",
        "greengrass.CreateCoreDefinition",
        "greengrass.CreateFunctionDefinition",
        "greengrass.CreateResourceDefinition",
        "greengrass.CreateSubscriptionDefinition",
        "greengrass.CreateGroupVersion",
        "greengrass.CreateDeployment",
        "greengrass.GetDeploymentStatus",
    ):
        assert "[dry-run] " + call in out, call
    assert "SecretString=<redacted>" in out
    assert project.password not in out + err
    assert "ZipFile" in out and "bytes" in out  # the zip is shown as its size, not its bytes
    assert not project.state.exists()
    assert not project.certs.exists()


def test_dry_run_after_up_shows_only_what_would_change(aws, project):
    project.first_up()
    code, out, _ = project.run("up", "--dry-run", "--env", "anomaly:snowCategory=facilities")
    assert code == 0
    assert "[dry-run] greengrass.CreateFunctionDefinitionVersion" in out
    assert "[dry-run] greengrass.CreateGroupVersion" in out
    for unchanged in (
        "CreateFunction ",
        "PublishVersion",
        "CreateThing",
        "CreateKeysAndCert",
        "CreateCoreDefinition",
        "CreateSubscriptionDefinition",
        "CreatePolicy",
    ):
        assert "[dry-run] lambda." + unchanged not in out
        assert "." + unchanged not in out.replace("CreateFunctionDefinitionVersion", "")


def test_missing_credentials_give_a_clear_message(project, monkeypatch, tmp_path):
    no_aws_credentials(monkeypatch, tmp_path)
    code, _out, err = project.run("up", "--region", "eu-west-1")
    assert code == 1
    assert "no usable AWS credentials" in err
    assert "--dry-run" in err and "Traceback" not in err


def test_missing_region_is_a_clear_message(project, monkeypatch, tmp_path):
    no_aws_credentials(monkeypatch, tmp_path)
    code, _out, err = project.run("status")
    assert code == 1 and "--region" in err


def test_throttling_is_retried_by_botocore_with_jitter_then_reported(aws, project, monkeypatch):
    wire = WireFaults(monkeypatch).fail("CreateThing", "ThrottlingException", "Rate exceeded")
    code, _out, err = project.run(
        "up", "--create-secret", "--secret-file", str(project.secret_file)
    )
    assert code == 1
    assert wire.attempts.count("CreateThing") == 5  # botocore's standard mode, 5 attempts
    # four backoffs, each a random fraction of 1, 2, 4, 8 s (jitter), never the full step
    assert len(wire.sleeps) == 4
    assert all(0 <= s <= 2**i for i, s in enumerate(wire.sleeps)), wire.sleeps
    assert "kept throttling iot.CreateThing" in err and "Rate exceeded" in err
    assert "after 5 attempts" in err and "re-run" in err and "Traceback" not in err
    # what was done before the throttled call is in the state file: a re-run resumes
    assert set(project.load_state()["functions"]) == {"sensor", "anomaly"}


def test_throttling_that_stops_is_invisible(aws, project, monkeypatch):
    wire = WireFaults(monkeypatch).fail(
        "CreateGroupVersion", "ThrottlingException", "Rate exceeded", times=2
    )
    project.first_up()
    assert wire.attempts.count("CreateGroupVersion") == 3 and len(wire.sleeps) == 2
    assert project.load_state()["group_version"]["id"]


def test_a_role_iam_has_not_propagated_yet_is_waited_for(aws, project, monkeypatch):
    """IAM is eventually consistent: Lambda may refuse a role created a moment ago."""
    clock = FakeClock(monkeypatch)
    wire = WireFaults(monkeypatch).fail(
        "CreateFunction",
        "InvalidParameterValueException",
        "The role defined for the function cannot be assumed by Lambda.",
        times=2,
    )
    project.first_up()
    assert wire.attempts.count("CreateFunction") == 4  # 2 refused, then both functions
    assert clock.sleeps == [1, 2]  # our short consistency retry, not botocore's
    assert wire.sleeps == []  # botocore does not retry a 400 it cannot know is transient


def test_other_invalid_parameters_are_not_retried(aws, project, monkeypatch):
    clock = FakeClock(monkeypatch)
    wire = WireFaults(monkeypatch).fail(
        "CreateFunction", "InvalidParameterValueException", "Unzipped size must be smaller"
    )
    code, _out, err = project.run(
        "up", "--create-secret", "--secret-file", str(project.secret_file)
    )
    assert code == 1 and "Unzipped size must be smaller" in err
    assert wire.attempts.count("CreateFunction") == 1 and clock.sleeps == []


@pytest.fixture(autouse=True)
def _quiet_botocore_debug():
    """Muting botocore's DEBUG chatter (tests/conftest.py sets the root logger to DEBUG) keeps
    these tests fast; test_certificate_and_key_are_private_and_never_printed turns it back on."""
    logger = logging.getLogger("botocore")
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(previous)
