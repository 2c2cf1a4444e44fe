"""Greengrass V1 definition documents, built from the topology. Pure: no AWS calls.

Each builder returns the ``InitialVersion`` shape the AWS CLI takes with
``--initial-version file://...`` (and ``create_*_definition_version`` takes as
keyword arguments): ``{"Cores": [...]}``, ``{"Functions": [...], "DefaultConfig":
...}``, ``{"Resources": [...]}``, ``{"Subscriptions": [...]}``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping

from agent.greengrass.routing import validate_subject
from agent.topology import CLOUD, FunctionSpec, GroupTopology

from .errors import DeployError
from .naming import Target
from .policy import iot_policy
from .validation import (
    check_certificate_arn,
    check_secret_arn,
    check_thing_arn,
    raise_violations,
    v1_rule_violations,
    validate_params,
)

LOG = logging.getLogger(__name__)
MAX_RESOURCE_ACCESS_POLICIES = 10  # per function, a Greengrass V1 limit
ISOLATION_MODE = "GreengrassContainer"  # local device resources need the container
# Sanity bounds for MemorySize, which Greengrass takes in KB (other tools
# multiplied MB by 1000 and sent megabytes of "KB"): 2 MB .. 4 GB.
MIN_MEMORY_KB = 2 * 1024
MAX_MEMORY_KB = 4 * 1024 * 1024
GREENGRASS_SOURCES = ("GGShadowService",)

Document = Dict[str, Any]


def content_hash(document: Any) -> str:
    """A stable hash of a JSON-able document (key order does not matter)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _run_as(topology: GroupTopology, target: Target) -> Dict[str, int]:
    uid, gid = topology.run_as_uid, topology.run_as_gid
    if (uid == 0 or gid == 0) and not target.run_as_root:
        raise DeployError(
            "functions would run as root (uid {} gid {})".format(uid, gid),
            hint="use a non-root --uid/--gid, or pass --run-as-root explicitly (the core's "
            'config.json then needs "runtime": {"allowFunctionsToRunAsRoot": "yes"})',
        )
    return {"Uid": uid, "Gid": gid}


def core_definition(topology: GroupTopology, target: Target) -> Document:
    check_thing_arn(target.thing_arn)
    check_certificate_arn(target.certificate_arn)
    return {
        "Cores": [
            {
                "Id": target.thing_name,
                "CertificateArn": target.certificate_arn,
                "ThingArn": target.thing_arn,
                "SyncShadow": target.sync_shadow,
            }
        ]
    }


def _function_entry(spec: FunctionSpec, topology: GroupTopology, target: Target) -> Document:
    if not MIN_MEMORY_KB <= spec.memory_kb <= MAX_MEMORY_KB:
        raise DeployError(
            "function {!r}: memory_kb={} is outside {}..{} KB (Greengrass MemorySize is in KB, "
            "not MB or bytes)".format(spec.id, spec.memory_kb, MIN_MEMORY_KB, MAX_MEMORY_KB)
        )
    if len(spec.resource_access) > MAX_RESOURCE_ACCESS_POLICIES:
        raise DeployError(
            "function {!r} has {} resource access policies; Greengrass allows at most {}".format(
                spec.id, len(spec.resource_access), MAX_RESOURCE_ACCESS_POLICIES
            )
        )
    known_resources = (
        {s.id for s in topology.secrets}
        | {d.id for d in topology.devices}
        | {v.id for v in topology.volumes}
    )
    for access in spec.resource_access:
        if access.resource_id not in known_resources:
            raise DeployError(
                "function {!r} refers to unknown resource {!r}".format(spec.id, access.resource_id)
            )
        if access.permission not in ("ro", "rw"):
            raise DeployError(
                "function {!r}: permission {!r} must be 'ro' or 'rw'".format(
                    spec.id, access.permission
                )
            )
    for key, value in spec.environment.items():
        if not isinstance(value, str):
            raise DeployError(
                "function {!r}: environment variable {} must be a string, got {!r}".format(
                    spec.id, key, type(value).__name__
                )
            )
    arn = target.function_arn(topology, spec.id)
    # With the subjects it is routed on: the core drops any other message without telling it.
    variables = topology.deployed_environment(spec.id)
    environment: Document = {
        "Variables": {key: variables[key] for key in sorted(variables)},
        "AccessSysfs": spec.access_sysfs,
        "Execution": {"IsolationMode": ISOLATION_MODE, "RunAs": _run_as(topology, target)},
    }
    if spec.resource_access:
        environment["ResourceAccessPolicies"] = [
            {"ResourceId": a.resource_id, "Permission": a.permission} for a in spec.resource_access
        ]
    return {
        "Id": spec.id,
        "FunctionArn": arn,
        "FunctionConfiguration": {
            "EncodingType": "json",
            "Executable": spec.executable,
            "MemorySize": spec.memory_kb,
            "Pinned": spec.pinned,
            "Timeout": spec.timeout_s,
            "Environment": environment,
        },
    }


