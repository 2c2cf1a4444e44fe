"""Greengrass V2 deployments: the ``CreateDeployment`` document and waiting for the cores.

Each component runs as the topology's uid:gid (``--posix-user``) with its
memory limit (KB, like the V1 ``MemorySize``) and gets its configuration (the
function's variables and ``accessControl``) through ``configurationUpdate``;
the SecretManager component gets ``cloudSecrets`` the same way, and the
ShadowManager component syncs each core's classic shadow with AWS IoT
(``synchronize.coreThing``). A changed limit is therefore a new deployment of
the same component versions, which the sensor applies without a restart (it
reads its run-time variables over IPC); one device's limits change through its
shadow (``deploy set``).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Sequence

from agent.topology import SHADOW_SERVICE, GroupTopology

from ..context import RunContext
from ..errors import DeploymentFailed, DeploymentTimedOut
from .recipes import (
    PLACEHOLDER_SHADOW_MANAGER_VERSION,
    SECRET_MANAGER,
    SHADOW_MANAGER,
    component_configuration,
    component_name,
    shadow_thing,
)

# Sync the core's own classic shadow both ways (ShadowManager's "synchronize" configuration).
SHADOW_SYNC = {
    "synchronize": {"coreThing": {"classic": True}, "direction": "betweenDeviceAndCloud"}
}

SUCCEEDED = ("SUCCEEDED", "COMPLETED")
FAILED = ("FAILED", "REJECTED", "TIMED_OUT", "CANCELED")


def deployment_params(
    topology: GroupTopology,
    *,
    target_arn: str,
    components: Mapping[str, str],  # function id -> component version
    prefix: str,
    secret_arns: Mapping[str, str],
    secret_manager_version: str,
    posix_user: str,
    shadow_manager_version: str = PLACEHOLDER_SHADOW_MANAGER_VERSION,
) -> Dict[str, Any]:
    specs: Dict[str, Any] = {}
    topology = topology.for_thing(shadow_thing(target_arn))
    for spec in topology.functions:
        name = component_name(prefix, spec)
        configuration = component_configuration(topology, spec, name, secret_arns)
        specs[name] = {
            "componentVersion": components[spec.id],
            # Reset to the recipe's defaults, then merge this topology's values: the
            # running configuration is exactly what this deployment says, whatever an
            # earlier one set (a variable removed from the topology is gone too).
            "configurationUpdate": {
                "reset": [""],
                "merge": json.dumps(configuration, sort_keys=True),
            },
            "runWith": {
                "posixUser": posix_user,
                "systemResourceLimits": {"memory": spec.memory_kb},
            },
        }
    if topology.secrets:
        cloud_secrets = []
        for secret in topology.secrets:
            entry: Dict[str, Any] = {"arn": secret_arns[secret.id]}
            if secret.staging_labels:
                entry["labels"] = list(secret.staging_labels)
            cloud_secrets.append(entry)
        specs[SECRET_MANAGER] = {
            "componentVersion": secret_manager_version,
            "configurationUpdate": {"merge": json.dumps({"cloudSecrets": cloud_secrets})},
        }
    if any(SHADOW_SERVICE in (s.source, s.target) for s in topology.subscriptions):
        specs[SHADOW_MANAGER] = {
            "componentVersion": shadow_manager_version,
            "configurationUpdate": {"merge": json.dumps(SHADOW_SYNC, sort_keys=True)},
        }
    return {
        "targetArn": target_arn,
        "deploymentName": topology.name,
        "components": specs,
    }


class DeploymentWatcher:
    """Per-device status of a deployment to a thing or a thing group.

    The devices of a thing group are the Greengrass core devices AWS lists for it
    (``ListCoreDevices``) plus those this tool put there; each device's status is its
    ``ListEffectiveDeployments`` entry for the deployment (``QUEUED`` until it has one).
    """

    def __init__(self, ctx: RunContext, timeout: float, poll_interval: float) -> None:
        self.ctx = ctx
        self.timeout = timeout
        self.poll_interval = poll_interval

    def devices(self, target_arn: str, expected: Sequence[str] = ()) -> List[str]:
        if ":thing/" in target_arn:
            return [target_arn.split(":thing/", 1)[1]]
        found: List[str] = list(expected)
        token = None
        while True:
            params: Dict[str, Any] = {"thingGroupArn": target_arn}
            if token:
                params["nextToken"] = token
            response = self.ctx.api.call(
                "greengrassv2",
                "ListCoreDevices",
                params,
                dry={"coreDevices": [{"coreDeviceThingName": e} for e in expected]},
            )
            for device in response.get("coreDevices", []):
                if device.get("coreDeviceThingName") not in found:
                    found.append(device["coreDeviceThingName"])
            token = response.get("nextToken")
            if not token:
                return found

    def _effective(self, thing: str, deployment_id: str) -> Dict[str, Any]:
        """The device's entry for the deployment (``QUEUED`` when it has none yet)."""
        token = None
        while True:
            params: Dict[str, Any] = {"coreDeviceThingName": thing}
            if token:
                params["nextToken"] = token
            response = self.ctx.api.call(
                "greengrassv2",
                "ListEffectiveDeployments",
                params,
                dry={
                    "effectiveDeployments": [
                        {"deploymentId": deployment_id, "coreDeviceExecutionStatus": "SUCCEEDED"}
                    ]
                },
            )
            for entry in response.get("effectiveDeployments", []):
                if entry.get("deploymentId") == deployment_id:
                    return entry
            token = response.get("nextToken")
            if not token:
                return {"coreDeviceExecutionStatus": "QUEUED"}

    def statuses(self, devices: Sequence[str], deployment_id: str) -> Dict[str, Dict[str, Any]]:
        return {thing: self._effective(thing, deployment_id) for thing in devices}

    def wait(
        self, target_arn: str, deployment_id: str, expected: Sequence[str] = ()
    ) -> Dict[str, str]:
        """Poll until every device succeeded (returned), or raise naming the devices that
        failed or did not finish in time."""
        api, out = self.ctx.api, self.ctx.out
        devices = self.devices(target_arn, expected)
        if not devices:
            out(
                "v2 deployment {}: no core devices in {} yet; each gets it when it "
                "connects (check with: python -m deploy v2 status)".format(
                    deployment_id, target_arn
                )
            )
            return {}
        deadline = api.now() + self.timeout
        last: Dict[str, str] = {}
        while True:
            entries = self.statuses(devices, deployment_id)
            for thing, entry in entries.items():
                status = entry.get("coreDeviceExecutionStatus", "QUEUED")
                if last.get(thing) != status:
                    out("v2 deployment {} on {}: {}".format(deployment_id, thing, status))
                    last[thing] = status
            if all(status in SUCCEEDED + FAILED for status in last.values()) or api.dry_run:
                failed = {t: e for t, e in entries.items() if last[t] in FAILED}
                if failed:
                    raise DeploymentFailed(
                        "\n".join(failure_lines(deployment_id, t, e) for t, e in failed.items()),
                        hint="see /greengrass/v2/logs/greengrass.log on the core",
                    )
                return dict(last)
            if api.now() >= deadline:
                pending = ", ".join(
                    "{} {}".format(t, s) for t, s in last.items() if s not in SUCCEEDED + FAILED
                )
                raise DeploymentTimedOut(
                    "v2 deployment {} not finished after {:g}s: {}".format(
                        deployment_id, self.timeout, pending
                    ),
                    hint="is the nucleus running and online? check later with: "
                    "python -m deploy v2 status",
                )
            api.sleep(self.poll_interval)


def failure_lines(deployment_id: str, thing: str, entry: Mapping[str, Any]) -> str:
    details = entry.get("statusDetails") or {}
    lines = [
        "v2 deployment {} {} on {}: {}".format(
            deployment_id,
            entry.get("coreDeviceExecutionStatus"),
            thing,
            entry.get("reason", "") or details.get("detailedDeploymentStatus", ""),
        )
    ]
    for key in ("errorStack", "errorTypes"):
        if details.get(key):
            lines.append("  {}: {}".format(key, ", ".join(details[key])))
    return "\n".join(lines)
