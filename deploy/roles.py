"""IAM roles the deployers create, reuse or are given; and their removal.

A role is recorded in the state under a *kind* (``lambda``, ``group``,
``service``, ``token_exchange``) with ``created`` telling whether this tool
made it. Only a role this tool created is ever changed or deleted: a role found
by name or passed as an ARN belongs to somebody else.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence
from urllib.parse import unquote

from .context import RunContext
from .naming import role_arn
from .validation import raise_violations, trust_policy_violations


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
        """The role's ARN; created with ``trust`` and the managed policies if missing.

        A role this tool created earlier gets ``trust`` if its trust policy differs
        (e.g. one created before it carried the confused-deputy conditions).
        """
        api, state = self.ctx.api, self.ctx.state
        raise_violations(trust_policy_violations(name, trust, self.ctx.account), "the role")
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
                self._update_trust(name, found["Role"].get("AssumeRolePolicyDocument"), trust)
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
        previous = dict(recorded or {}) if created else {}
        self.record[kind] = dict(previous, name=name, arn=arn, created=created, policies=attached)
        state.save()
        for policy in managed_policies:
            if policy not in attached:
                api.call("iam", "AttachRolePolicy", {"RoleName": name, "PolicyArn": policy})
                attached.append(policy)
                state.save()
        return arn

    def ensure_inline_policy(
        self, kind: str, policy_name: str, document: Mapping[str, Any]
    ) -> None:
        """Give a role this tool created the inline policy ``document`` (once; again if changed).

        A role that is not ours keeps its permissions: say what it needs instead.
        """
        role = self.record[kind]
        api = self.ctx.api
        if not role.get("created"):
            self.ctx.out(
                "warning: role {} was not created here; make sure it allows: {}".format(
                    role.get("name") or role.get("arn"), json.dumps(document, sort_keys=True)
                )
            )
            return
        found = api.find(
            "iam",
            "GetRolePolicy",
            {"RoleName": role["name"], "PolicyName": policy_name},
            dry={"PolicyDocument": document}
            if policy_name in role.get("inline_policies", [])
            else None,
        )
        current = (found or {}).get("PolicyDocument")
        if isinstance(current, str):
            current = json.loads(unquote(current))
        if current == document:
            self.ctx.out("role {}: policy {} unchanged".format(role["name"], policy_name))
            return
        api.call(
            "iam",
            "PutRolePolicy",
            {
                "RoleName": role["name"],
                "PolicyName": policy_name,
                "PolicyDocument": json.dumps(document),
            },
        )
        inline = role.setdefault("inline_policies", [])
        if policy_name not in inline:
            inline.append(policy_name)
        self.ctx.state.save()
        self.ctx.note(
            "role {}: policy {} {}".format(
                role["name"], policy_name, "updated" if found else "attached"
            )
        )

    def _update_trust(self, name: str, current: Any, trust: Mapping[str, Any]) -> None:
        if isinstance(current, str):  # IAM answers URL-encoded JSON; boto3 usually decodes it
            current = json.loads(unquote(current)) if current.strip() else None
        if current == trust or self.ctx.api.dry_run and current is None:
            return
        self.ctx.api.call(
            "iam", "UpdateAssumeRolePolicy", {"RoleName": name, "PolicyDocument": json.dumps(trust)}
        )
        self.ctx.note("role {}: trust policy updated".format(name))

    def delete(self, kind: str) -> None:
        """Delete the role if this tool created it; forget it either way."""
        role = self.record.get(kind)
        if isinstance(role, dict) and role.get("created"):
            for inline in role.get("inline_policies", []):
                self.ctx.delete_if_present(
                    "iam", "DeleteRolePolicy", {"RoleName": role["name"], "PolicyName": inline}
                )
            for policy in role.get("policies", []):
                self.ctx.delete_if_present(
                    "iam", "DetachRolePolicy", {"RoleName": role["name"], "PolicyArn": policy}
                )
            self.ctx.delete_if_present("iam", "DeleteRole", {"RoleName": role["name"]})
            self.ctx.note("role {}: deleted".format(role["name"]))
        self.record.pop(kind, None)
        self.ctx.state.save()


def service_trust_policy(
    service: str, conditions: Optional[Mapping[str, Mapping[str, str]]] = None
) -> Dict[str, Any]:
    statement: Dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if conditions:
        statement["Condition"] = {op: dict(values) for op, values in conditions.items()}
    return {"Version": "2012-10-17", "Statement": [statement]}


def greengrass_trust_policy(partition: str, region: str, account: str) -> Dict[str, Any]:
    """Greengrass may assume the role only for this account's Greengrass resources here.

    The documented form (AWS IoT Greengrass Developer Guide, "Greengrass service role" and
    "Cross-service confused deputy prevention"): ``aws:SourceArn`` like
    ``arn:aws:greengrass:region:account:*`` and ``aws:SourceAccount`` = account.
    """
    return service_trust_policy(
        "greengrass.amazonaws.com",
        {
            "ArnLike": {
                "aws:SourceArn": "arn:{}:greengrass:{}:{}:*".format(partition, region, account)
            },
            "StringEquals": {"aws:SourceAccount": account},
        },
    )


def lambda_trust_policy(account: str) -> Dict[str, Any]:
    """Lambda may assume the execution role only for this account's functions.

    ``aws:SourceAccount`` only: the role is made before the functions whose ARNs would
    go into ``aws:SourceArn``.
    """
    return service_trust_policy(
        "lambda.amazonaws.com", {"StringEquals": {"aws:SourceAccount": account}}
    )