def function_definition(topology: GroupTopology, target: Target) -> Document:
    ids = [spec.id for spec in topology.functions]
    if len(set(ids)) != len(ids):
        raise DeployError("duplicate function ids in topology: {}".format(ids))
    return {
        "Functions": [_function_entry(spec, topology, target) for spec in topology.functions],
        "DefaultConfig": {
            "Execution": {"IsolationMode": ISOLATION_MODE, "RunAs": _run_as(topology, target)}
        },
    }


def resource_definition(topology: GroupTopology, target: Target) -> Document:
    resources: List[Document] = []
    for secret in topology.secrets:
        arn = target.secret_arn(topology, secret.id)
        check_secret_arn(arn)
        data: Document = {"ARN": arn}
        if secret.staging_labels:
            data["AdditionalStagingLabelsToDownload"] = list(secret.staging_labels)
        resources.append(
            {
                "Id": secret.id,
                "Name": secret.id,
                "ResourceDataContainer": {"SecretsManagerSecretResourceData": data},
            }
        )
    for device in topology.devices:
        resources.append(
            {
                "Id": device.id,
                "Name": device.id,
                "ResourceDataContainer": {
                    "LocalDeviceResourceData": {
                        "SourcePath": device.source_path,
                        "GroupOwnerSetting": {"AutoAddGroupOwner": True},
                    }
                },
            }
        )
    for volume in topology.volumes:
        resources.append(
            {
                "Id": volume.id,
                "Name": volume.id,
                "ResourceDataContainer": {
                    "LocalVolumeResourceData": {
                        "SourcePath": volume.source_path,
                        "DestinationPath": volume.destination_path,
                        "GroupOwnerSetting": {"AutoAddGroupOwner": True},
                    }
                },
            }
        )
    return {"Resources": resources}


def _endpoint(topology: GroupTopology, target: Target, name: str) -> str:
    if name == CLOUD or name in GREENGRASS_SOURCES or name.startswith("arn:"):
        return name
    try:
        return target.function_arn(topology, name)
    except KeyError:
        raise DeployError(
            "subscription endpoint {!r} is neither a function id, 'cloud' nor an ARN".format(name)
        )


def subscription_definition(topology: GroupTopology, target: Target) -> Document:
    topology = topology.for_thing(target.thing_name)
    subscriptions = []
    for sub in topology.subscriptions:
        try:
            validate_subject(sub.subject)
        except ValueError as exc:
            raise DeployError("subscription {!r}: {}".format(sub.id, exc))
        subscriptions.append(
            {
                "Id": sub.id,
                "Source": _endpoint(topology, target, sub.source),
                "Subject": sub.subject,
                "Target": _endpoint(topology, target, sub.target),
            }
        )
    return {"Subscriptions": subscriptions}


@dataclass(frozen=True)
class Documents:
    core: Document
    function: Document
    resource: Document
    subscription: Document
    policy: Document

    def definition(self, kind: str) -> Document:
        return {
            "core": self.core,
            "function": self.function,
            "resource": self.resource,
            "subscription": self.subscription,
        }[kind]


def build_documents(topology: GroupTopology, target: Target) -> Documents:
    topology = topology.for_thing(target.thing_name)  # the shadow subscriptions name the core
    LOG.debug(
        "building definitions for group %s (placeholders: %s)",
        topology.name,
        ", ".join(target.placeholders) or "none",
    )
    return Documents(
        core=core_definition(topology, target),
        function=function_definition(topology, target),
        resource=resource_definition(topology, target),
        subscription=subscription_definition(topology, target),
        policy=iot_policy(topology, target),
    )


CREATE_OPERATIONS = {
    "core": "CreateCoreDefinition",
    "function": "CreateFunctionDefinition",
    "resource": "CreateResourceDefinition",
    "subscription": "CreateSubscriptionDefinition",
}


def validate_documents(documents: Documents, names_policy: str = "edge-agent-core-policy") -> None:
    """Validate every document against AWS's documented Greengrass V1 rules (all problems
    at once, each naming the resource and the rule) and botocore's greengrass and iot
    service models."""
    raise_violations(
        v1_rule_violations(documents.resource, documents.function, documents.subscription),
        "the group's definitions",
    )
    for kind, operation in CREATE_OPERATIONS.items():
        validate_params(
            "greengrass",
            operation,
            {"Name": "validation", "InitialVersion": documents.definition(kind)},
        )
    validate_params(
        "iot",
        "CreatePolicy",
        {"policyName": names_policy, "policyDocument": json.dumps(documents.policy)},
    )


def group_version_params(group_id: str, version_arns: Mapping[str, str]) -> Document:
    """``CreateGroupVersion`` parameters: the group id and one version ARN per kind."""
    return {
        "GroupId": group_id,
        "CoreDefinitionVersionArn": version_arns["core"],
        "FunctionDefinitionVersionArn": version_arns["function"],
        "ResourceDefinitionVersionArn": version_arns["resource"],
        "SubscriptionDefinitionVersionArn": version_arns["subscription"],
    }
