"""Greengrass V2 from the same topology: component recipes, artifacts, a deployment.

Each topology function becomes one native component (``<prefix>.<function id>``)
that runs ``python3 -m <spec.module>`` with the function's environment and
talks to the nucleus through the awsiotsdk IPC client (``agent.greengrass.v2``).

* Artifact: the function's zip from ``deploy.package`` built for the V2
  runtime (``<lambda_name>-v2.zip``; awsiotsdk instead of greengrasssdk),
  uploaded to S3 and unarchived by the nucleus; ``PYTHONPATH`` points at it.
  What cannot be vendored (awsiotsdk needs the compiled awscrt) is pip-installed
  by the component's ``Install`` step.
* Access control, derived from the subscriptions: ``aws.greengrass.ipc.mqttproxy``
  ``PublishToIoTCore`` on the subjects the function sends to ``cloud``
  (``SubscribeToIoTCore`` for ones from ``cloud``); ``aws.greengrass.ipc.pubsub``
  ``PublishToTopic``/``SubscribeToTopic`` on local subjects;
  ``aws.greengrass.SecretManager`` ``GetSecretValue`` on the ARNs of the secrets
  the function may read, plus a dependency on ``aws.greengrass.SecretManager``.
* Deployment: ``create_deployment`` on a thing or thing group, each component
  ``runWith`` the topology's uid:gid (``--posix-user``) and its memory limit
  (KB, like the V1 ``MemorySize``); the SecretManager component gets
  ``cloudSecrets`` through ``configurationUpdate.merge``.

Device access: a V2 component has no "local device resources"; the posix user
it runs as must be in the groups i2c, video and input on the Pi.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

from botocore.exceptions import ClientError

from agent.greengrass.routing import validate_subject
from agent.topology import CLOUD, FunctionSpec, GroupTopology

from .awsapi import Api, error_code
from .definitions import content_hash
from .errors import DeployError, DeploymentFailed, DeploymentTimedOut
from .naming import PLACEHOLDER_ACCOUNT, Names, partition_for, secret_arn, thing_arn
from .package import PackageResult, build_packages
from .state import State
from .validation import validate_params

RECIPE_FORMAT_VERSION = "2020-01-25"
SECRET_MANAGER = "aws.greengrass.SecretManager"
SECRET_MANAGER_REQUIREMENT = ">=2.1.0 <3.0.0"
MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
PUBSUB = "aws.greengrass.ipc.pubsub"
DEFAULT_PREFIX = "com.edgeagent"
PLACEHOLDER_BUCKET = "PLACEHOLDER-artifact-bucket"
PLACEHOLDER_SECRET_MANAGER_VERSION = "RESOLVED-AT-DEPLOY"
OPERATIONS = {
    MQTT_PROXY: {"aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"},
    PUBSUB: {"aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"},
    SECRET_MANAGER: {"aws.greengrass#GetSecretValue"},
}
SUCCEEDED = ("SUCCEEDED", "COMPLETED")
FAILED = ("FAILED", "REJECTED", "TIMED_OUT", "CANCELED")
_SEMVER = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?")
_COMPONENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def component_name(prefix: str, spec: FunctionSpec) -> str:
    return "{}.{}".format(prefix, spec.id)


def artifact_key(prefix: str, name: str, version: str, zip_file: str) -> str:
    return "{}/{}/{}/{}".format(prefix.strip("/"), name, version, zip_file)


def _subjects(topology: GroupTopology, keep: Callable[[Any], bool]) -> List[str]:
    subjects: List[str] = []
    for sub in topology.subscriptions:
        if keep(sub) and sub.subject not in subjects:
            validate_subject(sub.subject)
            subjects.append(sub.subject)
    return subjects


def access_control(
    topology: GroupTopology, spec: FunctionSpec, name: str, secret_arns: Mapping[str, str]
) -> Dict[str, Any]:
    """The recipe's ``accessControl`` for one function, from the subscription table."""
    acl: Dict[str, Dict[str, Any]] = {}

    def grant(service: str, suffix: str, operation: str, resources: List[str], text: str) -> None:
        if resources:
            acl.setdefault(service, {})["{}:{}".format(name, suffix)] = {
                "policyDescription": text,
                "operations": [operation],
                "resources": resources,
            }

    fid = spec.id
    grant(
        MQTT_PROXY,
        "publish-cloud",
        "aws.greengrass#PublishToIoTCore",
        _subjects(topology, lambda s: s.source == fid and s.target == CLOUD),
        "publish to AWS IoT Core",
    )
    grant(
        MQTT_PROXY,
        "subscribe-cloud",
        "aws.greengrass#SubscribeToIoTCore",
        _subjects(topology, lambda s: s.source == CLOUD and s.target == fid),
        "receive from AWS IoT Core",
    )
    grant(
        PUBSUB,
        "publish-local",
        "aws.greengrass#PublishToTopic",
        _subjects(topology, lambda s: s.source == fid and s.target != CLOUD),
        "publish to local functions",
    )
    grant(
        PUBSUB,
        "subscribe-local",
        "aws.greengrass#SubscribeToTopic",
        _subjects(topology, lambda s: s.source != CLOUD and s.target == fid),
        "receive local messages",
    )
    secret_ids = {s.id for s in topology.secrets}
    arns = [secret_arns[a.resource_id] for a in spec.resource_access if a.resource_id in secret_ids]
    grant(
        SECRET_MANAGER,
        "secrets",
        "aws.greengrass#GetSecretValue",
        arns,
        "read the ServiceNow credentials",
    )
    return acl


