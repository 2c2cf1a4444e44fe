"""deploy v1 plan: the V1 definition documents and IoT policy, offline, validated by botocore."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import botocore.session
import pytest
from botocore.validate import ParamValidator
from test_deploy_support import STATE_DIR, test_topology

from agent.names import ROUTES_VARIABLE
from agent.topology import (
    DeviceResource,
    ResourceAccess,
    default_topology,
)
from deploy.cli import main
from deploy.definitions import (
    MAX_RESOURCE_ACCESS_POLICIES,
    build_documents,
    function_definition,
    validate_documents,
)
from deploy.errors import DeployError
from deploy.naming import PLACEHOLDER_ACCOUNT, target_from
from deploy.validation import validation_errors

DEFINITION_FILES = {
    "core-definition.json": "CreateCoreDefinition",
    "function-definition.json": "CreateFunctionDefinition",
    "resource-definition.json": "CreateResourceDefinition",
    "subscription-definition.json": "CreateSubscriptionDefinition",
}


def plan(tmp_path, *args):
    out = tmp_path / "plan"
    code = main(
        ["v1", "plan", "--out", str(out), "--state", str(tmp_path / "none.json")]
        + ["--state-dir", STATE_DIR, *args]
    )
    assert code == 0
    return {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}


def test_plan_documents_pass_botocore_validation(tmp_path):
    docs = plan(tmp_path)
    model = botocore.session.get_session().get_service_model("greengrass")
    for file_name, operation in DEFINITION_FILES.items():
        shape = model.operation_model(operation).input_shape
        report = ParamValidator().validate({"InitialVersion": docs[file_name]}, shape)
        assert not report.has_errors(), report.generate_report()
        # and with the pattern/enum checks botocore's validator skips
        assert validation_errors("greengrass", operation, {"InitialVersion": docs[file_name]}) == []
    iot = botocore.session.get_session().get_service_model("iot")
    params = {
        "policyName": "edge-agent-core-policy",
        "policyDocument": json.dumps(docs["iot-policy.json"]),
    }
    report = ParamValidator().validate(params, iot.operation_model("CreatePolicy").input_shape)
    assert not report.has_errors(), report.generate_report()


def test_plan_shapes_are_initial_version_documents(tmp_path):
    docs = plan(tmp_path)
    assert set(docs["core-definition.json"]) == {"Cores"}
    assert set(docs["function-definition.json"]) == {"Functions", "DefaultConfig"}
    assert set(docs["resource-definition.json"]) == {"Resources"}
    assert set(docs["subscription-definition.json"]) == {"Subscriptions"}
    summary = docs["plan.json"]
    assert summary["account"] == PLACEHOLDER_ACCOUNT
    assert "certificate_arn" in summary["placeholders"]
    assert any(
        "--initial-version file://function-definition.json" in c for c in summary["commands"]
    )


def test_function_definition_follows_topology(tmp_path):
    topology = test_topology()
    docs = plan(tmp_path)
    functions = {f["Id"]: f for f in docs["function-definition.json"]["Functions"]}
    assert set(functions) == {spec.id for spec in topology.functions}
    for spec in topology.functions:
        config = functions[spec.id]["FunctionConfiguration"]
        assert config["MemorySize"] == spec.memory_kb  # KB, exactly: no x1000
        assert config["Timeout"] == spec.timeout_s
        assert config["Pinned"] is spec.pinned
        assert config["EncodingType"] == "json"
        assert config["Executable"] == spec.executable
        env = config["Environment"]
        variables = dict(env["Variables"])
        # Beside its own variables, each function gets the subjects it is routed on.
        routes = json.loads(variables.pop(ROUTES_VARIABLE))
        assert variables == dict(spec.environment)
        assert routes == list(
            dict.fromkeys(
                s.subject for s in topology.for_thing("edge-agent-core").subscriptions_from(spec.id)
            )
        )
        assert env["AccessSysfs"] is spec.access_sysfs
        assert env["Execution"] == {
            "IsolationMode": "GreengrassContainer",
            "RunAs": {"Uid": 1000, "Gid": 1000},
        }
        assert [p["ResourceId"] for p in env["ResourceAccessPolicies"]] == [
            a.resource_id for a in spec.resource_access
        ]
        assert functions[spec.id]["FunctionArn"].endswith(
            ":function:{}:live".format(spec.lambda_name)
        )
    assert docs["function-definition.json"]["DefaultConfig"]["Execution"]["RunAs"] == {
        "Uid": 1000,
        "Gid": 1000,
    }


def test_placeholder_arns_match_the_lambda_model_pattern(tmp_path):
    docs = plan(tmp_path)
    lambda_model = botocore.session.get_session().get_service_model("lambda")
    pattern = (
        lambda_model.operation_model("GetFunction")
        .input_shape.members["FunctionName"]
        .metadata["pattern"]
    )
    arns = [f["FunctionArn"] for f in docs["function-definition.json"]["Functions"]]
    for sub in docs["subscription-definition.json"]["Subscriptions"]:
        arns += [x for x in (sub["Source"], sub["Target"]) if x != "cloud"]
    for arn in arns:
        assert re.fullmatch(pattern, arn), arn
        assert not arn.endswith("$LATEST")
    core = docs["core-definition.json"]["Cores"][0]
    assert re.fullmatch(
        r"arn:aws:iot:us-east-1:000000000000:cert/[0-9a-f]{64}", core["CertificateArn"]
    )
    assert core["ThingArn"] == "arn:aws:iot:us-east-1:000000000000:thing/edge-agent-core"
    secret = docs["resource-definition.json"]["Resources"][0]
    assert re.fullmatch(
        r"arn:aws:secretsmanager:us-east-1:000000000000:secret:greengrass-snow-creds-\w{6}",
        secret["ResourceDataContainer"]["SecretsManagerSecretResourceData"]["ARN"],
    )


def test_subscriptions_map_function_ids_to_alias_arns_and_keep_cloud(tmp_path):
    topology = default_topology()
    docs = plan(tmp_path, "--account", "123456789012", "--region", "eu-west-1")
    subs = {s["Id"]: s for s in docs["subscription-definition.json"]["Subscriptions"]}
    assert set(subs) == {s.id for s in topology.subscriptions}
    sensor = "arn:aws:lambda:eu-west-1:123456789012:function:edge-agent-sensor:live"
    anomaly = "arn:aws:lambda:eu-west-1:123456789012:function:edge-agent-anomaly:live"
    assert subs["readings-to-cloud"] == {
        "Id": "readings-to-cloud",
        "Source": sensor,
        "Subject": "IoTBlog/sensorData",
        "Target": "cloud",
    }
    assert subs["anomaly-to-function"]["Target"] == anomaly
    assert subs["anomaly-to-cloud"]["Target"] == "cloud"


def test_the_local_shadow_is_synced_and_routed_for_the_cores_thing(tmp_path):
    docs = plan(tmp_path, "--account", "123456789012", "--thing-name", "pi-kitchen")
    [core] = docs["core-definition.json"]["Cores"]
    assert core["SyncShadow"] is True  # the sensor's limits come from the cloud shadow
    subs = docs["subscription-definition.json"]["Subscriptions"]
    sensor = next(s["Source"] for s in subs if s["Id"] == "readings-to-cloud")
    to_shadow = {s["Subject"] for s in subs if s["Target"] == "GGShadowService"}
    from_shadow = {s["Subject"] for s in subs if s["Source"] == "GGShadowService"}
    prefix = "$aws/things/pi-kitchen/shadow/"
    assert to_shadow == {prefix + "update", prefix + "get"}
    assert from_shadow == {
        prefix + a for a in ("update/delta", "update/documents", "update/rejected")
    } | {
        prefix + "get/accepted",
        prefix + "get/rejected",
    }
    assert {s["Target"] for s in subs if s["Source"] == "GGShadowService"} == {sensor}
    assert not any("{thing}" in s["Subject"] for s in subs)


def test_resources_secret_and_sense_hat_devices(tmp_path):
    docs = plan(
        tmp_path,
        "--framebuffer",
        "/dev/fb0",
        "--joystick",
        "/dev/input/event3",
        "--secret-arn",
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:greengrass-snow-creds-AbC123",
    )
    resources = {
        r["Id"]: r["ResourceDataContainer"] for r in docs["resource-definition.json"]["Resources"]
    }
    assert resources["snow-credentials"] == {
        "SecretsManagerSecretResourceData": {
            "ARN": "arn:aws:secretsmanager:us-east-1:000000000000:secret:greengrass-snow-creds-AbC123"
        }
    }
    devices = {
        rid: c["LocalDeviceResourceData"]
        for rid, c in resources.items()
        if "LocalDeviceResourceData" in c
    }
    assert devices == {
        "i2c-bus": {"SourcePath": "/dev/i2c-1", "GroupOwnerSetting": {"AutoAddGroupOwner": True}},
        "sense-hat-framebuffer": {
            "SourcePath": "/dev/fb0",
            "GroupOwnerSetting": {"AutoAddGroupOwner": True},
        },
        "sense-hat-joystick": {
            "SourcePath": "/dev/input/event3",
            "GroupOwnerSetting": {"AutoAddGroupOwner": True},
        },
    }
    # Episode state and the outbox live on a host volume, so they survive a container restart.
    assert resources["edge-agent-state"]["LocalVolumeResourceData"] == {
        "SourcePath": STATE_DIR,
        "DestinationPath": STATE_DIR,
        "GroupOwnerSetting": {"AutoAddGroupOwner": True},
    }
    for function in docs["function-definition.json"]["Functions"]:
        env = function["FunctionConfiguration"]["Environment"]
        assert env["Variables"]["stateDir"] == STATE_DIR
        assert {"ResourceId": "edge-agent-state", "Permission": "rw"} in env[
            "ResourceAccessPolicies"
        ]


def test_uid_gid_options_and_root_only_when_explicit(tmp_path, capsys):
    docs = plan(tmp_path, "--uid", "1001", "--gid", "997")
    run_as = docs["function-definition.json"]["Functions"][0]["FunctionConfiguration"][
        "Environment"
    ]["Execution"]["RunAs"]
    assert run_as == {"Uid": 1001, "Gid": 997}

    code = main(["v1", "plan", "--out", str(tmp_path / "p2"), "--uid", "0"])
    assert code == 1
    assert "--run-as-root" in capsys.readouterr().err

    docs = plan(tmp_path, "--run-as-root")
    run_as = docs["function-definition.json"]["DefaultConfig"]["Execution"]["RunAs"]
    assert run_as == {"Uid": 0, "Gid": 0}
    assert '"allowFunctionsToRunAsRoot": "yes"' in capsys.readouterr().out


def test_plan_takes_real_values_from_the_state_file(tmp_path):
    state = {
        "format": 1,
        "region": "eu-west-1",
        "account": "123456789012",
        "alias": "live",
        "thing": {"name": "pi-core", "arn": "arn:aws:iot:eu-west-1:123456789012:thing/pi-core"},
        "certificate": {"arn": "arn:aws:iot:eu-west-1:123456789012:cert/" + "ab" * 32},
        "group": {"id": "6a5d2c9e-0000-4000-8000-123456789abc"},
        "functions": {
            "sensor": {
                "alias": "live",
                "alias_arn": "arn:aws:lambda:eu-west-1:123456789012:function:edge-agent-sensor:live",
            },
        },
        "secrets": {
            "snow-credentials": {
                "arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:greengrass-snow-creds-Zz9Yy8"
            }
        },
    }
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    out = tmp_path / "plan"
    assert (
        main(["v1", "plan", "--out", str(out), "--state", str(path), "--state-dir", STATE_DIR]) == 0
    )
    summary = json.loads((out / "plan.json").read_text())
    assert summary["placeholders"] == []
    core = json.loads((out / "core-definition.json").read_text())["Cores"][0]
    assert core["ThingArn"].endswith(":thing/pi-core") and core["Id"] == "pi-core"
    policy = json.dumps(json.loads((out / "iot-policy.json").read_text()))
    assert "6a5d2c9e-0000-4000-8000-123456789abc" in policy
    assert "client/pi-core" in policy


def test_env_option_changes_only_the_function_definition(tmp_path):
    before = plan(tmp_path)["plan.json"]["files"]
    after = plan(tmp_path, "--env", "sensor:tempLimit=28")["plan.json"]["files"]
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"function-definition.json"}


def test_renaming_a_topic_reroutes_subscriptions_and_policy(tmp_path):
    docs = plan(tmp_path, "--env", "sensor:readingsTopic=plant/readings")
    subjects = {
        s["Id"]: s["Subject"] for s in docs["subscription-definition.json"]["Subscriptions"]
    }
    assert subjects["readings-to-cloud"] == "plant/readings"
    policy = json.dumps(docs["iot-policy.json"])
    assert "topic/plant/readings" in policy and "IoTBlog/sensorData" not in policy


def test_bad_env_option_is_a_clear_error(tmp_path, capsys):
    assert main(["v1", "plan", "--out", str(tmp_path), "--env", "nosuch:a=b"]) == 1
    assert "unknown function" in capsys.readouterr().err
    assert main(["v1", "plan", "--out", str(tmp_path), "--env", "sensor-no-equals"]) == 1


def _target(topology):
    return target_from(topology, {})


def test_resource_access_policies_are_capped():
    topology = default_topology()
    devices = tuple(DeviceResource("dev{}".format(i), "/dev/x{}".format(i)) for i in range(11))
    sensor = topology.function("sensor").with_changes(
        resource_access=tuple(ResourceAccess(d.id, "rw") for d in devices),
    )
    big = topology.with_changes(devices=devices, functions=(sensor, topology.function("anomaly")))
    with pytest.raises(DeployError, match="at most {}".format(MAX_RESOURCE_ACCESS_POLICIES)):
        function_definition(big, _target(big))


@pytest.mark.parametrize("memory_kb", [48, 48 * 1024 * 1000])
def test_memory_size_must_look_like_kilobytes(memory_kb):
    topology = default_topology()
    sensor = topology.function("sensor").with_changes(memory_kb=memory_kb)
    bad = topology.with_changes(functions=(sensor, topology.function("anomaly")))
    with pytest.raises(DeployError, match="KB"):
        function_definition(bad, _target(bad))


def test_validate_documents_rejects_what_the_model_rejects():
    topology = test_topology()
    documents = build_documents(topology, _target(topology))
    documents.function["Functions"][0]["FunctionConfiguration"]["EncodingType"] = "xml"
    with pytest.raises(DeployError, match="EncodingType"):
        validate_documents(documents)


def test_latest_is_never_a_function_arn():
    topology = test_topology()
    target = replace(
        _target(topology),
        function_arns={
            "sensor": "arn:aws:lambda:us-east-1:000000000000:function:edge-agent-sensor:$LATEST"
        },
    )
    with pytest.raises(DeployError, match=r"function 'sensor': .*points at \$LATEST"):
        validate_documents(build_documents(topology, target))
