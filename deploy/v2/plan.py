"""``v2 plan``: recipes, their artifacts and the deployment, built and validated offline.

The same documents and files ``v2 up`` sends and uploads, checked against botocore's
``greengrassv2`` service model (and :func:`recipe_errors`, since the service
validates recipes only on upload). Each component's artifacts are its code zip and,
per device architecture, a zip of the wheels its ``Install`` step installs offline
(``deploy.wheels``); ``v2 plan --out`` writes them beside the recipes, under the file
names the recipes' URIs end with, so what is reviewed is what is uploaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from agent.topology import GroupTopology

from ..errors import DeployError
from ..naming import Names, Target, partition_for, thing_arn
from ..package import PackageOptions, PackageResult, build_packages
from ..plans import Plan
from ..roles import service_trust_policy
from ..validation import validate_params
from ..wheels import (
    ARCHITECTURES,
    DEFAULT_ARCHITECTURES,
    WheelArtifact,
    resolve_wheels,
    wheels_zip,
)
from .core_documents import (
    DEFAULT_NUCLEUS_VERSION,
    TOKEN_EXCHANGE_SERVICE,
    core_iot_policy,
    nucleus_config_yaml,
    pi_install_script,
    state_directories,
    token_exchange_access_policy,
)
from .deployments import deployment_params
from .recipes import (
    DEFAULT_PREFIX,
    PLACEHOLDER_BUCKET,
    PLACEHOLDER_SECRET_MANAGER_VERSION,
    SEMVER,
    DeviceManifest,
    artifact_key,
    build_recipe,
    component_name,
    recipe_errors,
    shadow_thing,
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
    shadow_manager_version: str = ""
    posix_user: str = ""
    packaging: PackageOptions = field(default_factory=PackageOptions)
    architectures: Sequence[str] = DEFAULT_ARCHITECTURES  # one recipe manifest each
    wheelhouse: Optional[Path] = None  # wheels to use besides PyPI (an armv7l awscrt)
    no_index: bool = False  # the wheels from ``wheelhouse`` only, never PyPI
    certs_dir: Path = Path("certs")
    create_secret: bool = False
    secret_file: Optional[Path] = None
    nucleus_version: str = DEFAULT_NUCLEUS_VERSION
    force_deploy: bool = False
    wait: bool = True
    timeout: float = 600.0
    poll_interval: float = 10.0
    site: str = ""  # v2 up --site: the site's Pis as client devices (deploy/v2/site_up.py)
    devices: int = 0
    rollout_per_minute: int = 10
    abort_threshold: float = 10.0

    def run_as(self, topology: GroupTopology) -> str:
        """``runWith.posixUser``: ``--posix-user``, else the topology's uid:gid."""
        return self.posix_user or "{}:{}".format(topology.run_as_uid, topology.run_as_gid)


def default_version() -> str:
    from agent import __version__

    return __version__


@dataclass
class Artifact:
    """One file a recipe names: where it is here, where it goes in S3."""

    path: Path
    key: str
    sha256: str


@dataclass
class V2Plan:
    recipes: Dict[str, Dict[str, Any]]  # component name -> recipe
    deployment: Dict[str, Any]
    packages: Dict[str, PackageResult]
    artifacts: Dict[str, List[Artifact]]  # component name -> its files, code zip first
    wheels: Dict[str, List[WheelArtifact]] = field(default_factory=dict)  # per component
    missing: Dict[str, str] = field(default_factory=dict)  # architecture -> why no wheels