def build_recipe(
    topology: GroupTopology,
    spec: FunctionSpec,
    *,
    name: str,
    version: str,
    artifact_uri: str,
    zip_file: str,
    secret_arns: Mapping[str, str],
    device_requirements: List[str] = (),  # type: ignore[assignment]
) -> Dict[str, Any]:
    acl = access_control(topology, spec, name, secret_arns)
    unpacked = "{{artifacts:decompressedPath}}/{}".format(zip_file[: -len(".zip")])
    environment = {key: spec.environment[key] for key in sorted(spec.environment)}
    environment.update(PYTHONPATH=unpacked, PYTHONUNBUFFERED="1")
    lifecycle: Dict[str, Any] = {"Setenv": environment}
    python = "python3"
    if device_requirements:
        # A venv in the component's work folder: Debian 12 / Raspberry Pi OS
        # refuse "pip install --user" (PEP 668), and a HOME of /tmp would not
        # survive a reboot. System site packages keep the OS's sense_hat/RTIMU.
        lifecycle["Install"] = {
            "Script": "python3 -m venv --system-site-packages {work:path}/venv && "
            "{work:path}/venv/bin/python -m pip install "
            + " ".join(shlex.quote(r) for r in device_requirements),
            "Timeout": 900,
        }
        python = "{work:path}/venv/bin/python"
    lifecycle["Run"] = {"Script": "{} -m {}".format(python, spec.module)}
    recipe: Dict[str, Any] = {
        "RecipeFormatVersion": RECIPE_FORMAT_VERSION,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": "edge-agent {} function ({}) as a native component".format(
            spec.id, spec.module
        ),
        "ComponentPublisher": topology.name,
    }
    if SECRET_MANAGER in acl:
        recipe["ComponentDependencies"] = {
            SECRET_MANAGER: {
                "VersionRequirement": SECRET_MANAGER_REQUIREMENT,
                "DependencyType": "HARD",
            }
        }
    recipe["ComponentConfiguration"] = {"DefaultConfiguration": {"accessControl": acl}}
    recipe["Manifests"] = [
        {
            "Platform": {"os": "linux"},
            "Lifecycle": lifecycle,
            "Artifacts": [
                {
                    "URI": artifact_uri,
                    "Unarchive": "ZIP",
                    "Permission": {"Read": "OWNER", "Execute": "NONE"},
                }
            ],
        }
    ]
    return recipe


