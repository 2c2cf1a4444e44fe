"""IAM and Lambda: the execution role, one function per topology function, its version and alias.

A version is published only when the code (``CodeSha256``) or
handler/runtime/role differ from the version the alias points at. Greengrass
V1 resolves aliases at deployment time, so a new version behind an unchanged
alias still needs a deployment: :meth:`LambdaFunctions.ensure` says so.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from agent.topology import FunctionSpec

from ..context import RunContext, section
from ..naming import LAMBDA_RUNTIME, lambda_arn
from ..package import PackageResult
from ..roles import Roles, lambda_trust_policy

LAMBDA_BASIC_POLICY = "arn:{}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
# A role created seconds ago may not be assumable by Lambda yet (IAM is eventually consistent).
ROLE_NOT_READY = ("InvalidParameterValueException", "cannot be assumed")


class LambdaFunctions:
    def __init__(self, ctx: RunContext, alias: str) -> None:
        self.ctx = ctx
        self.alias = alias

    def ensure_execution_role(self, roles: Roles, given_arn: str) -> str:
        return roles.ensure(
            "lambda",
            self.ctx.names.lambda_role,
            lambda_trust_policy(self.ctx.account),
            [LAMBDA_BASIC_POLICY.format(self.ctx.partition)],
            given_arn,
        )

    def ensure(self, spec: FunctionSpec, package: PackageResult, role: str) -> bool:
        """Create/update the function, publish if changed, point the alias.

        True when the alias now points at a newly published version.
        """
        ctx, api = self.ctx, self.ctx.api
        functions = section(ctx.state, "functions")
        recorded = functions.get(spec.id) if isinstance(functions.get(spec.id), dict) else {}
        name = spec.lambda_name
        alias = self.alias
        desired = {
            "Runtime": LAMBDA_RUNTIME,
            "Handler": spec.executable,
            "Role": role,
            "Description": "edge-agent {} function (Greengrass V1; configured by the group's "
            "function definition)".format(spec.id),
        }
        compared = ("Runtime", "Handler", "Role")

        def dry_config(_params: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
            if not recorded:
                return None
            config = dict(
                desired, CodeSha256=recorded.get("code_sha256"), FunctionArn=recorded["arn"]
            )
            return {"Configuration": config}

        current = api.find("lambda", "GetFunction", {"FunctionName": name}, dry=dry_config)
        code = package.path.read_bytes()
        if current is None:
            response = api.call(
                "lambda",
                "CreateFunction",
                dict(desired, FunctionName=name, Code={"ZipFile": code}, Publish=False),
                dry={"FunctionArn": lambda_arn(ctx.region, ctx.account, name)},
                retry_on=[ROLE_NOT_READY],
            )
            function_arn = response["FunctionArn"]
            api.wait("lambda", "function_active_v2", {"FunctionName": name})
            ctx.note("lambda {}: created".format(name))
        else:
            config = current["Configuration"]
            function_arn = config["FunctionArn"]
            if config.get("CodeSha256") != package.code_sha256:
                api.call(
                    "lambda",
                    "UpdateFunctionCode",
                    {"FunctionName": name, "ZipFile": code, "Publish": False},
                )
                api.wait("lambda", "function_updated_v2", {"FunctionName": name})
                ctx.note("lambda {}: code updated".format(name))
            if any(config.get(k) != v for k, v in desired.items()):
                api.call("lambda", "UpdateFunctionConfiguration", dict(desired, FunctionName=name))
                api.wait("lambda", "function_updated_v2", {"FunctionName": name})
                ctx.note("lambda {}: configuration updated".format(name))

        alias_recorded = recorded.get("alias") == alias and recorded.get("version")
        current_alias = api.find(
            "lambda",
            "GetAlias",
            {"FunctionName": name, "Name": alias},
            dry={"FunctionVersion": recorded["version"], "AliasArn": recorded.get("alias_arn")}
            if alias_recorded
            else None,
        )
        version = None
        if current_alias:
            pointed = current_alias["FunctionVersion"]
            version_config = api.find(
                "lambda",
                "GetFunction",
                {"FunctionName": name, "Qualifier": pointed},
                dry=dry_config,
            )
            config = (version_config or {}).get("Configuration", {})
            if config.get("CodeSha256") == package.code_sha256 and all(
                config.get(k) == desired[k] for k in compared
            ):
                version = pointed
        published = version is None
        if version is None:
            previous = str(recorded.get("version", "0"))
            next_version = str(int(previous) + 1) if previous.isdigit() else "1"  # dry-run only
            response = api.call(
                "lambda",
                "PublishVersion",
                {"FunctionName": name, "CodeSha256": package.code_sha256},
                dry={"Version": next_version},
            )
            version = str(response["Version"])
            if current_alias:
                api.call(
                    "lambda",
                    "UpdateAlias",
                    {"FunctionName": name, "Name": alias, "FunctionVersion": version},
                )
            else:
                api.call(
                    "lambda",
                    "CreateAlias",
                    {
                        "FunctionName": name,
                        "Name": alias,
                        "FunctionVersion": version,
                        "Description": "what the Greengrass group deploys",
                    },
                )
            ctx.note(
                "lambda {}: published version {}, alias {} -> {}".format(
                    name, version, alias, version
                )
            )
        else:
            ctx.out("lambda {}: unchanged (alias {} -> version {})".format(name, alias, version))
        functions[spec.id] = {
            "name": name,
            "arn": function_arn,
            "version": version,
            "alias": alias,
            "alias_arn": lambda_arn(ctx.region, ctx.account, name, alias),
            "code_sha256": package.code_sha256,
        }
        ctx.state.save()
        return published

    def destroy(self) -> None:
        ctx, state = self.ctx, self.ctx.state
        for fid, function in list(state.get("functions", {}).items()):
            ctx.delete_if_present(
                "lambda",
                "DeleteAlias",
                {"FunctionName": function["name"], "Name": function["alias"]},
            )
            ctx.delete_if_present("lambda", "DeleteFunction", {"FunctionName": function["name"]})
            del state["functions"][fid]
            state.save()
            ctx.note("lambda {}: deleted".format(function["name"]))
        state.pop("functions", None)
