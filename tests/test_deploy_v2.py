"""Greengrass V2 documents from the same topology: recipes, configuration, deployment, v2 plan.

Pure: no AWS. Every document is checked against botocore's greengrassv2 model.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from test_deploy_support import (
    DEVICE_DISTS,
    make_site_packages,
    make_source_root,
    make_wheelhouse,
)

from agent.config import VARIABLES
from agent.live_settings import RUNTIME_VARIABLES
from agent.topology import default_topology
from deploy.cli import main
from deploy.v2 import (
    MQTT_PROXY,
    PUBSUB,
    SECRET_MANAGER,
    build_recipe,
    deployment_params,
    recipe_errors,
)
from deploy.v2.recipes import (
    SHADOW_MANAGER,
    DeviceManifest,
    component_configuration,
    configuration_names,
)
from deploy.validation import validation_errors

SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:greengrass-snow-creds-AbCdEf"
THING_ARN = "arn:aws:iot:us-east-1:123456789012:thing/edge-agent-core"


def recipe_for(function_id, topology=None):
    topology = topology or default_topology()
    spec = topology.function(function_id)
    return build_recipe(
        topology,
        spec,
        name="com.edgeagent." + function_id,
        version="1.0.0",
        artifact_uri="s3://bucket/key/{}-v2.zip".format(spec.lambda_name),
        zip_file="{}-v2.zip".format(spec.lambda_name),
        secret_arns={"snow-credentials": SECRET_ARN},
        devices=[
            DeviceManifest(
                "aarch64",
                "aarch64",
                "3.11",
                wheels_uri="s3://bucket/key/{}-v2-wheels-aarch64.zip".format(spec.lambda_name),
                wheels_folder="{}-v2-wheels-aarch64".format(spec.lambda_name),
                digest="0" * 64,
            )
        ],
    )


def params_for(topology=None):
    return deployment_params(
        topology or default_topology(),
        target_arn=THING_ARN,
        components={"sensor": "1.0.0", "anomaly": "1.0.0"},
        prefix="com.edgeagent",
        secret_arns={"snow-credentials": SECRET_ARN},
        secret_manager_version="2.2.3",
        posix_user="1000:1000",
    )


def merged(params, component):
    update = params["components"][component]["configurationUpdate"]
    return json.loads(update["merge"]), update.get("reset")


def test_sensor_recipe_takes_every_variable_from_its_configuration():
    recipe = recipe_for("sensor")
    assert recipe_errors(recipe) == []
    lifecycle = recipe["Manifests"][0]["Lifecycle"]
    env = lifecycle["Setenv"]
    spec = default_topology().function("sensor")
    sensor_variables = {v.name for v in VARIABLES if v.function in ("sensor", "both")}
    # Those that change at run time are read over IPC (no restart); the others are Setenv.
    assert (set(spec.environment) | sensor_variables) - set(RUNTIME_VARIABLES) <= set(env)
    assert not set(RUNTIME_VARIABLES) & set(env)
    for name in configuration_names(spec):
        if name not in RUNTIME_VARIABLES:
            assert env[name] == "{configuration:/" + name + "}"
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    assert set(RUNTIME_VARIABLES) <= set(defaults)
    # A restart of ShadowManager must not restart the sensor (it asks again): SOFT.
    assert recipe["ComponentDependencies"] == {
        SHADOW_MANAGER: {"VersionRequirement": ">=2.0.0 <3.0.0", "DependencyType": "SOFT"}
    }
    assert defaults["tempLimit"] == "30" and defaults["tempLowLimit"] == ""  # documented
    assert "accessControl" not in defaults  # it comes with the deployment
    assert env["PYTHONPATH"] == "{artifacts:decompressedPath}/edge-agent-sensor-v2"
    assert lifecycle["Run"]["Script"] == "{work:path}/venv/bin/python -m functions.sensor_function"
    install = lifecycle["Install"]["Script"]
    # A venv in the work folder: PEP 668 refuses "pip install --user" on Raspberry Pi OS;
    # the wheels come from the artifact, never from PyPI (test_deploy_offline runs it).
    assert 'python3 -m venv --system-site-packages "{work:path}/venv"' in install
    assert (
        '"{work:path}/venv/bin/python" -m pip install --no-index --find-links '
        '"{artifacts:decompressedPath}/edge-agent-sensor-v2-wheels-aarch64"'
    ) in install
    artifact = recipe["Manifests"][0]["Artifacts"][0]
    assert artifact["Unarchive"] == "ZIP" and artifact["URI"].startswith("s3://")
    assert SECRET_MANAGER not in json.dumps(recipe)


def test_the_sensor_may_use_exactly_its_things_classic_shadow():
    sensor, _ = merged(params_for(), "com.edgeagent.sensor")
    acl = sensor["accessControl"]
    shadow = "$aws/things/edge-agent-core/shadow"
    assert acl[SHADOW_MANAGER] == {
        "com.edgeagent.sensor:shadow-get": {
            "policyDescription": "get the thing's classic shadow",
            "operations": ["aws.greengrass#GetThingShadow"],
            "resources": [shadow],
        },
        "com.edgeagent.sensor:shadow-update": {
            "policyDescription": "update the thing's classic shadow",
            "operations": ["aws.greengrass#UpdateThingShadow"],
            "resources": [shadow],
        },
    }
    # ShadowManager's deltas and answers on local pub/sub: subscribe only, no publish there.
    subscribe = acl[PUBSUB]["com.edgeagent.sensor:subscribe-local"]["resources"]
    assert set(subscribe) == {
        shadow + "/" + t
        for t in ("update/delta", "update/documents", "update/rejected", "get/accepted")
        + ("get/rejected",)
    }
    assert acl[PUBSUB]["com.edgeagent.sensor:publish-local"]["resources"] == ["IoTBlog/anomaly"]
    assert acl[MQTT_PROXY] == {
        "com.edgeagent.sensor:publish-cloud": {
            "policyDescription": "publish to AWS IoT Core",
            "operations": ["aws.greengrass#PublishToIoTCore"],
            "resources": ["IoTBlog/sensorData", "IoTBlog/anomaly"],
        }
    }
    assert set(acl) == {MQTT_PROXY, PUBSUB, SHADOW_MANAGER}
    anomaly, _ = merged(params_for(), "com.edgeagent.anomaly")
    assert SHADOW_MANAGER not in anomaly["accessControl"]


def test_the_deployment_syncs_the_cores_classic_shadow():
    manager = params_for()["components"][SHADOW_MANAGER]
    assert json.loads(manager["configurationUpdate"]["merge"]) == {
        "synchronize": {"coreThing": {"classic": True}, "direction": "betweenDeviceAndCloud"}
    }


def test_a_thing_group_names_each_cores_own_thing_in_the_access_control():
    params = deployment_params(
        default_topology(),
        target_arn="arn:aws:iot:us-east-1:123456789012:thinggroup/pis",
        components={"sensor": "1.0.0", "anomaly": "1.0.0"},
        prefix="com.edgeagent",
        secret_arns={"snow-credentials": SECRET_ARN},
        secret_manager_version="2.2.3",
        posix_user="1000:1000",
    )
    sensor, _ = merged(params, "com.edgeagent.sensor")
    [resource] = sensor["accessControl"][SHADOW_MANAGER]["com.edgeagent.sensor:shadow-get"][
        "resources"
    ]
    assert resource == "$aws/things/{iot:thingName}/shadow"  # the nucleus interpolates it


def test_the_deployment_carries_the_values_and_ipc_access():
    params = params_for()
    assert validation_errors("greengrassv2", "CreateDeployment", params) == []
    sensor, reset = merged(params, "com.edgeagent.sensor")
    assert reset == [""]  # exactly this deployment's configuration, nothing left from before
    assert {k: sensor[k] for k in default_topology().function("sensor").environment} == dict(
        default_topology().function("sensor").environment
    )
    acl = sensor["accessControl"]
    cloud = acl[MQTT_PROXY]["com.edgeagent.sensor:publish-cloud"]
    assert cloud["operations"] == ["aws.greengrass#PublishToIoTCore"]
    assert cloud["resources"] == ["IoTBlog/sensorData", "IoTBlog/anomaly"]
    local = acl[PUBSUB]["com.edgeagent.sensor:publish-local"]
    assert local["operations"] == ["aws.greengrass#PublishToTopic"]
    assert local["resources"] == ["IoTBlog/anomaly"]
    assert SECRET_MANAGER not in acl
    anomaly, _ = merged(params, "com.edgeagent.anomaly")
    assert anomaly["accessControl"][SECRET_MANAGER]["com.edgeagent.anomaly:secrets"] == {
        "policyDescription": "read the ServiceNow credentials",
        "operations": ["aws.greengrass#GetSecretValue"],
        "resources": [SECRET_ARN],
    }
    subscribe = anomaly["accessControl"][PUBSUB]["com.edgeagent.anomaly:subscribe-local"]
    assert subscribe["resources"] == ["IoTBlog/anomaly"]
    assert MQTT_PROXY not in anomaly["accessControl"]
    secret_manager = params["components"][SECRET_MANAGER]
    assert json.loads(secret_manager["configurationUpdate"]["merge"]) == {
        "cloudSecrets": [{"arn": SECRET_ARN}]
    }
    assert params["components"]["com.edgeagent.sensor"]["runWith"] == {
        "posixUser": "1000:1000",
        "systemResourceLimits": {"memory": default_topology().function("sensor").memory_kb},
    }


def test_a_changed_limit_or_topic_changes_the_deployment_not_the_recipe():
    before = default_topology()
    after = default_topology(
        environment={"sensor": {"tempLimit": "28", "readingsTopic": "plant/readings"}}
    )
    assert recipe_for("sensor", before) == recipe_for("sensor", after)
    assert recipe_for("anomaly", before) == recipe_for("anomaly", after)
    sensor, _ = merged(params_for(after), "com.edgeagent.sensor")
    assert sensor["tempLimit"] == "28"
    cloud = sensor["accessControl"][MQTT_PROXY]["com.edgeagent.sensor:publish-cloud"]
    assert cloud["resources"] == ["plant/readings", "IoTBlog/anomaly"]
    assert params_for(before) != params_for(after)


def test_a_documented_variable_not_in_the_topology_is_still_configuration():
    """tempLowLimit is unset in the default topology; setting it later needs no new version."""
    recipe = recipe_for("sensor")
    assert "tempLowLimit" in recipe["ComponentConfiguration"]["DefaultConfiguration"]
    topology = default_topology(environment={"sensor": {"tempLowLimit": "5"}})
    assert recipe_for("sensor", topology) == recipe
    assert merged(params_for(topology), "com.edgeagent.sensor")[0]["tempLowLimit"] == "5"


def test_anomaly_recipe_depends_on_the_secret_manager():
    recipe = recipe_for("anomaly")
    assert recipe_errors(recipe) == []
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
    recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"] = {
        PUBSUB: {"x": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["t"]}}
    }
    del recipe["ComponentConfiguration"]["DefaultConfiguration"]["snowUrl"]
    del recipe["Manifests"][0]["Lifecycle"]["Run"]
    errors = "\n".join(recipe_errors(recipe))
    assert "major.minor.patch" in errors
    assert "not valid for aws.greengrass.ipc.pubsub" in errors
    assert "Lifecycle.Run is missing" in errors
    # the nucleus would hand the process the literal "{configuration:/snowUrl}"
    assert "Setenv snowUrl refers to configuration /snowUrl that has no default" in errors


def test_component_configuration_values_are_strings():
    topology = default_topology().for_thing("pi")
    spec = topology.function("sensor")
    config = component_configuration(topology, spec, "com.edgeagent.sensor", {})
    assert all(isinstance(v, str) for k, v in config.items() if k != "accessControl")


def test_v2_plan_writes_every_document_for_review(tmp_path, capsys):
    src = make_source_root(tmp_path / "src")
    site = make_site_packages(tmp_path / "site", DEVICE_DISTS)
    out = tmp_path / "v2"
    wheelhouse = make_wheelhouse(tmp_path / "wheels")
    code = main(
        ["v2", "plan", "--out", str(out), "--source-root", str(src), "--site-packages", str(site)]
        + ["--package-dir", str(tmp_path / "pkg"), "--bucket", "artifacts"]
        + ["--uid", "1001", "--gid", "1001", "--state", str(tmp_path / "none.json")]
        + ["--wheelhouse", str(wheelhouse), "--no-index"]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    recipes = sorted(p.name for p in out.glob("*.recipe.json"))
    assert recipes == ["com.edgeagent.anomaly.recipe.json", "com.edgeagent.sensor.recipe.json"]
    for name in recipes:
        assert recipe_errors(json.loads((out / name).read_text())) == []
    deployment = json.loads((out / "deployment.json").read_text())
    assert validation_errors("greengrassv2", "CreateDeployment", deployment) == []
    assert deployment["components"]["com.edgeagent.anomaly"]["runWith"]["posixUser"] == "1001:1001"
    trust = json.loads((out / "token-exchange-role-trust.json").read_text())
    assert trust["Statement"][0]["Principal"] == {"Service": "credentials.iot.amazonaws.com"}
    access = json.loads((out / "token-exchange-role-access.json").read_text())
    assert "arn:aws:s3:::artifacts/edge-agent/artifacts/*" in json.dumps(access)
    policy = json.loads((out / "core-iot-policy.json").read_text())
    assert (
        validation_errors(
            "iot", "CreatePolicy", {"policyName": "p", "policyDocument": json.dumps(policy)}
        )
        == []
    )
    config = yaml.safe_load((out / "config.yaml").read_text())
    nucleus = config["services"]["aws.greengrass.Nucleus"]
    assert config["system"]["thingName"] == "edge-agent-core"
    assert nucleus["configuration"]["iotRoleAlias"] == "edge-agent-token-exchange-alias"
    script = (out / "install-on-pi.sh").read_text()
    assert subprocess.run(["sh", "-n", str(out / "install-on-pi.sh")]).returncode == 0
    assert 'usermod -aG i2c,video,input "$(id -nu 1001)"' in script
    assert "--init-config ./config.yaml" in script
    plan = json.loads((out / "plan.json").read_text())
    assert any("put-role-policy" in c for c in plan["commands"])
    assert "placeholders used" in printed and "iot_endpoints" in printed
    assert "edge-agent check-servicenow --snow-url URL --secret-file FILE" in printed


@pytest.mark.parametrize("bad", ["3", "python3.11", "3.x"])
def test_device_python_must_look_like_a_version(tmp_path, capsys, bad):
    code = main(["v2", "package", "--out", str(tmp_path), "--device-python", bad])
    assert code == 2 and "expected a Python version" in capsys.readouterr().err


@pytest.mark.parametrize("raspi_config", [True, False], ids=["raspberry-pi-os", "other-os"])
def test_install_on_pi_turns_i2c_on(tmp_path, raspi_config):
    """The script runs on the Pi as root; here each command it calls is a stub that writes
    down how it was called, so what it would do is what it asks for, in order."""
    from deploy.v2.core_documents import pi_install_script

    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "install-on-pi.sh").write_text(
        pi_install_script(
            cert_file="core.cert.pem",
            key_file="core.private.key",
            run_as="1001:1001",
            state_dirs=["/opt/edge-agent/state"],
        )
    )
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "calls"
    tools = ["apt-get", "usermod", "install", "curl", "unzip", "java", "id"]
    for tool in tools + (["raspi-config"] if raspi_config else []):
        answer = "echo ggc_user" if tool == "id" else ":"
        (stubs / tool).write_text(
            '#!/bin/sh\necho "{} $*" >> "{}"\n{}\n'.format(tool, calls, answer)
        )
        (stubs / tool).chmod(0o755)
    (stubs / "dirname").symlink_to("/usr/bin/dirname")

    done = subprocess.run(
        ["/bin/sh", str(certs / "install-on-pi.sh")],
        env={"PATH": str(stubs)},
        capture_output=True,
        text=True,
    )

    assert done.returncode == 0, done.stderr
    called = calls.read_text().splitlines()
    usermod = called.index("usermod -aG i2c,video,input ggc_user")
    if raspi_config:
        assert called.index("raspi-config nonint do_i2c 0") < usermod
        assert done.stderr == ""
    else:
        assert not any(c.startswith("raspi-config") for c in called)
        assert done.stderr.startswith("raspi-config not found: turn I2C on yourself")