def recipe_errors(recipe: Mapping[str, Any]) -> List[str]:
    """Structural checks of a recipe (the service validates recipes only on upload)."""
    errors: List[str] = []
    if recipe.get("RecipeFormatVersion") != RECIPE_FORMAT_VERSION:
        errors.append("RecipeFormatVersion must be {}".format(RECIPE_FORMAT_VERSION))
    if not _COMPONENT_NAME.fullmatch(str(recipe.get("ComponentName", ""))):
        errors.append("ComponentName {!r} is not valid".format(recipe.get("ComponentName")))
    if not _SEMVER.fullmatch(str(recipe.get("ComponentVersion", ""))):
        errors.append(
            "ComponentVersion {!r} is not major.minor.patch".format(recipe.get("ComponentVersion"))
        )
    for dep, spec in (recipe.get("ComponentDependencies") or {}).items():
        if not isinstance(spec, dict) or not spec.get("VersionRequirement"):
            errors.append("dependency {} needs a VersionRequirement".format(dep))
        if spec.get("DependencyType", "HARD") not in ("HARD", "SOFT"):
            errors.append("dependency {}: DependencyType must be HARD or SOFT".format(dep))
    acl = (
        recipe.get("ComponentConfiguration", {})
        .get("DefaultConfiguration", {})
        .get("accessControl", {})
    )
    for service, policies in acl.items():
        if service not in OPERATIONS:
            errors.append("accessControl: unknown IPC service {}".format(service))
            continue
        for policy_id, policy in policies.items():
            ops = set(policy.get("operations") or [])
            if not ops or not ops <= OPERATIONS[service] | {"*"}:
                errors.append(
                    "{} {}: operations {} not valid for {}".format(
                        service, policy_id, sorted(ops), service
                    )
                )
            if not policy.get("resources") or not all(
                isinstance(r, str) and r for r in policy["resources"]
            ):
                errors.append(
                    "{} {}: resources must be non-empty strings".format(service, policy_id)
                )
    manifests = recipe.get("Manifests")
    if not isinstance(manifests, list) or not manifests:
        errors.append("Manifests must be a non-empty list")
        return errors
    for i, manifest in enumerate(manifests):
        lifecycle = manifest.get("Lifecycle") or {}
        run = lifecycle.get("Run")
        script = run.get("Script") if isinstance(run, dict) else run
        if not script:
            errors.append("Manifests[{}].Lifecycle.Run is missing".format(i))
        for key, value in (lifecycle.get("Setenv") or {}).items():
            if not isinstance(value, str):
                errors.append("Setenv {} must be a string".format(key))
        for artifact in manifest.get("Artifacts") or []:
            if not str(artifact.get("URI", "")).startswith("s3://"):
                errors.append("artifact URI {!r} is not s3://".format(artifact.get("URI")))
            if artifact.get("Unarchive", "NONE") not in ("NONE", "ZIP"):
                errors.append("artifact Unarchive must be NONE or ZIP")
    return errors


def deployment_params(
    topology: GroupTopology,
    *,
    target_arn: str,
    components: Mapping[str, str],  # function id -> component version
    prefix: str,
    secret_arns: Mapping[str, str],
    secret_manager_version: str,
    posix_user: str,
) -> Dict[str, Any]:
    specs: Dict[str, Any] = {}
    for spec in topology.functions:
        specs[component_name(prefix, spec)] = {
            "componentVersion": components[spec.id],
            "runWith": {
                "posixUser": posix_user,
                "systemResourceLimits": {"memory": spec.memory_kb},
            },
        }
    if topology.secrets:
        cloud_secrets = []
        for secret in topology.secrets:
            entry: Dict[str, Any] = {"arn": secret_arns[secret.id]}
            if secret.staging_labels:
                entry["labels"] = list(secret.staging_labels)
            cloud_secrets.append(entry)
        specs[SECRET_MANAGER] = {
            "componentVersion": secret_manager_version,
            "configurationUpdate": {"merge": json.dumps({"cloudSecrets": cloud_secrets})},
        }
    return {
        "targetArn": target_arn,
        "deploymentName": topology.name,
        "components": specs,
    }


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
    package_dir: Path = Path("out") / "package"
    source_root: Optional[Path] = None
    site_packages: Optional[Path] = None
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
) -> V2Plan:
    version = options.version or default_version()
    if not _SEMVER.fullmatch(version):
        raise DeployError("component version {!r} is not major.minor.patch".format(version))
    if packages is None:
        packages = build_packages(
            topology,
            Path(options.package_dir),
            source_root=options.source_root,
            site_packages=options.site_packages,
            runtime="v2",
        )
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


