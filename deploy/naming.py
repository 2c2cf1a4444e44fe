"""Names, ARNs and placeholders: what the deploy tool calls things in AWS.

Every AWS name is derived from the topology's ``name`` (and the core's thing
name), never restated. Values only AWS can know (account id, certificate id,
the secret's random suffix, the group id) are filled in from options or the
state file; when unknown, ``plan`` uses the placeholders below, which are
clearly fake but still form ARNs of the right shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Mapping, Tuple
from urllib.parse import quote

from agent.topology import GroupTopology

PLACEHOLDER_ACCOUNT = "000000000000"
PLACEHOLDER_REGION = "us-east-1"
PLACEHOLDER_CERT_ID = "0" * 64
PLACEHOLDER_GROUP_ID = "00000000-0000-0000-0000-000000000000"
# Secrets Manager appends "-" and 6 random characters to the name in the ARN.
PLACEHOLDER_SECRET_SUFFIX = "XXXXXX"

DEFAULT_ALIAS = "live"
LAMBDA_RUNTIME = "python3.8"  # the newest runtime a Greengrass V1 core runs (3.7 or 3.8)
TARGET_PYTHON = "3.8"  # what a V1 Lambda zip must import on
# The Python of Raspberry Pi OS 12 "Bookworm" (Debian 12), which a V2 component's
# venv uses; --device-python for another OS release (Bullseye: 3.9, Trixie: 3.13).
DEFAULT_DEVICE_PYTHON = "3.11"
# The V2 core's config.yaml names this nucleus version, and the Pi downloads the same one.
DEFAULT_NUCLEUS_VERSION = "2.15.0"

DEFINITION_KINDS = ("core", "function", "resource", "subscription")


def partition_for(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


@dataclass(frozen=True)
class Names:
    """AWS resource names for one group."""

    group: str
    thing: str

    @classmethod
    def for_topology(cls, topology: GroupTopology, thing_name: str = "") -> Names:
        return cls(group=topology.name, thing=thing_name or "{}-core".format(topology.name))

    @property
    def policy(self) -> str:
        return "{}-policy".format(self.thing)

    @property
    def lambda_role(self) -> str:
        return "{}-lambda-role".format(self.group)

    @property
    def group_role(self) -> str:
        return "{}-greengrass-group-role".format(self.group)

    @property
    def service_role(self) -> str:
        return "{}-greengrass-service-role".format(self.group)

    @property
    def token_exchange_role(self) -> str:
        """The V2 core's IAM role, assumed through the IoT credentials provider."""
        return "{}-token-exchange-role".format(self.group)

    @property
    def token_exchange_alias(self) -> str:
        return "{}-token-exchange-alias".format(self.group)

    @property
    def token_exchange_access(self) -> str:
        """The token exchange role's inline policy."""
        return "{}-token-exchange-access".format(self.group)

    @property
    def v2_policy(self) -> str:
        """The V2 core's AWS IoT policy (the V1 core's is ``policy``)."""
        return "{}-v2-policy".format(self.thing)

    def definition(self, kind: str) -> str:
        return "{}-{}s".format(self.group, kind)


def thing_arn(region: str, account: str, thing: str) -> str:
    return "arn:{}:iot:{}:{}:thing/{}".format(partition_for(region), region, account, thing)


def certificate_arn(region: str, account: str, certificate_id: str) -> str:
    return "arn:{}:iot:{}:{}:cert/{}".format(partition_for(region), region, account, certificate_id)


def lambda_arn(region: str, account: str, function_name: str, qualifier: str = "") -> str:
    arn = "arn:{}:lambda:{}:{}:function:{}".format(
        partition_for(region), region, account, function_name
    )
    return "{}:{}".format(arn, qualifier) if qualifier else arn


def secret_arn(
    region: str, account: str, name: str, suffix: str = PLACEHOLDER_SECRET_SUFFIX
) -> str:
    return "arn:{}:secretsmanager:{}:{}:secret:{}-{}".format(
        partition_for(region), region, account, name, suffix
    )


def role_arn(region: str, account: str, role_name: str) -> str:
    return "arn:{}:iam::{}:role/{}".format(partition_for(region), account, role_name)


def group_deployments_arn(region: str, account: str, group_id: str) -> str:
    """Resource of the core's GetDeployment/GetDeploymentArtifacts calls."""
    return "arn:{}:greengrass:{}:{}:/greengrass/groups/{}/deployments/*".format(
        partition_for(region), region, account, group_id
    )


