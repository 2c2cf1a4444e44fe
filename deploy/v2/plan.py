"""``v2-plan``: recipes and the deployment, built and validated offline.

The same documents ``v2-up`` sends, checked against botocore's
``greengrassv2`` service model (and :func:`recipe_errors`, since the service
validates recipes only on upload).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

from agent.topology import GroupTopology

from ..errors import DeployError
from ..naming import Names, Target, partition_for, thing_arn
from ..package import PackageOptions, PackageResult, build_packages
from ..plans import Plan
from ..validation import validate_params
from .deployments import deployment_params
from .recipes import (
    DEFAULT_PREFIX,
    PLACEHOLDER_BUCKET,
    PLACEHOLDER_SECRET_MANAGER_VERSION,
    SEMVER,
    artifact_key,
    build_recipe,
    component_name,
    recipe_errors,
)


@dataclass
class V2Options:
    bucket: str = ""
    prefix: str = DEFAULT_PREFIX
    artifact_prefix: str = "edge-agent/artifacts"
    version: str = ""  # component version; default: the agent's version
    thing_name: str = ""
    thing_group: str = ""
    account: str = ""
    secret_manager_version: str = ""
    posix_user: str = ""
    packaging: PackageOptions = field(default_factory=PackageOptions)
    force_deploy: bool = False
    wait: bool = True
    timeout: float = 600.0
    poll_interval: float = 10.0


def default_version() -> str:
    from agent import __version__

    return __version__


@dataclass
class V2Plan:
    recipes: Dict[str, Dict[str, Any]]  # component name -> recipe
    deployment: Dict[str, Any]
    packages: Dict[str, PackageResult]
    artifacts: Dict[str, str]  # component name -> s3 key


def build_v2_plan(
    topology: GroupTopology,
    *,
    region: str,
    account: str,
    secret_arns: Mapping[str, str],
    options: V2Options,
    secret_manager_version: str,
    packages: Optional[Dict[str, PackageResult]] = None,
    out: Callable[[str], None] = lambda _text: None,
) -> V2Plan:
    version = options.version or default_version()
    if not SEMVER.fullmatch(version):
        raise DeployError("component version {!r} is not major.minor.patch".format(version))
    if packages is None:
        packages = build_packages(topology, options.packaging, runtime="v2", out=out)
    bucket = options.bucket or PLACEHOLDER_BUCKET
    recipes: Dict[str, Dict[str, Any]] = {}
    artifacts: Dict[str, str] = {}
    for spec in topology.functions:
        name = component_name(options.prefix, spec)
        package = packages[spec.id]
        key = artifact_key(options.artifact_prefix, name, version, package.path.name)
        recipe = build_recipe(
            topology,
            spec,
            name=name,
            version=version,
            artifact_uri="s3://{}/{}".format(bucket, key),
            zip_file=package.path.name,
            secret_arns=secret_arns,
            device_requirements=package.device_requirements,
        )
        errors = recipe_errors(recipe)
        if errors:
            raise DeployError("recipe {} is invalid:\n  {}".format(name, "\n  ".join(errors)))
        validate_params(
            "greengrassv2",
            "CreateComponentVersion",
            {"inlineRecipe": json.dumps(recipe).encode("utf-8")},
        )
        recipes[name] = recipe
        artifacts[name] = key
    if options.thing_group:
        target = "arn:{}:iot:{}:{}:thinggroup/{}".format(
            partition_for(region), region, account, options.thing_group
        )
    else:
        target = thing_arn(region, account, Names.for_topology(topology, options.thing_name).thing)
    posix_user = options.posix_user or "{}:{}".format(topology.run_as_uid, topology.run_as_gid)
    params = deployment_params(
        topology,
        target_arn=target,
        components={s.id: version for s in topology.functions},
        prefix=options.prefix,
        secret_arns=secret_arns,
        secret_manager_version=secret_manager_version,
        posix_user=posix_user,
    )
    validate_params("greengrassv2", "CreateDeployment", params)
    return V2Plan(recipes=recipes, deployment=params, packages=packages, artifacts=artifacts)


def v2_plan(
    topology: GroupTopology,
    target: Target,
    options: V2Options,
    out: Callable[[str], None] = lambda _text: None,
) -> Plan:
    """``v2-plan``: the recipes and the deployment, with placeholders where AWS must answer."""
    secret_manager_version = options.secret_manager_version or PLACEHOLDER_SECRET_MANAGER_VERSION
    built = build_v2_plan(
        topology,
        region=target.region,
        account=target.account,
        secret_arns={s.id: target.secret_arn(topology, s.id) for s in topology.secrets},
        options=options,
        secret_manager_version=secret_manager_version,
        out=out,
    )
    placeholders = [p for p in target.placeholders if not p.startswith(("certificate", "group"))]
    if not options.bucket:
        placeholders.append("bucket")
    if not options.secret_manager_version:
        placeholders.append("secret_manager_version")
    plan = Plan(target, placeholders=placeholders)
    for name, recipe in built.recipes.items():
        plan.files["{}.recipe.json".format(name)] = recipe
        plan.commands.append(
            "aws greengrassv2 create-component-version --inline-recipe fileb://{}.recipe.json".format(
                name
            )
        )
    plan.files["deployment.json"] = built.deployment
    plan.commands.append(
        "aws greengrassv2 create-deployment --cli-input-json file://deployment.json"
    )
    plan.notes.append("validated against botocore's greengrassv2 service model")
    return plan
