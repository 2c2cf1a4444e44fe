"""What a Greengrass V2 core device needs beyond its components. Pure: no AWS calls.

* the token exchange role's trust (``credentials.iot.amazonaws.com``) and its
  access policy: read this deployment's artifacts and the secrets its components
  read, nothing else (AWS IoT Greengrass V2 Developer Guide, "Authorize core
  devices to interact with AWS services"; the core's logs stay local, so no
  CloudWatch Logs actions);
* the core's AWS IoT policy, after "Minimal AWS IoT policy for AWS IoT Greengrass
  V2 core devices" (Developer Guide, "Device authentication and authorization"),
  narrowed to this thing: client ids ``<thing>`` and ``<thing>#<n>`` (the nucleus's
  extra connections), its shadows (the deployment shadow, and the classic one
  ShadowManager syncs with ``iot:UpdateThingShadow`` calls, hearing of cloud
  changes on ``update/accepted``), its jobs topics, its telemetry topics, and
  the topics the subscriptions send to or take from ``cloud``;
* the nucleus installer's partial configuration (``config.yaml``) and the commands
  that install it on the Pi (Developer Guide, "Install AWS IoT Greengrass Core
  software with manual resource provisioning").
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence

from agent.topology import CLOUD, GroupTopology

from ..naming import DEFAULT_NUCLEUS_VERSION, partition_for
from ..policy import POLICY_VERSION, check_policy_size, topic_resource

TOKEN_EXCHANGE_SERVICE = "credentials.iot.amazonaws.com"
GREENGRASS_ROOT = "/greengrass/v2"
ROOT_CA_FILE = "AmazonRootCA1.pem"
ROOT_CA_URL = "https://www.amazontrust.com/repository/AmazonRootCA1.pem"
NUCLEUS_URL = "https://d2s8p88vqu9w66.cloudfront.net/releases/greengrass-{}.zip"
COMPONENT_DEFAULT_USER = "ggc_user:ggc_group"
# The data-plane actions a nucleus calls for deployments. AWS's minimal core policy
# grants them on "*": their requests name public components and deployment documents,
# not resources of this account that a narrower ARN could list in advance.
GREENGRASS_DATA_PLANE = (
    "greengrass:GetComponentVersionArtifact",
    "greengrass:ResolveComponentCandidates",
    "greengrass:GetDeploymentConfiguration",
    "greengrass:ListThingGroupsForCoreDevice",
)


def token_exchange_access_policy(
    partition: str, bucket: str, artifact_prefix: str, secret_arns: Sequence[str]
) -> Dict[str, Any]:
    """The token exchange role's permissions: artifacts under the prefix, the secrets."""
    prefix = artifact_prefix.strip("/")
    statements: List[Dict[str, Any]] = [
        {
            # the nucleus downloads component artifacts from S3 with the role's credentials
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": ["arn:{}:s3:::{}/{}/*".format(partition, bucket, prefix)],
        },
        {
            # ...after asking where the bucket is
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation"],
            "Resource": ["arn:{}:s3:::{}".format(partition, bucket)],
        },
    ]
    if secret_arns:
        statements.append(
            {
                # aws.greengrass.SecretManager fetches the cloud secrets it serves over IPC
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": sorted(set(secret_arns)),
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def core_iot_policy(
    topology: GroupTopology, region: str, account: str, thing: str, role_alias: str
) -> Dict[str, Any]:
    """The V2 core's AWS IoT policy (see the module docstring)."""
    partition = partition_for(region)

    def arn(resource: str) -> str:
        return "arn:{}:iot:{}:{}:{}".format(partition, region, account, resource)

    own = "$aws/things/{}".format(thing)
    core_topics = [
        # its shadows: the named deployment shadow (deployments to the thing) and the
        # classic one ShadowManager syncs (the sensor's limits) -- AWS's minimal policy's
        # "<thing>*/shadow/*" without the "*" that would also match other things
        "{}/shadow/*".format(own),
        "{}/jobs/*".format(own),  # deployments to its thing groups
        "{}/greengrassv2/health/json".format(own),  # fleet status
        "{}/greengrass/health/json".format(own),  # telemetry
    ]
    to_cloud = _unique(s.subject for s in topology.subscriptions if s.target == CLOUD)
    from_cloud = _unique(s.subject for s in topology.subscriptions if s.source == CLOUD)
    publish = core_topics + [topic_resource(s) for s in to_cloud]
    receive = core_topics[:2] + [topic_resource(s) for s in from_cloud]
    subscribe = core_topics[:2] + list(from_cloud)
    statements: List[Dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": ["iot:Connect"],
            "Resource": [arn("client/" + thing), arn("client/{}#*".format(thing))],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Publish"],
            "Resource": [arn("topic/" + t) for t in _unique(publish)],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Receive"],
            "Resource": [arn("topic/" + t) for t in _unique(receive)],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Subscribe"],
            "Resource": [arn("topicfilter/" + t) for t in _unique(subscribe)],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:GetThingShadow", "iot:UpdateThingShadow", "iot:DeleteThingShadow"],
            "Resource": [arn("thing/" + thing)],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:AssumeRoleWithCertificate"],
            "Resource": [arn("rolealias/" + role_alias)],
        },
        {"Effect": "Allow", "Action": list(GREENGRASS_DATA_PLANE), "Resource": ["*"]},
    ]
    document = {"Version": POLICY_VERSION, "Statement": statements}
    check_policy_size(document)
    return document


def _unique(items: Any) -> List[str]:
    return list(dict.fromkeys(items))


def nucleus_config_yaml(
    *,
    thing: str,
    region: str,
    role_alias: str,
    data_endpoint: str,
    credentials_endpoint: str,
    cert_file: str,
    key_file: str,
    nucleus_version: str = DEFAULT_NUCLEUS_VERSION,
    root: str = GREENGRASS_ROOT,
) -> str:
    """The installer's ``--init-config``: this core's identity and endpoints.

    Values are JSON strings, which YAML reads as double-quoted scalars.
    """
    q = json.dumps
    lines = [
        "---",
        "system:",
        "  certificateFilePath: {}".format(q("{}/{}".format(root, cert_file))),
        "  privateKeyPath: {}".format(q("{}/{}".format(root, key_file))),
        "  rootCaPath: {}".format(q("{}/{}".format(root, ROOT_CA_FILE))),
        "  rootpath: {}".format(q(root)),
        "  thingName: {}".format(q(thing)),
        "services:",
        "  aws.greengrass.Nucleus:",
        '    componentType: "NUCLEUS"',
        "    version: {}".format(q(nucleus_version)),
        "    configuration:",
        "      awsRegion: {}".format(q(region)),
        "      iotRoleAlias: {}".format(q(role_alias)),
        "      iotDataEndpoint: {}".format(q(data_endpoint)),
        "      iotCredEndpoint: {}".format(q(credentials_endpoint)),
        # {iot:thingName} in a thing group's access control (the shadow): nucleus 2.6+
        "      interpolateComponentConfiguration: true",
    ]
    return "\n".join(lines) + "\n"


def pi_install_script(
    *,
    cert_file: str,
    key_file: str,
    run_as: str,
    state_dirs: Sequence[str],
    nucleus_version: str = DEFAULT_NUCLEUS_VERSION,
    root: str = GREENGRASS_ROOT,
) -> str:
    """A shell script, run with sudo on the Pi from the copied certs directory, that installs
    the nucleus with ``config.yaml`` and prepares what the components need."""
    uid, _, gid = run_as.partition(":")
    lines = [
        "#!/bin/sh",
        "# Run on the Raspberry Pi, from the directory holding this file, config.yaml,",
        "# the certificate and the private key:  sudo sh install-on-pi.sh",
        "set -eu",
        'cd "$(dirname "$0")"',
        "apt-get update",
        "apt-get install -y default-jdk-headless python3-venv python3-sense-hat curl unzip",
        # The sensor reads the Sense HAT's chips over I2C, which Raspberry Pi OS ships off;
        # raspi-config turns it on now (loads i2c-dev) and at every boot (config.txt).
        "# the Sense HAT's chips are read over I2C: turn it on (now and at every boot)",
        "if command -v raspi-config >/dev/null 2>&1; then",
        "  raspi-config nonint do_i2c 0",
        "else",
        "  echo 'raspi-config not found: turn I2C on yourself (dtparam=i2c_arm=on in the "
        "boot config.txt, and load i2c-dev), or the sensor stops with: no I2C bus' >&2",
        "fi",
        "# the components' user may use the Sense HAT (I2C, framebuffer, joystick)",
        'usermod -aG i2c,video,input "$(id -nu {})"'.format(uid),
    ]
    for directory in state_dirs:
        lines.append("install -d -o {} -g {} -m 0750 {}".format(uid, gid or uid, directory))
    lines += [
        # the nucleus runs as root; component users must reach their artifacts below root
        "install -d -m 0755 /greengrass {}".format(root),
        "install -m 0600 {} {} {}/".format(cert_file, key_file, root),
        "curl -fsS -o {}/{} {}".format(root, ROOT_CA_FILE, ROOT_CA_URL),
        "curl -fsS -o greengrass-nucleus.zip {}".format(NUCLEUS_URL.format(nucleus_version)),
        "unzip -q -o greengrass-nucleus.zip -d GreengrassInstaller",
        nucleus_install_command(root),
    ]
    return "\n".join(lines) + "\n"


def nucleus_install_command(root: str = GREENGRASS_ROOT) -> str:
    return (
        'java -Droot="{}" -Dlog.store=FILE -jar ./GreengrassInstaller/lib/Greengrass.jar '
        "--init-config ./config.yaml --component-default-user {} "
        "--setup-system-service true".format(root, COMPONENT_DEFAULT_USER)
    )


def state_directories(topology: GroupTopology) -> List[str]:
    """The directories the functions keep state in (their ``stateDir``)."""
    return _unique(
        str(spec.environment["stateDir"])
        for spec in topology.functions
        if spec.environment.get("stateDir")
    )
