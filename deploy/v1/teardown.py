"""``destroy``: remove what ``up`` created, in dependency order.

Reset deployments (``--force``: cloud side only), delete the group, the
definitions (subscriptions first: they reference functions), the IoT identity,
the Lambda functions, the roles ``up`` created, and the secret only when asked.
A group, thing or role that was found rather than created is left in place.
"""

from __future__ import annotations

from typing import Any, Dict

from botocore.exceptions import ClientError

from ..awsapi import error_code
from ..context import RunContext
from ..errors import DeployError, DeploymentFailed, DeploymentTimedOut
from ..roles import Roles
from ..things import CoreThing
from .deployments import NOTHING_TO_RESET, GroupDeployments
from .greengrass import KIND_NAMES
from .lambdas import LambdaFunctions
from .secrets import Secrets

# Order in which destroy removes definitions (subscriptions reference functions).
DESTROY_KINDS = ("subscription", "resource", "function", "core")


class Teardown:
    def __init__(
        self,
        ctx: RunContext,
        deployments: GroupDeployments,
        thing: CoreThing,
        functions: LambdaFunctions,
        roles: Roles,
        secrets: Secrets,
    ) -> None:
        self.ctx = ctx
        self.deployments = deployments
        self.thing = thing
        self.functions = functions
        self.roles = roles
        self.secrets = secrets

    def destroy(
        self, force: bool, delete_secret: bool, recovery_days: int, keep_certs: bool
    ) -> int:
        ctx, state = self.ctx, self.ctx.state
        group = state.get("group")
        keep_definitions = False
        if isinstance(group, dict) and group.get("id"):
            if group.get("created"):
                self._destroy_group(group, force)
            else:
                # found by name, not created: its versions may use these definitions
                keep_definitions = True
                ctx.out(
                    "group {}: not created by up, left in place with its definitions".format(
                        group.get("name")
                    )
                )
            for key in ("group", "group_version", "deployment"):
                state.pop(key, None)
            state.save()
        for kind in DESTROY_KINDS:
            recorded = state.get("definitions", {}).get(kind)
            if recorded and not keep_definitions:
                label = KIND_NAMES[kind]
                ctx.delete_if_present(
                    "greengrass",
                    "Delete{}Definition".format(label),
                    {"{}DefinitionId".format(label): recorded["id"]},
                )
                del state["definitions"][kind]
                state.save()
        state.pop("definitions", None)
        self.thing.destroy(keep_certs)
        self.functions.destroy()
        self._disassociate_service_role()
        for kind in list(self.roles.record):
            self.roles.delete(kind)
        state.pop("roles", None)
        self.secrets.destroy(delete_secret, recovery_days)
        for key in ("iot_endpoint", "run_as", "alias"):
            state.pop(key, None)
        state.save()
        if ctx.api.dry_run:
            ctx.out("destroy (dry-run): nothing was changed")
        elif state.is_empty():
            state.remove()
            ctx.out("destroy: done; state file removed")
        else:
            ctx.out("destroy: done; {} keeps what is left".format(state.path))
        return 0

    def _disassociate_service_role(self) -> None:
        """The account's service role, if it is the one up created and associated."""
        role = self.roles.record.get("service")
        if not (isinstance(role, dict) and role.get("created") and role.get("associated")):
            return
        current = self.ctx.api.find("greengrass", "GetServiceRoleForAccount", {}, dry={}) or {}
        if current.get("RoleArn", "").endswith("/" + role["name"]):
            self.ctx.delete_if_present("greengrass", "DisassociateServiceRoleFromAccount", {})

    def _destroy_group(self, group: Dict[str, Any], force: bool) -> None:
        ctx = self.ctx
        group_id = group["id"]
        try:
            response = ctx.api.call(
                "greengrass",
                "ResetDeployments",
                {"GroupId": group_id, "Force": force},
                dry={"DeploymentId": "NEW"},
            )
            if not force:
                self.deployments.wait(group_id, response["DeploymentId"])
        except ClientError as exc:
            if error_code(exc) not in NOTHING_TO_RESET:
                raise
            # never deployed, already reset, or gone
        except (DeploymentTimedOut, DeploymentFailed):
            raise DeployError(
                "the core did not complete the reset of group {}".format(group_id),
                hint="re-run destroy with --force (ForceResetDeployment, cloud side only)",
            )
        try:
            ctx.api.call("greengrass", "DeleteGroup", {"GroupId": group_id})
        except ClientError as exc:
            if error_code(exc) == "BadRequestException":
                raise DeployError(
                    "cannot delete group {}: {}".format(
                        group_id, exc.response["Error"].get("Message", "")
                    ),
                    hint="re-run destroy with --force to force-reset its deployments",
                )
            if error_code(exc) not in ("ResourceNotFoundException", "NotFoundException"):
                raise
        ctx.note("group {}: deleted".format(group.get("name")))
