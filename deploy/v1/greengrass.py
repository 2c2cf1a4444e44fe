"""Greengrass V1 group, its roles, the four definitions and the group version.

A definition or group version is created only when its content hash differs
from the one the state records. If the state file is lost, the group is found
by name and the definitions its latest version uses are recorded again.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping

from botocore.exceptions import ClientError

from ..awsapi import error_code
from ..context import RunContext, section
from ..definitions import content_hash, group_version_params
from ..errors import DeployError
from ..naming import DEFINITION_KINDS, PLACEHOLDER_GROUP_ID
from ..roles import Roles, greengrass_trust_policy

KIND_NAMES = {
    "core": "Core",
    "function": "Function",
    "resource": "Resource",
    "subscription": "Subscription",
}
GREENGRASS_RESOURCE_POLICY = (
    "arn:{}:iam::aws:policy/service-role/AWSGreengrassResourceAccessRolePolicy"
)
_DEFINITION_VERSION_ARN = re.compile(r"/definition/(\w+)/([^/]+)/versions/([^/]+)$")
# A definition version whose definition is gone answers with one of these.
_DEFINITION_GONE = (
    "NotFoundException",
    "ResourceNotFoundException",
    "IdNotFoundException",
    "BadRequestException",
)


class GreengrassGroup:
    def __init__(self, ctx: RunContext, roles: Roles) -> None:
        self.ctx = ctx
        self.roles = roles

    # -- group -----------------------------------------------------------------------

    def _list_groups(self) -> List[Dict[str, Any]]:
        groups: List[Dict[str, Any]] = []
        token = None
        while True:
            params = {"NextToken": token} if token else {}
            response = self.ctx.api.call("greengrass", "ListGroups", params, dry={"Groups": []})
            groups.extend(response.get("Groups", []))
            token = response.get("NextToken")
            if not token:
                return groups

    def ensure_group(self) -> Dict[str, Any]:
        ctx, state = self.ctx, self.ctx.state
        recorded = state.get("group") if isinstance(state.get("group"), dict) else None
        name = ctx.names.group
        found = None
        if recorded and recorded.get("id"):
            found = ctx.api.find(
                "greengrass",
                "GetGroup",
                {"GroupId": recorded["id"]},
                dry={"Id": recorded["id"], "Arn": recorded.get("arn"), "Name": name},
            )
        found_by_name = False
        if found is None:
            matches = [g for g in self._list_groups() if g.get("Name") == name]
            if len(matches) > 1:
                raise DeployError(
                    "{} Greengrass groups are named {!r}; cannot tell which is ours".format(
                        len(matches), name
                    ),
                    hint="delete the extras or record the right one in the state file",
                )
            if matches:
                found, found_by_name = matches[0], True
                ctx.out("group {}: found by name ({})".format(name, found["Id"]))
        if found is None:
            found = ctx.api.call(
                "greengrass",
                "CreateGroup",
                {"Name": name},
                dry={
                    "Id": PLACEHOLDER_GROUP_ID,
                    "Arn": "arn:{}:greengrass:{}:{}:/greengrass/groups/{}".format(
                        ctx.partition, ctx.region, ctx.account, PLACEHOLDER_GROUP_ID
                    ),
                },
            )
            created = True
            ctx.note("group {}: created ({})".format(name, found["Id"]))
        else:
            created = bool(recorded and recorded.get("created")) if not found_by_name else False
            if not found_by_name:
                ctx.out("group {}: exists".format(name))
        group = dict(recorded or {}) if not found_by_name else {}
        group.update(name=name, id=found["Id"], arn=found.get("Arn"), created=created)
        state["group"] = group
        state.save()
        if found_by_name and not state.get("definitions") and found.get("LatestVersion"):
            self._record_definitions_of_latest_version(found)
        return group

    def _record_definitions_of_latest_version(self, group: Mapping[str, Any]) -> None:
        """State lost but group found: record the definitions its latest version uses, so an
        unchanged topology creates no new definition versions."""
        api, state = self.ctx.api, self.ctx.state
        version = api.call(
            "greengrass",
            "GetGroupVersion",
            {"GroupId": group["Id"], "GroupVersionId": group["LatestVersion"]},
        )
        definition = version.get("Definition", {})
        recorded: Dict[str, Dict[str, Any]] = {}
        for kind in DEFINITION_KINDS:
            label = KIND_NAMES[kind]
            arn = definition.get("{}DefinitionVersionArn".format(label))
            match = _DEFINITION_VERSION_ARN.search(arn or "")
            if not match:
                continue
            def_id, version_id = match.group(2), match.group(3)
            found = api.find(
                "greengrass",
                "Get{}DefinitionVersion".format(label),
                {
                    "{}DefinitionId".format(label): def_id,
                    "{}DefinitionVersionId".format(label): version_id,
                },
            )
            if found is not None:
                recorded[kind] = {
                    "id": def_id,
                    "version_id": version_id,
                    "version_arn": arn,
                    "hash": content_hash(found.get("Definition", {})),
                }
        if recorded:
            state["definitions"] = recorded
            if len(recorded) == len(DEFINITION_KINDS):
                params = group_version_params(
                    group["Id"], {k: v["version_arn"] for k, v in recorded.items()}
                )
                state["group_version"] = {
                    "id": group["LatestVersion"],
                    "arn": group.get("LatestVersionArn"),
                    "hash": content_hash(params),
                }
            state.save()

    # -- roles -----------------------------------------------------------------------

    def ensure_group_role(self, group: Dict[str, Any], given_arn: str) -> None:
        ctx = self.ctx
        arn = self.roles.ensure(
            "group",
            ctx.names.group_role,
            greengrass_trust_policy(ctx.partition, ctx.region, ctx.account),
            [],
            given_arn,
        )
        if group.get("role_arn") != arn:
            ctx.api.call(
                "greengrass", "AssociateRoleToGroup", {"GroupId": group["id"], "RoleArn": arn}
            )
            group["role_arn"] = arn
            ctx.state.save()
            ctx.note("group role {}: associated".format(arn.rsplit("/", 1)[-1]))

    def ensure_service_role(self) -> None:
        ctx = self.ctx
        arn = self.roles.ensure(
            "service",
            ctx.names.service_role,
            greengrass_trust_policy(ctx.partition, ctx.region, ctx.account),
            [GREENGRASS_RESOURCE_POLICY.format(ctx.partition)],
        )
        role = self.roles.record["service"]
        # One service role per account and region, shared by every group in it:
        # never replace somebody else's.
        current = ctx.api.find("greengrass", "GetServiceRoleForAccount", {}, dry={}) or {}
        if current.get("RoleArn") == arn:
            if not role.get("associated"):
                role["associated"] = True
                ctx.state.save()
            return
        if current.get("RoleArn"):
            raise DeployError(
                "the account already has Greengrass service role {}".format(current["RoleArn"]),
                hint="omit --create-service-role (that role serves every group in the account)",
            )
        ctx.api.call("greengrass", "AssociateServiceRoleToAccount", {"RoleArn": arn})
        role["associated"] = True
        ctx.state.save()
        ctx.note("Greengrass service role for the account: {}".format(arn))

    # -- definitions and group version ------------------------------------------------

    def ensure_definition(self, kind: str, document: Dict[str, Any]) -> str:
        """The ARN of a definition version with ``document``; new only when it changed."""
        ctx = self.ctx
        definitions = section(ctx.state, "definitions")
        recorded = definitions.get(kind) if isinstance(definitions.get(kind), dict) else None
        digest = content_hash(document)
        label = KIND_NAMES[kind]
        if recorded and recorded.get("hash") == digest:
            ctx.out("{} definition: unchanged".format(kind))
            return str(recorded["version_arn"])
        fake_id = "dry-run-{}-definition".format(kind)
        if recorded:
            try:
                response = ctx.api.call(
                    "greengrass",
                    "Create{}DefinitionVersion".format(label),
                    dict(document, **{"{}DefinitionId".format(label): recorded["id"]}),
                    dry={
                        "Arn": "{}/versions/NEW".format(recorded.get("arn", fake_id)),
                        "Version": "NEW",
                    },
                )
                recorded.update(
                    version_id=response["Version"], version_arn=response["Arn"], hash=digest
                )
                ctx.note("{} definition: new version".format(kind))
                ctx.state.save()
                return str(response["Arn"])
            except ClientError as exc:
                if error_code(exc) not in _DEFINITION_GONE:
                    raise
                ctx.out("{} definition {} is gone: creating a new one".format(kind, recorded["id"]))
        arn_base = "arn:{}:greengrass:{}:{}:/greengrass/definition/{}s/{}".format(
            ctx.partition, ctx.region, ctx.account, kind, fake_id
        )
        response = ctx.api.call(
            "greengrass",
            "Create{}Definition".format(label),
            {"Name": ctx.names.definition(kind), "InitialVersion": document},
            dry={
                "Id": fake_id,
                "Arn": arn_base,
                "LatestVersion": "NEW",
                "LatestVersionArn": arn_base + "/versions/NEW",
            },
        )
        definitions[kind] = {
            "id": response["Id"],
            "arn": response["Arn"],
            "version_id": response["LatestVersion"],
            "version_arn": response["LatestVersionArn"],
            "hash": digest,
        }
        ctx.note("{} definition: created".format(kind))
        ctx.state.save()
        return str(response["LatestVersionArn"])

    def ensure_group_version(self, group_id: str, version_arns: Mapping[str, str]) -> str:
        ctx = self.ctx
        params = group_version_params(group_id, version_arns)
        digest = content_hash(params)
        recorded = ctx.state.get("group_version")
        if isinstance(recorded, dict) and recorded.get("hash") == digest:
            ctx.out("group version: unchanged ({})".format(recorded["id"]))
            return str(recorded["id"])
        response = ctx.api.call(
            "greengrass", "CreateGroupVersion", params, dry={"Version": "NEW", "Arn": "NEW"}
        )
        ctx.state["group_version"] = {
            "id": response["Version"],
            "arn": response["Arn"],
            "hash": digest,
        }
        ctx.state.save()
        ctx.note("group version: created ({})".format(response["Version"]))
        return str(response["Version"])