def core_deployment_status_arn(region: str, account: str, group_id: str, thing: str) -> str:
    """Resource of UpdateCoreDeploymentStatus: ends with the URL-encoded thing ARN."""
    return "{}/cores/{}".format(
        group_deployments_arn(region, account, group_id),
        quote(thing_arn(region, account, thing), safe=""),
    )


@dataclass(frozen=True)
class Target:
    """Everything the documents need beyond the topology: where and as what.

    ``placeholders`` names the fields that are not real values yet.
    """

    region: str
    account: str
    thing_name: str
    certificate_arn: str
    group_id: str
    alias: str = DEFAULT_ALIAS
    function_arns: Mapping[str, str] = field(default_factory=dict)  # function id -> qualified ARN
    secret_arns: Mapping[str, str] = field(default_factory=dict)  # resource id -> secret ARN
    run_as_root: bool = False
    sync_shadow: bool = True
    placeholders: Tuple[str, ...] = ()

    @property
    def thing_arn(self) -> str:
        return thing_arn(self.region, self.account, self.thing_name)

    def function_arn(self, topology: GroupTopology, function_id: str) -> str:
        """The qualified (alias) Lambda ARN of a function id."""
        if function_id in self.function_arns:
            return self.function_arns[function_id]
        spec = topology.function(function_id)
        return lambda_arn(self.region, self.account, spec.lambda_name, self.alias)

    def secret_arn(self, topology: GroupTopology, resource_id: str) -> str:
        if resource_id in self.secret_arns:
            return self.secret_arns[resource_id]
        for secret in topology.secrets:
            if secret.id == resource_id:
                return secret_arn(self.region, self.account, secret.secret_name)
        raise KeyError(resource_id)


def target_from(
    topology: GroupTopology,
    state: Mapping[str, object],
    *,
    region: str = "",
    account: str = "",
    thing_name: str = "",
    certificate_arn_value: str = "",
    group_id: str = "",
    alias: str = "",
    secret_arn_value: str = "",
    run_as_root: bool = False,
) -> Target:
    """A Target from options, else the state file ``up`` wrote, else placeholders."""
    placeholders = []
    st: Dict[str, object] = dict(state)

    def from_state(*path: str) -> str:
        node: object = st
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return ""
            node = node[key]
        return node if isinstance(node, str) else ""

    region = region or from_state("region")
    if not region:
        region = PLACEHOLDER_REGION
        placeholders.append("region")
    account = account or from_state("account")
    if not account:
        account = PLACEHOLDER_ACCOUNT
        placeholders.append("account")
    thing_name = thing_name or from_state("thing", "name")
    names = Names.for_topology(topology, thing_name)
    cert = certificate_arn_value or from_state("certificate", "arn")
    if not cert:
        cert = certificate_arn(region, account, PLACEHOLDER_CERT_ID)
        placeholders.append("certificate_arn")
    group_id = group_id or from_state("group", "id")
    if not group_id:
        group_id = PLACEHOLDER_GROUP_ID
        placeholders.append("group_id")
    alias = alias or from_state("alias") or DEFAULT_ALIAS
    function_arns: Dict[str, str] = {}
    functions = st.get("functions") if isinstance(st.get("functions"), dict) else {}
    for spec in topology.functions:
        recorded = functions.get(spec.id) if isinstance(functions, dict) else None
        if (
            isinstance(recorded, dict)
            and recorded.get("alias_arn")
            and recorded.get("alias") == alias
        ):
            function_arns[spec.id] = str(recorded["alias_arn"])
    secret_arns: Dict[str, str] = {}
    for index, secret in enumerate(topology.secrets):
        # --secret-arn names the first (in the default topology: the only) secret.
        recorded_arn = (secret_arn_value if index == 0 else "") or from_state(
            "secrets", secret.id, "arn"
        )
        if recorded_arn:
            secret_arns[secret.id] = recorded_arn
        else:
            placeholders.append("secret_arn:{}".format(secret.id))
    return Target(
        region=region,
        account=account,
        thing_name=names.thing,
        certificate_arn=cert,
        group_id=group_id,
        alias=alias,
        function_arns=function_arns,
        secret_arns=secret_arns,
        run_as_root=run_as_root,
        placeholders=tuple(placeholders),
    )
