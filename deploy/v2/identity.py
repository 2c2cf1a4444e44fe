"""The V2 core device's identity in AWS: thing, certificate, token exchange role and alias, policy.

What a nucleus installed with ``--init-config`` (manual provisioning, no AWS
credentials on the Pi) needs: an IoT thing and an active certificate, the token
exchange IAM role (trusting ``credentials.iot.amazonaws.com``) with only the
permissions its components need, an IoT role alias pointing at it, the core's
IoT policy (``core_documents.core_iot_policy``), and the account's data and
credentials endpoints. Everything is recorded under ``v2`` in the state file;
``destroy`` removes what was created here and leaves what was found.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping

from agent.topology import GroupTopology

from ..context import RunContext, section, state_entry
from ..errors import DeployError
from ..roles import Roles, service_trust_policy
from ..things import CoreThing
from ..validation import validate_params
from .core_documents import TOKEN_EXCHANGE_SERVICE, core_iot_policy, token_exchange_access_policy

CREDENTIAL_SECONDS = 3600  # the role alias's credential lifetime (the IoT default)


@dataclass
class CoreDevice:
    """What the Pi's ``config.yaml`` needs."""

    thing: str
    role_alias: str
    data_endpoint: str
    credentials_endpoint: str
    cert_file: str
    key_file: str
    certs_dir: Path


