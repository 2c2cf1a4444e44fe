"""Greengrass V1 ``up``, ``status``, ``reset``, ``destroy``: the order of the steps.

``up`` creates or reuses, in order: the Lambda execution role, one Lambda
function per topology function (published version + alias), the ServiceNow
secret (only with ``--create-secret``), the core's IoT thing, its certificate
(key written to ``--certs-dir``, never printed), the Greengrass group and its
role, the scoped IoT policy (attached to the certificate; certificate attached
to the thing), the four definitions, a group version and a deployment.

Idempotency: the state file records every ARN/id and a content hash per
definition. A step whose content did not change makes no write call. Each step
lives with the service it drives: ``lambdas`` (IAM and Lambda), ``things``
(IoT), ``greengrass`` (group and definitions), ``deployments``, ``teardown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from agent.topology import GroupTopology

from ..awsapi import Api
from ..context import RunContext, section
from ..definitions import build_documents, validate_documents
from ..errors import DeployError
from ..lifecycle import check_v1_available
from ..naming import DEFAULT_ALIAS, DEFINITION_KINDS, Names, Target
from ..package import PackageOptions, build_packages
from ..roles import Roles
from ..state import State
from ..things import CoreThing
from .deployments import GroupDeployments
from .greengrass import GreengrassGroup
from .lambdas import LambdaFunctions
from .secrets import Secrets, read_secret_value
from .teardown import Teardown

ROOT_CONFIG_NOTE = (
    "functions run as root (uid 0): the core's /greengrass/config/config.json needs "
    '"runtime": {"allowFunctionsToRunAsRoot": "yes"} '
    "(v1 render-config adds it when the state says so); prefer a non-root --uid/--gid"
)


@dataclass
class UpOptions:
    alias: str = DEFAULT_ALIAS
    thing_name: str = ""
    account: str = ""  # only used when AWS cannot be asked (dry-run)
    certs_dir: Path = Path("certs")
    packaging: PackageOptions = field(default_factory=PackageOptions)
    lambda_role_arn: str = ""
    group_role_arn: str = ""
    create_service_role: bool = False
    create_secret: bool = False
    secret_file: Optional[Path] = None
    run_as_root: bool = False
    deploy: bool = True
    force_deploy: bool = False
    wait: bool = True
    timeout: float = 300.0
    poll_interval: float = 5.0


class V1Deployer:
    def __init__(
        self,
        api: Api,
        topology: GroupTopology,
        state: State,
        options: Optional[UpOptions] = None,
        out: Callable[[str], None] = print,
        secret_reader: Optional[Callable[[Optional[Path]], Dict[str, str]]] = None,
    ) -> None:
        self.topology = topology
        self.opts = options or UpOptions()
        thing = self.opts.thing_name or state.get("thing", {}).get("name", "")
        self.ctx = RunContext(api, state, Names.for_topology(topology, thing), out)
        reader = secret_reader or (lambda p: read_secret_value(p, out=out))
        self.roles = Roles(self.ctx, section(state, "roles"))
        self.functions = LambdaFunctions(self.ctx, self.opts.alias)
        self.secrets = Secrets(self.ctx, topology, reader)
        self.thing = CoreThing(self.ctx, state, self.opts.certs_dir)
        self.group = GreengrassGroup(self.ctx, self.roles)
        self.deployments = GroupDeployments(
            self.ctx, self.opts.alias, self.opts.timeout, self.opts.poll_interval
        )

    @property
    def state(self) -> State:
        return self.ctx.state

    def target(self) -> Target:
        functions = self.state.get("functions", {})
        secrets = self.state.get("secrets", {})
        return Target(
            region=self.ctx.region,
            account=self.ctx.account,
            thing_name=self.ctx.names.thing,
            certificate_arn=self.state["certificate"]["arn"],
            group_id=self.state["group"]["id"],
            alias=self.opts.alias,
            function_arns={fid: f["alias_arn"] for fid, f in functions.items()},
            secret_arns={rid: s["arn"] for rid, s in secrets.items()},
            run_as_root=self.opts.run_as_root,
        )

    def up(self) -> int:
        ctx, opts = self.ctx, self.opts
        topology = self.topology
        check_v1_available(ctx.api, "up")  # the first AWS call: does this account have V1?
        if opts.run_as_root:
            topology = topology.with_changes(run_as_uid=0, run_as_gid=0)
            self.topology = topology
            ctx.out("note: " + ROOT_CONFIG_NOTE)
        ctx.resolve_account(opts.account)
        self.state["alias"] = opts.alias
        ctx.out("packaging functions into {}".format(opts.packaging.package_dir))
        packages = build_packages(topology, opts.packaging, runtime="v1", out=ctx.out)
        for package in packages.values():
            for warning in package.warnings:  # only with --allow-warnings
                ctx.out("warning: {}: {}".format(package.path.name, warning))
        lambda_role = self.functions.ensure_execution_role(self.roles, opts.lambda_role_arn)
        newly_published = [
            spec.lambda_name
            for spec in topology.functions
            if self.functions.ensure(spec, packages[spec.id], lambda_role)
        ]
        self.secrets.ensure(opts.create_secret, opts.secret_file)
        self.thing.ensure_thing(ctx.names.thing)
        self.thing.endpoint("iot:Data-ATS", "iot_endpoint")
        cert_arn = self.thing.ensure_certificate()
        group = self.group.ensure_group()
        self.group.ensure_group_role(group, opts.group_role_arn)
        if opts.create_service_role:
            self.group.ensure_service_role()
        documents = build_documents(topology, self.target())
        validate_documents(documents, ctx.names.policy)
        self.thing.ensure_policy(ctx.names.policy, documents.policy, cert_arn)
        version_arns = {
            kind: self.group.ensure_definition(kind, documents.definition(kind))
            for kind in DEFINITION_KINDS
        }
        group_version = self.group.ensure_group_version(group["id"], version_arns)
        self.state["run_as"] = {
            "uid": topology.run_as_uid,
            "gid": topology.run_as_gid,
            "root": opts.run_as_root,
        }
        self.state.save()
        if opts.deploy:
            self.deployments.deploy(
                group["id"], group_version, newly_published, opts.force_deploy, opts.wait
            )
        else:
            ctx.out("deployment: skipped (--no-deploy)")
        if not ctx.changes:
            ctx.out("up: nothing changed")
        if not ctx.api.dry_run:
            ctx.out("state written to {}".format(self.state.path))
        return 0

    def _group_or_fail(self) -> Dict[str, Any]:
        group = self.state.get("group")
        if not isinstance(group, dict) or not group.get("id"):
            raise DeployError(
                "no Greengrass group in state file {}".format(self.state.path),
                hint="run python -m deploy v1 up first, or pass the --state file it wrote",
            )
        return group

    def status(self) -> int:
        group = self._group_or_fail()
        check_v1_available(self.ctx.api, "status")
        return self.deployments.status(group)

    def reset(self, force: bool = False) -> int:
        group = self._group_or_fail()
        check_v1_available(self.ctx.api, "reset")
        return self.deployments.reset(group, force, self.opts.wait)

    def destroy(
        self,
        force: bool = False,
        delete_secret: bool = False,
        recovery_days: int = 30,
        keep_certs: bool = False,
    ) -> int:
        check_v1_available(self.ctx.api, "destroy")
        teardown = Teardown(
            self.ctx, self.deployments, self.thing, self.functions, self.roles, self.secrets
        )
        return teardown.destroy(force, delete_secret, recovery_days, keep_certs)
