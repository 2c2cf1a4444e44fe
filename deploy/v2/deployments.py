"""Greengrass V2 deployments: the ``CreateDeployment`` document and waiting for the core.

Each component runs as the topology's uid:gid (``--posix-user``) with its
memory limit (KB, like the V1 ``MemorySize``); the SecretManager component
gets ``cloudSecrets`` through ``configurationUpdate.merge``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping

from agent.topology import GroupTopology

from ..context import RunContext
from ..errors import DeploymentFailed, DeploymentTimedOut
from .recipes import SECRET_MANAGER, component_name

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
) -> Dict[str, Any]:
    specs: Dict[str, Any] = {}
    for spec in topology.functions:
        specs[component_name(prefix, spec)] = {
            "componentVersion": components[spec.id],
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
    return {
        "targetArn": target_arn,
        "deploymentName": topology.name,
        "components": specs,
    }


class DeploymentWatcher:
    """Polls ``ListEffectiveDeployments`` until the core reports the deployment done."""

    def __init__(self, ctx: RunContext, timeout: float, poll_interval: float) -> None:
        self.ctx = ctx
        self.timeout = timeout
        self.poll_interval = poll_interval

    def wait(self, thing: str, deployment_id: str) -> str:
        api, out = self.ctx.api, self.ctx.out
        if api.dry_run:
            api.call("greengrassv2", "ListEffectiveDeployments", {"coreDeviceThingName": thing})
            return "SUCCEEDED"
        deadline = api.now() + self.timeout
        last = None
        while True:
            response = api.call(
                "greengrassv2", "ListEffectiveDeployments", {"coreDeviceThingName": thing}
            )
            mine = [
                d
                for d in response.get("effectiveDeployments", [])
                if d.get("deploymentId") == deployment_id
            ]
            status = mine[0].get("coreDeviceExecutionStatus") if mine else "QUEUED"
            if status != last:
                out("v2 deployment {} on {}: {}".format(deployment_id, thing, status))
                last = status
            if status in SUCCEEDED:
                return status
            if status in FAILED:
                details = mine[0].get("statusDetails") or {}
                lines = [
                    "v2 deployment {} {}: {}".format(
                        deployment_id, status, mine[0].get("reason", "")
                    )
                ]
                for key in ("errorStack", "errorTypes"):
                    if details.get(key):
                        lines.append("  {}: {}".format(key, ", ".join(details[key])))
                raise DeploymentFailed(
                    "\n".join(lines), hint="see /greengrass/v2/logs/greengrass.log on the core"
                )
            if api.now() >= deadline:
                raise DeploymentTimedOut(
                    "v2 deployment {} still {} after {:g}s".format(
                        deployment_id, status, self.timeout
                    ),
                    hint="is the nucleus running and online?",
                )
            api.sleep(self.poll_interval)