def device_wheels(
    package: PackageResult,
    options: V2Options,
    out: Callable[[str], None],
) -> Tuple[List[WheelArtifact], Dict[str, str]]:
    """The wheel zips one component needs (one per architecture that has wheels), and why
    the others have none."""
    requirements = package.device_requirements
    artifacts: List[WheelArtifact] = []
    missing: Dict[str, str] = {}
    if not requirements:
        return artifacts, missing
    for architecture in options.architectures:
        wheels = resolve_wheels(
            requirements,
            architecture,
            package.target_python,
            wheelhouse=options.wheelhouse,
            offline=options.no_index,
            cache=options.packaging.cache,
            refresh=options.packaging.refresh_vendor,
            out=out,
        )
        if wheels.directory is None:
            missing[architecture] = wheels.missing
            continue
        name = "{}-wheels-{}.zip".format(package.path.name[: -len(".zip")], architecture)
        artifacts.append(wheels_zip(wheels, package.path.with_name(name)))
    return artifacts, missing


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
    shadow_manager_version: str = PLACEHOLDER_SECRET_MANAGER_VERSION,
) -> V2Plan:
    version = options.version or default_version()
    if not SEMVER.fullmatch(version):
        raise DeployError("component version {!r} is not major.minor.patch".format(version))
    if packages is None:
        packages = build_packages(topology, options.packaging, runtime="v2", out=out)
    bucket = options.bucket or PLACEHOLDER_BUCKET
    recipes: Dict[str, Dict[str, Any]] = {}
    artifacts: Dict[str, List[Artifact]] = {}
    if options.thing_group:
        target = "arn:{}:iot:{}:{}:thinggroup/{}".format(
            partition_for(region), region, account, options.thing_group
        )
    else:
        target = thing_arn(region, account, Names.for_topology(topology, options.thing_name).thing)
    bound = topology.for_thing(shadow_thing(target))  # the shadow's access control names it
    wheels: Dict[str, List[WheelArtifact]] = {}
    missing: Dict[str, str] = {}
    for spec in topology.functions:
        name = component_name(options.prefix, spec)
        package = packages[spec.id]
        key = artifact_key(options.artifact_prefix, name, version, package.path.name)
        files = [Artifact(package.path, key, package.sha256)]
        wheels[name], missing_here = device_wheels(package, options, out)
        missing.update(missing_here)
        devices: List[DeviceManifest] = []
        by_architecture = {w.architecture: w for w in wheels[name]}
        for architecture in options.architectures if package.device_requirements else ():
            greengrass_architecture, machine = ARCHITECTURES[architecture]
            artifact = by_architecture.get(architecture)
            if artifact is None:
                devices.append(
                    DeviceManifest(
                        greengrass_architecture,
                        machine,
                        package.target_python,
                        missing=missing_here[architecture],
                    )
                )
                continue
            wheels_key = artifact_key(options.artifact_prefix, name, version, artifact.path.name)
            files.append(Artifact(artifact.path, wheels_key, artifact.sha256))
            devices.append(
                DeviceManifest(
                    greengrass_architecture,
                    machine,
                    package.target_python,
                    wheels_uri="s3://{}/{}".format(bucket, wheels_key),
                    wheels_folder=artifact.folder,
                    digest=artifact.sha256,
                )
            )
        recipe = build_recipe(
            bound,
            spec,
            name=name,
            version=version,
            artifact_uri="s3://{}/{}".format(bucket, key),
            zip_file=package.path.name,
            secret_arns=secret_arns,
            devices=devices,
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
        artifacts[name] = files
    posix_user = options.run_as(topology)
    params = deployment_params(
        topology,
        target_arn=target,
        components={s.id: version for s in topology.functions},
        prefix=options.prefix,
        secret_arns=secret_arns,
        secret_manager_version=secret_manager_version,
        posix_user=posix_user,
        shadow_manager_version=shadow_manager_version,
    )
    validate_params("greengrassv2", "CreateDeployment", params)
    return V2Plan(
        recipes=recipes,
        deployment=params,
        packages=packages,
        artifacts=artifacts,
        wheels=wheels,
        missing=missing,
    )


CHECK_SERVICENOW_NOTE = (
    "before the first breach: check ServiceNow with  edge-agent check-servicenow --snow-url URL "
    "--secret-file FILE  (instance, TLS, credentials, roles, CI; --create-test-incident opens "
    "and resolves a test incident)"
)


def v2_plan(
    topology: GroupTopology,
    target: Target,
    options: V2Options,
    out: Callable[[str], None] = lambda _text: None,
) -> Plan:
    """``v2 plan``: recipes, deployment, and the core's identity documents and install
    commands, with placeholders where only AWS can answer."""
    secret_manager_version = options.secret_manager_version or PLACEHOLDER_SECRET_MANAGER_VERSION
    shadow_manager_version = options.shadow_manager_version or PLACEHOLDER_SECRET_MANAGER_VERSION
    secret_arns = {s.id: target.secret_arn(topology, s.id) for s in topology.secrets}
    built = build_v2_plan(
        topology,
        region=target.region,
        account=target.account,
        secret_arns=secret_arns,
        options=options,
        secret_manager_version=secret_manager_version,
        shadow_manager_version=shadow_manager_version,
        out=out,
    )
    placeholders = [p for p in target.placeholders if not p.startswith(("certificate", "group"))]
    placeholders += ["iot_endpoints", "certificate_files"]
    if not options.bucket:
        placeholders.append("bucket")
    if not options.secret_manager_version:
        placeholders.append("secret_manager_version")
    if not options.shadow_manager_version:
        placeholders.append("shadow_manager_version")
    plan = Plan(target, placeholders=placeholders)
    bucket = options.bucket or PLACEHOLDER_BUCKET
    for name, recipe in built.recipes.items():
        plan.files["{}.recipe.json".format(name)] = recipe
        for artifact in built.artifacts[name]:
            plan.artifacts[artifact.path.name] = artifact.path
            plan.commands.append(
                "aws s3 cp {} s3://{}/{}".format(artifact.path.name, bucket, artifact.key)
            )
        plan.commands.append(
            "aws greengrassv2 create-component-version --inline-recipe "
            "fileb://{}.recipe.json".format(name)
        )
    for architecture, reason in sorted(built.missing.items()):
        plan.notes.append(
            "note: {}: {}; its manifest's Install stops with one line saying so "
            "(give the wheels with --wheelhouse DIR)".format(architecture, reason)
        )
    plan.files["deployment.json"] = built.deployment
    plan.notes.append(CHECK_SERVICENOW_NOTE)
    plan.commands.append(
        "aws greengrassv2 create-deployment --cli-input-json file://deployment.json"
    )
    names = Names.for_topology(topology, target.thing_name)
    partition = partition_for(target.region)
    trust = service_trust_policy(TOKEN_EXCHANGE_SERVICE)
    access = token_exchange_access_policy(
        partition,
        options.bucket or PLACEHOLDER_BUCKET,
        options.artifact_prefix,
        list(secret_arns.values()),
    )
    core_policy = core_iot_policy(
        topology, target.region, target.account, names.thing, names.token_exchange_alias
    )
    validate_params(
        "iot",
        "CreatePolicy",
        {"policyName": names.v2_policy, "policyDocument": json.dumps(core_policy)},
    )
    plan.files["token-exchange-role-trust.json"] = trust
    plan.files["token-exchange-role-access.json"] = access
    plan.files["core-iot-policy.json"] = core_policy
    plan.files["config.yaml"] = nucleus_config_yaml(
        thing=names.thing,
        region=target.region,
        role_alias=names.token_exchange_alias,
        data_endpoint="PLACEHOLDER-ats.iot.{}.amazonaws.com".format(target.region),
        credentials_endpoint="PLACEHOLDER.credentials.iot.{}.amazonaws.com".format(target.region),
        cert_file="CERTIFICATE.cert.pem",
        key_file="CERTIFICATE.private.key",
        nucleus_version=options.nucleus_version,
    )
    plan.files["install-on-pi.sh"] = pi_install_script(
        cert_file="CERTIFICATE.cert.pem",
        key_file="CERTIFICATE.private.key",
        run_as=options.run_as(topology),
        state_dirs=state_directories(topology),
        nucleus_version=options.nucleus_version,
    )
    plan.commands += [
        "aws iam create-role --role-name {} --assume-role-policy-document "
        "file://token-exchange-role-trust.json".format(names.token_exchange_role),
        "aws iam put-role-policy --role-name {} --policy-name {} --policy-document "
        "file://token-exchange-role-access.json".format(
            names.token_exchange_role, names.token_exchange_access
        ),
        "aws iot create-role-alias --role-alias {} --role-arn <the role's ARN>".format(
            names.token_exchange_alias
        ),
        "aws iot create-policy --policy-name {} --policy-document file://core-iot-policy.json".format(
            names.v2_policy
        ),
    ]
    plan.notes.append("validated against botocore's greengrassv2 and iot service models")
    return plan