class CoreIdentity:
    def __init__(self, ctx: RunContext, record: Dict[str, Any], certs_dir: Path) -> None:
        self.ctx = ctx
        self.record = record  # the state's "v2" section
        self.thing = CoreThing(ctx, record, certs_dir)
        self.roles = Roles(ctx, section(record, "roles"))

    def ensure(
        self,
        topology: GroupTopology,
        *,
        bucket: str,
        artifact_prefix: str,
        secret_arns: Mapping[str, str],
        thing_group: str = "",
    ) -> CoreDevice:
        ctx, names = self.ctx, self.ctx.names
        self.thing.ensure_thing(names.thing)
        data_endpoint = self.thing.endpoint("iot:Data-ATS", "iot_endpoint")
        credentials_endpoint = self.thing.endpoint("iot:CredentialProvider", "credentials_endpoint")
        cert_arn = self.thing.ensure_certificate()
        role_arn = self.roles.ensure(
            "token_exchange",
            names.token_exchange_role,
            service_trust_policy(TOKEN_EXCHANGE_SERVICE),
        )
        self.roles.ensure_inline_policy(
            "token_exchange",
            names.token_exchange_access,
            token_exchange_access_policy(
                ctx.partition, bucket, artifact_prefix, list(secret_arns.values())
            ),
        )
        self._ensure_role_alias(names.token_exchange_alias, role_arn)
        policy = core_iot_policy(
            topology, ctx.region, ctx.account, names.thing, names.token_exchange_alias
        )
        validate_params(
            "iot",
            "CreatePolicy",
            {"policyName": names.v2_policy, "policyDocument": json.dumps(policy)},
        )
        self.thing.ensure_policy(names.v2_policy, policy, cert_arn)
        if thing_group:
            self._ensure_in_thing_group(thing_group, names.thing)
        cert = state_entry(self.record, "certificate")
        return CoreDevice(
            thing=names.thing,
            role_alias=names.token_exchange_alias,
            data_endpoint=data_endpoint,
            credentials_endpoint=credentials_endpoint,
            cert_file=cert.get("cert_file", "CERT_FILE"),
            key_file=cert.get("key_file", "KEY_FILE"),
            certs_dir=Path(cert.get("dir", self.thing.certs_dir)),
        )

    def _ensure_role_alias(self, alias: str, role_arn: str) -> None:
        ctx, api = self.ctx, self.ctx.api
        recorded = state_entry(self.record, "role_alias")
        ours = recorded.get("name") == alias
        found = api.find(
            "iot",
            "DescribeRoleAlias",
            {"roleAlias": alias},
            dry={"roleAliasDescription": {"roleArn": recorded.get("role_arn")}} if ours else None,
        )
        created = bool(ours and recorded.get("created"))
        if found is None:
            response = api.call(
                "iot",
                "CreateRoleAlias",
                {
                    "roleAlias": alias,
                    "roleArn": role_arn,
                    "credentialDurationSeconds": CREDENTIAL_SECONDS,
                },
                dry={
                    "roleAliasArn": "arn:{}:iot:{}:{}:rolealias/{}".format(
                        ctx.partition, ctx.region, ctx.account, alias
                    )
                },
            )
            created = True
            ctx.note("role alias {}: created".format(alias))
            arn = response.get("roleAliasArn", "")
        else:
            description = found.get("roleAliasDescription", {})
            arn = description.get("roleAliasArn", recorded.get("arn", ""))
            if description.get("roleArn") != role_arn:
                if not created:
                    raise DeployError(
                        "role alias {} exists and points at {}, not {}".format(
                            alias, description.get("roleArn"), role_arn
                        ),
                        hint="it was not created by v2 up: delete it or use another "
                        "--thing-name/topology name",
                    )
                api.call("iot", "UpdateRoleAlias", {"roleAlias": alias, "roleArn": role_arn})
                ctx.note("role alias {}: now points at {}".format(alias, role_arn))
            else:
                ctx.out("role alias {}: exists".format(alias))
        self.record["role_alias"] = {
            "name": alias,
            "arn": arn,
            "role_arn": role_arn,
            "created": created,
        }
        ctx.state.save()

    def _ensure_in_thing_group(self, group: str, thing: str) -> None:
        """The thing group a deployment targets, with this core in it."""
        ctx, api = self.ctx, self.ctx.api
        recorded = state_entry(self.record, "thing_group")
        ours = recorded.get("name") == group
        found = api.find(
            "iot",
            "DescribeThingGroup",
            {"thingGroupName": group},
            dry={"thingGroupArn": recorded.get("arn")} if ours else None,
        )
        created = bool(ours and recorded.get("created"))
        if found is None:
            found = api.call(
                "iot",
                "CreateThingGroup",
                {"thingGroupName": group},
                dry={
                    "thingGroupArn": "arn:{}:iot:{}:{}:thinggroup/{}".format(
                        ctx.partition, ctx.region, ctx.account, group
                    )
                },
            )
            created = True
            ctx.note("thing group {}: created".format(group))
        if not (ours and recorded.get("member") == thing):
            api.call("iot", "AddThingToThingGroup", {"thingGroupName": group, "thingName": thing})
            ctx.note("thing {}: added to thing group {}".format(thing, group))
        self.record["thing_group"] = {
            "name": group,
            "arn": found.get("thingGroupArn", ""),
            "created": created,
            "member": thing,
        }
        ctx.state.save()

    def destroy(self, keep_certs: bool) -> None:
        """Remove what ``ensure`` created: group membership, alias, role, policy, certificate,
        thing (and its Greengrass core device record)."""
        ctx, record = self.ctx, self.record
        group = state_entry(record, "thing_group")
        if group.get("member"):
            ctx.delete_if_present(
                "iot",
                "RemoveThingFromThingGroup",
                {"thingGroupName": group["name"], "thingName": group["member"]},
            )
        if group.get("created"):
            ctx.delete_if_present("iot", "DeleteThingGroup", {"thingGroupName": group["name"]})
            ctx.note("thing group {}: deleted".format(group["name"]))
        record.pop("thing_group", None)
        alias = state_entry(record, "role_alias")
        if alias.get("created"):
            ctx.delete_if_present("iot", "DeleteRoleAlias", {"roleAlias": alias["name"]})
            ctx.note("role alias {}: deleted".format(alias["name"]))
        record.pop("role_alias", None)
        for kind in list(self.roles.record):
            self.roles.delete(kind)
        record.pop("roles", None)
        thing = state_entry(record, "thing")
        if thing.get("created"):
            # the nucleus registered the thing as a core device; that record goes with it
            ctx.delete_if_present(
                "greengrassv2", "DeleteCoreDevice", {"coreDeviceThingName": thing["name"]}
            )
        self.thing.destroy(keep_certs)
        for key in ("iot_endpoint", "credentials_endpoint"):
            record.pop(key, None)
        ctx.state.save()
