"""Greengrass V1 deployments: when to deploy, waiting for the core, status and reset.

A deployment is created only when the group version changed, a Lambda alias
now points at a new version (Greengrass resolves aliases at deployment time),
a published version was never deployed, the last deployment failed or is
unknown, or with ``--force-deploy``; otherwise the last deployment's status is
reported and nothing is deployed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

from botocore.exceptions import ClientError

from ..awsapi import error_code
from ..context import RunContext, section
from ..errors import DeployError, DeploymentFailed, DeploymentTimedOut

FAILURE_HINTS = (
    (
        "not configured to run lambdas with root permissions",
        'set "runtime": {"allowFunctionsToRunAsRoot": "yes"} in the core\'s config.json, '
        "or deploy without --run-as-root",
    ),
    (
        "TES service role is not associated",
        "re-run up with --create-service-role (or associate a Greengrass service role "
        "to the account in this region)",
    ),
    (
        "group config is invalid",
        "check the documents: python -m deploy v1 plan --state <state> --out out/plan",
    ),
    (
        "secretsmanager",
        "the Greengrass service role must allow secretsmanager:GetSecretValue on the secret "
        "(AWSGreengrassResourceAccessRolePolicy covers secrets named greengrass-*)",
    ),
)
DEFAULT_FAILURE_HINT = "see /greengrass/ggc/var/log/system/runtime.log on the core"
STILL_RUNNING = ("Success", "InProgress", "Building")
# ResetDeployments on a group that was never deployed, or is gone.
NOTHING_TO_RESET = ("ResourceNotFoundException", "BadRequestException")


def failure_text(deployment_id: str, response: Mapping[str, Any]) -> str:
    lines = [
        "deployment {} failed: {}".format(
            deployment_id, response.get("ErrorMessage") or "(no ErrorMessage)"
        )
    ]
    for detail in response.get("ErrorDetails") or []:
        lines.append(
            "  {}: {}".format(
                detail.get("DetailedErrorCode", "?"), detail.get("DetailedErrorMessage", "")
            )
        )
    return "\n".join(lines)


def failure_hint(response: Mapping[str, Any]) -> str:
    text = " ".join(
        [str(response.get("ErrorMessage", ""))]
        + [str(d.get("DetailedErrorMessage", "")) for d in response.get("ErrorDetails") or []]
    )
    for fragment, hint in FAILURE_HINTS:
        if fragment.lower() in text.lower():
            return hint
    return DEFAULT_FAILURE_HINT


class GroupDeployments:
    def __init__(self, ctx: RunContext, alias: str, timeout: float, poll_interval: float) -> None:
        self.ctx = ctx
        self.alias = alias
        self.timeout = timeout
        self.poll_interval = poll_interval

    def _status(self, group_id: str, deployment_id: str, dry_status: str) -> Dict[str, Any]:
        return self.ctx.api.call(
            "greengrass",
            "GetDeploymentStatus",
            {"GroupId": group_id, "DeploymentId": deployment_id},
            dry={"DeploymentStatus": dry_status},
        )

    def wait(self, group_id: str, deployment_id: str) -> str:
        """Poll until Success (returned) or Failure/timeout (raised)."""
        ctx, api = self.ctx, self.ctx.api
        deployment = section(ctx.state, "deployment")
        if api.dry_run:
            self._status(group_id, deployment_id, "Success")
            ctx.out(
                "  [dry-run] would poll every {:g}s until Success or Failure, at most {:g}s".format(
                    self.poll_interval, self.timeout
                )
            )
            return "Success"
        deadline = api.now() + self.timeout
        last = None
        while True:
            response = self._status(group_id, deployment_id, "Success")
            status = response.get("DeploymentStatus", "")
            if status != last:
                ctx.out("deployment {}: {}".format(deployment_id, status))
                last = status
            if deployment.get("id") == deployment_id:
                deployment["status"] = status
                ctx.state.save()
            if status == "Success":
                return status
            if status == "Failure":
                raise DeploymentFailed(
                    failure_text(deployment_id, response), hint=failure_hint(response)
                )
            remaining = deadline - api.now()
            if remaining <= 0:
                raise DeploymentTimedOut(
                    "deployment {} still {} after {:g}s".format(
                        deployment_id, status, self.timeout
                    ),
                    hint="is the core running (sudo /greengrass/ggc/core/greengrassd start) and "
                    "online? check later with: python -m deploy v1 status",
                )
            api.sleep(min(self.poll_interval, remaining))

    def _deployed_versions(self) -> Dict[str, str]:
        """Function id → the Lambda version its alias points at now."""
        functions = self.ctx.state.get("functions", {})
        return {fid: str(f.get("version")) for fid, f in sorted(functions.items())}

    def deploy(
        self,
        group_id: str,
        group_version_id: str,
        newly_published: List[str],
        force: bool,
        wait: bool,
    ) -> None:
        """Create a deployment if something changed (see the module docstring), then wait."""
        ctx, api = self.ctx, self.ctx.api
        deployment = section(ctx.state, "deployment")
        reason = ""
        if force:
            reason = "--force-deploy"
        elif deployment.get("group_version_id") != group_version_id:
            reason = "new group version"
        elif newly_published:
            reason = "new Lambda version behind alias {} ({})".format(
                self.alias, ", ".join(newly_published)
            )
        elif deployment.get("id") and deployment.get("lambda_versions") != (
            self._deployed_versions()
        ):
            # A version published by an earlier run that never deployed it
            # (--no-deploy, Ctrl-C, throttling before CreateDeployment).
            reason = "Lambda versions behind alias {} not deployed yet".format(self.alias)
        elif not deployment.get("id"):
            reason = "never deployed"
        else:
            found = api.find(
                "greengrass",
                "GetDeploymentStatus",
                {"GroupId": group_id, "DeploymentId": deployment["id"]},
                dry={"DeploymentStatus": deployment.get("status") or "Success"},
            )
            status = (found or {}).get("DeploymentStatus")
            if status in STILL_RUNNING:
                deployment["status"] = status
                ctx.state.save()
                ctx.out(
                    "deployment: nothing changed; {} is {} (not redeploying; "
                    "--force-deploy to deploy anyway)".format(deployment["id"], status)
                )
                return
            reason = "last deployment {}".format(status or "not found")
        response = api.call(
            "greengrass",
            "CreateDeployment",
            {
                "GroupId": group_id,
                "GroupVersionId": group_version_id,
                "DeploymentType": "NewDeployment",
            },
            dry={"DeploymentId": "NEW", "DeploymentArn": "NEW"},
        )
        deployment.clear()
        deployment.update(
            id=response["DeploymentId"],
            arn=response.get("DeploymentArn"),
            group_version_id=group_version_id,
            lambda_versions=self._deployed_versions(),
            status="Building",
            reason=reason,
        )
        ctx.state.save()
        ctx.note("deployment {}: created ({})".format(response["DeploymentId"], reason))
        if wait:
            self.wait(group_id, response["DeploymentId"])

    def status(self, group: Mapping[str, Any]) -> int:
        """Print group, latest version, aliases and the newest deployment; 3 if it failed."""
        ctx, api, state = self.ctx, self.ctx.api, self.ctx.state
        info = api.find(
            "greengrass",
            "GetGroup",
            {"GroupId": group["id"]},
            dry={"LatestVersion": state.get("group_version", {}).get("id")},
        )
        if info is None:
            raise DeployError("group {} ({}) no longer exists".format(group["name"], group["id"]))
        latest = info.get("LatestVersion")
        recorded = state.get("group_version", {}).get("id")
        ctx.out("group: {} ({})".format(group.get("name"), group["id"]))
        ctx.out(
            "latest group version: {}{}".format(
                latest, "" if latest == recorded else " (state file records {})".format(recorded)
            )
        )
        for fid, function in sorted(state.get("functions", {}).items()):
            alias = api.find(
                "lambda",
                "GetAlias",
                {"FunctionName": function["name"], "Name": function["alias"]},
                dry={"FunctionVersion": function.get("version")},
            )
            ctx.out(
                "function {}: {}:{} -> version {}".format(
                    fid,
                    function["name"],
                    function["alias"],
                    (alias or {}).get("FunctionVersion", "missing"),
                )
            )
        deployments = api.call(
            "greengrass", "ListDeployments", {"GroupId": group["id"]}, dry={"Deployments": []}
        ).get("Deployments", [])
        if not deployments:
            ctx.out("deployment: none")
            return 0
        newest = max(deployments, key=lambda d: d.get("CreatedAt", ""))
        response = self._status(group["id"], newest["DeploymentId"], "Success")
        status = response.get("DeploymentStatus", "")
        ctx.out(
            "latest deployment: {} {} {} (created {})".format(
                newest["DeploymentId"],
                newest.get("DeploymentType", ""),
                status,
                newest.get("CreatedAt", ""),
            )
        )
        if status == "Failure":
            ctx.out(failure_text(newest["DeploymentId"], response))
            return DeploymentFailed.exit_code
        return 0

    def reset(self, group: Mapping[str, Any], force: bool, wait: bool) -> int:
        ctx = self.ctx
        try:
            response = ctx.api.call(
                "greengrass",
                "ResetDeployments",
                {"GroupId": group["id"], "Force": force},
                dry={"DeploymentId": "NEW"},
            )
        except ClientError as exc:
            if error_code(exc) in NOTHING_TO_RESET:
                ctx.out(
                    "reset: nothing to reset ({})".format(exc.response["Error"].get("Message", ""))
                )
                return 0
            raise
        ctx.state["deployment"] = {
            "id": response["DeploymentId"],
            "type": "Reset",
            "status": "Building",
            "force": force,
        }
        ctx.state.save()
        ctx.out(
            "reset deployment {} ({})".format(
                response["DeploymentId"],
                "forced: cloud only" if force else "the core must acknowledge it",
            )
        )
        if not force and wait:
            self.wait(group["id"], response["DeploymentId"])
        return 0