def _semver_key(text: str) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", text.split("-")[0])[:3])


class V2Deployer:
    """``v2-up``: upload artifacts, create component versions, deploy, wait."""

    def __init__(
        self,
        api: Api,
        topology: GroupTopology,
        state: State,
        options: V2Options,
        out: Callable[[str], None] = print,
    ) -> None:
        self.api = api
        self.topology = topology
        self.state = state
        self.opts = options
        self.out = out
        self.region = api.region
        self.partition = partition_for(self.region)

    def _component_arn(self, account: str, name: str, version: str) -> str:
        return "arn:{}:greengrass:{}:{}:components:{}:versions:{}".format(
            self.partition, self.region, account, name, version
        )

    def _secret_arns(self, account: str) -> Dict[str, str]:
        known = self.state.get("secrets", {})
        arns = {}
        for secret in self.topology.secrets:
            recorded = known.get(secret.id, {}).get("arn")
            found = self.api.find(
                "secretsmanager",
                "DescribeSecret",
                {"SecretId": secret.secret_name},
                dry={"ARN": recorded or secret_arn(self.region, account, secret.secret_name)},
            )
            if found is None:
                raise DeployError(
                    "secret {!r} does not exist in {}".format(secret.secret_name, self.region),
                    hint="create it (python -m deploy up --create-secret ...) first",
                )
            arns[secret.id] = found["ARN"]
        return arns

    def _secret_manager_version(self) -> str:
        if self.opts.secret_manager_version:
            return self.opts.secret_manager_version
        arn = "arn:{}:greengrass:{}:aws:components:{}".format(
            self.partition, self.region, SECRET_MANAGER
        )
        response = self.api.call(
            "greengrassv2",
            "ListComponentVersions",
            {"arn": arn},
            dry={"componentVersions": [{"componentVersion": PLACEHOLDER_SECRET_MANAGER_VERSION}]},
        )
        versions = [v["componentVersion"] for v in response.get("componentVersions", [])]
        if not versions:
            raise DeployError(
                "cannot find {} versions in {}".format(SECRET_MANAGER, self.region),
                hint="pass --secret-manager-version",
            )
        if self.api.dry_run:
            return versions[0]
        return max(versions, key=_semver_key)

    def _wait_deployable(self, arn: str) -> None:
        if self.api.dry_run:
            self.api.call("greengrassv2", "DescribeComponent", {"arn": arn})
            return
        deadline = self.api.now() + self.opts.timeout
        while True:
            status = self.api.call("greengrassv2", "DescribeComponent", {"arn": arn}).get(
                "status", {}
            )
            state = status.get("componentState")
            if state == "DEPLOYABLE":
                return
            if state == "FAILED":
                raise DeployError(
                    "component {} failed: {} {}".format(
                        arn, status.get("message", ""), status.get("errors", {})
                    )
                )
            if self.api.now() >= deadline:
                raise DeploymentTimedOut("component {} still {}".format(arn, state))
            self.api.sleep(min(2.0, self.opts.poll_interval))

    def up(self) -> int:
        if self.api.dry_run:
            account = self.opts.account or self.state.get("account") or PLACEHOLDER_ACCOUNT
            self.api.call("sts", "GetCallerIdentity", dry={"Account": account})
        else:
            account = self.api.call("sts", "GetCallerIdentity")["Account"]
        if not self.opts.bucket:
            raise DeployError("v2-up needs --bucket for the component artifacts")
        secret_arns = self._secret_arns(account)
        plan = build_v2_plan(
            self.topology,
            region=self.region,
            account=account,
            secret_arns=secret_arns,
            options=self.opts,
            secret_manager_version=self._secret_manager_version(),
        )
        v2 = self.state.section("v2")
        components = v2.setdefault("components", {})
        for name, recipe in plan.recipes.items():
            version = recipe["ComponentVersion"]
            arn = self._component_arn(account, name, version)
            package = plan.packages[
                next(s.id for s in self.topology.functions if name.endswith("." + s.id))
            ]
            # The code is part of the component: a changed zip under the same
            # version must not pass as "unchanged".
            digest = content_hash({"recipe": recipe, "artifact_sha256": package.sha256})
            known = components.get(name, {})
            exists = self.api.find(
                "greengrassv2",
                "DescribeComponent",
                {"arn": arn},
                dry={"arn": arn} if known.get("version") == version else None,
            )
            if exists is not None:
                if known.get("version") == version and known.get("recipe_hash") == digest:
                    self.out("component {} {}: unchanged".format(name, version))
                    continue
                raise DeployError(
                    "component {} version {} already exists with a different recipe or code".format(
                        name, version
                    ),
                    hint="component versions are immutable: pass a new --component-version",
                )
            self.api.call(
                "s3",
                "PutObject",
                {
                    "Bucket": self.opts.bucket,
                    "Key": plan.artifacts[name],
                    "Body": package.path.read_bytes(),
                },
            )
            try:
                response = self.api.call(
                    "greengrassv2",
                    "CreateComponentVersion",
                    {"inlineRecipe": json.dumps(recipe, indent=2).encode("utf-8")},
                    dry={"arn": arn},
                )
            except ClientError as exc:
                if error_code(exc) == "ConflictException":
                    raise DeployError(
                        "component {} {} already exists".format(name, version),
                        hint="pass a new --component-version",
                    )
                raise
            self._wait_deployable(response["arn"])
            components[name] = {
                "version": version,
                "recipe_hash": digest,
                "arn": response["arn"],
                "artifact": "s3://{}/{}".format(self.opts.bucket, plan.artifacts[name]),
            }
            self.state.save()
            self.out("component {} {}: created".format(name, version))
        digest = content_hash(plan.deployment)
        deployment = v2.setdefault("deployment", {})
        if deployment.get("hash") == digest and not self.opts.force_deploy:
            self.out(
                "v2 deployment: unchanged ({}); --force-deploy to deploy anyway".format(
                    deployment.get("id")
                )
            )
            return 0
        response = self.api.call(
            "greengrassv2", "CreateDeployment", plan.deployment, dry={"deploymentId": "NEW"}
        )
        deployment.clear()
        deployment.update(
            id=response["deploymentId"], hash=digest, target=plan.deployment["targetArn"]
        )
        self.state.save()
        self.out(
            "v2 deployment {}: created for {}".format(
                response["deploymentId"], plan.deployment["targetArn"]
            )
        )
        target = plan.deployment["targetArn"]
        if self.opts.wait and ":thing/" in target:
            self.wait(target.split(":thing/", 1)[1], response["deploymentId"])
        return 0

    def wait(self, thing: str, deployment_id: str) -> str:
        if self.api.dry_run:
            self.api.call(
                "greengrassv2", "ListEffectiveDeployments", {"coreDeviceThingName": thing}
            )
            return "SUCCEEDED"
        deadline = self.api.now() + self.opts.timeout
        last = None
        while True:
            response = self.api.call(
                "greengrassv2", "ListEffectiveDeployments", {"coreDeviceThingName": thing}
            )
            mine = [
                d
                for d in response.get("effectiveDeployments", [])
                if d.get("deploymentId") == deployment_id
            ]
            status = mine[0].get("coreDeviceExecutionStatus") if mine else "QUEUED"
            if status != last:
                self.out("v2 deployment {} on {}: {}".format(deployment_id, thing, status))
                last = status
            if status in SUCCEEDED:
                return status
            if status in FAILED:
                details = mine[0].get("statusDetails") or {}
                lines = [
                    "v2 deployment {} {}: {}".format(
                        deployment_id, status, mine[0].get("reason", "")
                    )
                ]
                for key in ("errorStack", "errorTypes"):
                    if details.get(key):
                        lines.append("  {}: {}".format(key, ", ".join(details[key])))
                raise DeploymentFailed(
                    "\n".join(lines), hint="see /greengrass/v2/logs/greengrass.log on the core"
                )
            if self.api.now() >= deadline:
                raise DeploymentTimedOut(
                    "v2 deployment {} still {} after {:g}s".format(
                        deployment_id, status, self.opts.timeout
                    ),
                    hint="is the nucleus running and online?",
                )
            self.api.sleep(self.opts.poll_interval)
