"""IAM roles the deployers create, reuse or are given; and their removal.

A role is recorded in the state under a *kind* (``lambda``, ``group``,
``service``, ``token_exchange``) with ``created`` telling whether this tool
made it. Only a role this tool created is ever changed or deleted: a role found
by name or passed as an ARN belongs to somebody else.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Sequence

from .context import RunContext
from .naming import role_arn


class Roles:
    def __init__(self, ctx: RunContext, record: Dict[str, Any]) -> None:
        self.ctx = ctx
        self.record = record  # kind -> {"name", "arn", "created", "policies", ...}

    def ensure(
        self,
        kind: str,
        name: str,
        trust: Mapping[str, Any],
        managed_policies: Sequence[str] = (),
        given_arn: str = "",
    ) -> str:
        """The role's ARN; created with ``trust`` and the managed policies if missing."""
        api, state = self.ctx.api, self.ctx.state
        if given_arn:
            self.record[kind] = {"arn": given_arn, "created": False}
            state.save()
            return given_arn
        recorded = self.record.get(kind) if isinstance(self.record.get(kind), dict) else None
        found = api.find(
            "iam",
            "GetRole",
            {"RoleName": name},
            dry={"Role": {"Arn": recorded["arn"]}} if recorded else None,
        )
        attached: List[str] = []
        if found:
            arn = found["Role"]["Arn"]
            created = bool(recorded and recorded.get("created"))
            if created:  # ours: finish what an interrupted run started
                attached = list(recorded.get("policies", [])) if recorded else []
            else:
                attached = list(managed_policies)  # not ours: leave its policies alone
            self.ctx.out("role {}: exists".format(name))
        else:
            response = api.call(
                "iam",
                "CreateRole",
                {
                    "RoleName": name,
                    "AssumeRolePolicyDocument": json.dumps(trust),
                    "Description": "edge-agent {} role (created by python -m deploy)".format(kind),
                },
                dry={"Role": {"Arn": role_arn(self.ctx.region, self.ctx.account, name)}},
            )
            arn = response["Role"]["Arn"]
            created = True
            self.ctx.note("role {}: created".format(name))
        self.record[kind] = {"name": name, "arn": arn, "created": created, "policies": attached}
        state.save()
        for policy in managed_policies:
            if policy not in attached:
                api.call("iam", "AttachRolePolicy", {"RoleName": name, "PolicyArn": policy})
                attached.append(policy)
                state.save()
        return arn

    def delete(self, kind: str) -> None:
        """Delete the role if this tool created it; forget it either way."""
        role = self.record.get(kind)
        if isinstance(role, dict) and role.get("created"):
            for policy in role.get("policies", []):
                self.ctx.delete_if_present(
                    "iam", "DetachRolePolicy", {"RoleName": role["name"], "PolicyArn": policy}
                )
            self.ctx.delete_if_present("iam", "DeleteRole", {"RoleName": role["name"]})
            self.ctx.note("role {}: deleted".format(role["name"]))
        self.record.pop(kind, None)
        self.ctx.state.save()


def service_trust_policy(service: str) -> Dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }
        ],
    }
