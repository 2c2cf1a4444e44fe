"""``v2-up``: upload artifacts, create component versions, deploy, wait."""

from __future__ import annotations

from typing import Callable, Dict

from agent.topology import GroupTopology

from ..awsapi import Api
from ..context import RunContext, section
from ..definitions import content_hash
from ..errors import DeployError
from ..naming import PLACEHOLDER_ACCOUNT, Names, secret_arn
from ..state import State
from .components import Components
from .deployments import DeploymentWatcher
from .plan import V2Options, build_v2_plan
from .recipes import SECRET_MANAGER


class V2Deployer:
    def __init__(
        self,
        api: Api,
        topology: GroupTopology,
        state: State,
        options: V2Options,
        out: Callable[[str], None] = print,
    ) -> None:
        self.topology = topology
        self.opts = options
        self.ctx = RunContext(api, state, Names.for_topology(topology, options.thing_name), out)
        self.record = section(state, "v2")
        self.components = Components(self.ctx, self.record, options.timeout, options.poll_interval)
        self.watcher = DeploymentWatcher(self.ctx, options.timeout, options.poll_interval)

    def _secret_arns(self) -> Dict[str, str]:
        ctx = self.ctx
        recorded = ctx.state.get("secrets", {})
        arns = {}
        for secret in self.topology.secrets:
            known_arn = recorded.get(secret.id, {}).get("arn")
            found = ctx.api.find(
                "secretsmanager",
                "DescribeSecret",
                {"SecretId": secret.secret_name},
                dry={"ARN": known_arn or secret_arn(ctx.region, ctx.account, secret.secret_name)},
            )
            if found is None:
                raise DeployError(
                    "secret {!r} does not exist in {}".format(secret.secret_name, ctx.region),
                    hint="create it (python -m deploy up --create-secret ...) first",
                )
            arns[secret.id] = found["ARN"]
        return arns

    def up(self) -> int:
        ctx, api, opts = self.ctx, self.ctx.api, self.opts
        if api.dry_run:
            ctx.account = opts.account or ctx.state.get("account") or PLACEHOLDER_ACCOUNT
            api.call("sts", "GetCallerIdentity", dry={"Account": ctx.account})
        else:
            ctx.account = api.call("sts", "GetCallerIdentity")["Account"]
        if not opts.bucket:
            raise DeployError("v2-up needs --bucket for the component artifacts")
        secret_arns = self._secret_arns()
        plan = build_v2_plan(
            self.topology,
            region=ctx.region,
            account=ctx.account,
            secret_arns=secret_arns,
            options=opts,
            secret_manager_version=self.components.public_component_version(
                SECRET_MANAGER, opts.secret_manager_version
            ),
            out=ctx.out,
        )
        for spec in self.topology.functions:
            name = next(n for n in plan.recipes if n.endswith("." + spec.id))
            self.components.ensure(
                name, plan.recipes[name], plan.packages[spec.id], opts.bucket, plan.artifacts[name]
            )
        digest = content_hash(plan.deployment)
        deployment = section(self.record, "deployment")
        if deployment.get("hash") == digest and not opts.force_deploy:
            ctx.out(
                "v2 deployment: unchanged ({}); --force-deploy to deploy anyway".format(
                    deployment.get("id")
                )
            )
            return 0
        response = api.call(
            "greengrassv2", "CreateDeployment", plan.deployment, dry={"deploymentId": "NEW"}
        )
        target = plan.deployment["targetArn"]
        deployment.clear()
        deployment.update(id=response["deploymentId"], hash=digest, target=target)
        ctx.state.save()
        ctx.out("v2 deployment {}: created for {}".format(response["deploymentId"], target))
        if opts.wait and ":thing/" in target:
            self.watcher.wait(target.split(":thing/", 1)[1], response["deploymentId"])
        return 0
