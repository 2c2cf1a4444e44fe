"""Greengrass V2 component recipes from the topology. Pure: no AWS calls.

Each topology function becomes one native component (``<prefix>.<function id>``)
that runs ``python3 -m <spec.module>`` with the function's environment and
talks to the nucleus through the awsiotsdk IPC client (``agent.greengrass.v2``).

* Artifacts: the function's zip from ``deploy.package`` built for the V2
  runtime (``<lambda_name>-v2.zip``; awsiotsdk instead of greengrasssdk),
  unarchived by the nucleus; ``PYTHONPATH`` points at it. What cannot be
  vendored (awsiotsdk needs the compiled awscrt) travels as wheels: one manifest
  per device architecture (``deploy.wheels``), each with a zip of the wheels for
  that architecture and the device's Python, which its ``Install`` step installs
  into a venv with ``pip install --no-index`` (never PyPI; skipped when a stamp
  says the venv holds them already, since the nucleus runs ``Install`` at every
  start). An architecture without wheels (armv7l: PyPI has no awscrt for it) gets
  a manifest whose ``Install`` stops with one line naming the cause and the remedy.
* Access control, derived from the subscriptions: ``aws.greengrass.ipc.mqttproxy``
  ``PublishToIoTCore`` on the subjects the function sends to ``cloud``
  (``SubscribeToIoTCore`` for ones from ``cloud``); ``aws.greengrass.ipc.pubsub``
  ``PublishToTopic``/``SubscribeToTopic`` on local subjects;
  ``aws.greengrass.SecretManager`` ``GetSecretValue`` on the ARNs of the secrets
  the function may read, plus a dependency on ``aws.greengrass.SecretManager``;
  ``aws.greengrass.ShadowManager`` ``GetThingShadow``/``UpdateThingShadow`` on
  ``$aws/things/<thing>/shadow`` for the subscriptions the function has to the
  local shadow service (its deltas and answers are the ``SubscribeToTopic``
  subjects from ``GGShadowService``), plus a SOFT dependency on ShadowManager
  (a restart of ShadowManager must not restart the sensor; it asks again).
* Variables: the nucleus sets each as an environment variable from the
  component's configuration (``{configuration:/name}`` in ``Setenv``), which
  restarts the component when a deployment changes it. The sensor's
  run-time variables (``agent.live_settings.RUNTIME_VARIABLES``: limits,
  hysteresis, debounce, renotify, period) are left out of ``Setenv``: the
  component reads them over IPC (``GetConfiguration``) and follows
  ``SubscribeToConfigurationUpdate``, so a changed limit applies at the next
  reading without a restart, keeping open episodes and the readings in between.

Device access: a V2 component has no "local device resources"; the posix user
it runs as must be in the groups i2c, video and input on the Pi.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Sequence

from agent.config import VARIABLES
from agent.greengrass.routing import validate_subject
from agent.live_settings import RUNTIME_VARIABLES
from agent.topology import (
    CLOUD,
    SENSOR_FUNCTION_ID,
    SHADOW_SERVICE,
    THING_TOKEN,
    FunctionSpec,
    GroupTopology,
)

RECIPE_FORMAT_VERSION = "2020-01-25"
SECRET_MANAGER = "aws.greengrass.SecretManager"
SECRET_MANAGER_REQUIREMENT = ">=2.1.0 <3.0.0"
MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
ACCESS_CONTROL = "accessControl"
PUBSUB = "aws.greengrass.ipc.pubsub"
SHADOW_MANAGER = "aws.greengrass.ShadowManager"
SHADOW_MANAGER_REQUIREMENT = ">=2.0.0 <3.0.0"
PLACEHOLDER_SHADOW_MANAGER_VERSION = "RESOLVED-AT-DEPLOY"
# The core's own thing, for a deployment to a thing group (the nucleus interpolates it
# when its interpolateComponentConfiguration is on: config.yaml sets it).
THING_NAME_VARIABLE = "{iot:thingName}"
SHADOW_OPERATIONS = {
    "update": "aws.greengrass#UpdateThingShadow",
    "get": "aws.greengrass#GetThingShadow",
}
DEFAULT_PREFIX = "com.edgeagent"
PLACEHOLDER_BUCKET = "PLACEHOLDER-artifact-bucket"
PLACEHOLDER_SECRET_MANAGER_VERSION = "RESOLVED-AT-DEPLOY"
OPERATIONS = {
    MQTT_PROXY: {"aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"},
    PUBSUB: {"aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"},
    SECRET_MANAGER: {"aws.greengrass#GetSecretValue"},
    SHADOW_MANAGER: set(SHADOW_OPERATIONS.values()),
}
SEMVER = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?")
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
    """The recipe's ``accessControl`` for one function, from the subscription table (bound
    to the thing: :meth:`GroupTopology.for_thing`)."""
    if any(THING_TOKEN in s.subject for s in topology.subscriptions):
        raise ValueError("bind the topology to the core's thing first (for_thing)")
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
        _subjects(topology, lambda s: s.source == fid and s.target not in (CLOUD, SHADOW_SERVICE)),
        "publish to local functions",
    )
    # Requests to the local shadow service are ShadowManager operations on the shadow.
    for operation, ipc_operation in sorted(SHADOW_OPERATIONS.items()):
        shadows = [
            s.subject.rsplit("/", 1)[0]
            for s in topology.subscriptions
            if s.source == fid
            and s.target == SHADOW_SERVICE
            and s.subject.endswith("/" + operation)
        ]
        grant(
            SHADOW_MANAGER,
            "shadow-" + operation,
            ipc_operation,
            sorted(set(shadows)),
            "{} the thing's classic shadow".format(operation),
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


def ipc_variables(spec: FunctionSpec) -> List[str]:
    """The variables the component reads over IPC instead of its environment."""
    return list(RUNTIME_VARIABLES) if spec.id == SENSOR_FUNCTION_ID else []


def configuration_names(spec: FunctionSpec) -> List[str]:
    """The variables a component takes from its configuration: everything in the function's
    environment, and every variable ``agent.config`` documents for that function, so that
    changing any of them is a configuration merge, never a new component version."""
    names = set(spec.environment)
    names.update(v.name for v in VARIABLES if v.function in (spec.id, "both"))
    return sorted(names)


def default_configuration(spec: FunctionSpec) -> Dict[str, str]:
    """The recipe's defaults: the documented default of each variable ('' when it has none,
    which the agent reads as unset). The deployment merges the topology's real values."""
    documented = {v.name: v.default for v in VARIABLES}
    return {name: documented.get(name) or "" for name in configuration_names(spec)}


def component_configuration(
    topology: GroupTopology, spec: FunctionSpec, name: str, secret_arns: Mapping[str, str]
) -> Dict[str, Any]:
    """What a deployment merges into the component: its variables and its IPC access."""
    config: Dict[str, Any] = {key: str(spec.environment[key]) for key in sorted(spec.environment)}
    config[ACCESS_CONTROL] = access_control(topology, spec, name, secret_arns)
    return config


def shadow_thing(target_arn: str) -> str:
    """The thing whose shadow the components use: the deployment's thing, or for a thing
    group each core's own (the ``{iot:thingName}`` recipe variable)."""
    if ":thing/" in target_arn:
        return target_arn.split(":thing/", 1)[1]
    return THING_NAME_VARIABLE


def configuration_reference(name: str) -> str:
    """``{configuration:/name}``: the nucleus substitutes the component's current value."""
    return "{configuration:/" + name + "}"


@dataclass(frozen=True)
class DeviceManifest:
    """One architecture's manifest: the wheels its ``Install`` installs offline, or why
    there are none (then ``Install`` stops with that one line)."""

    architecture: str  # Greengrass's: aarch64, amd64, arm
    machine: str  # what ``uname -m`` says there: aarch64, x86_64, armv7l
    python: str  # the device's Python the wheels are for, "3.11"
    wheels_uri: str = ""
    wheels_folder: str = ""  # the zip's name without .zip: where the nucleus unpacks it
    digest: str = ""  # sha256 of the wheels zip: Install is skipped when its stamp says so
    missing: str = ""  # why there are no wheels for this architecture


VENV = "{work:path}/venv"
INSTALL_LOG = "{work:path}/install.log"
STAMP = VENV + "/.edge-agent-wheels"


def _one_line_failure(condition: str, message: str) -> List[str]:
    """``if CONDITION; then`` say MESSAGE on stderr (the component's log) and fail."""
    return [
        "if {}; then".format(condition),
        "  echo {} >&2".format(shlex.quote("edge-agent install: " + message)),
        "  exit 1",
        "fi",
    ]


def install_script(device: DeviceManifest) -> str:
    """The ``Install`` step: offline, idempotent, and one line on stderr when it fails.

    The nucleus runs ``Install`` at every start, so the step returns at once when the venv
    holds these very wheels (a stamp with the wheels zip's sha256). Otherwise it makes a
    venv of the OS's Python with system site packages (Raspberry Pi OS refuses ``pip
    install --user``, PEP 668; the OS's sense_hat/RTIMU stay visible) and installs the
    pinned wheels from the artifact with ``--no-index``: PyPI is never asked. pip's own
    output goes to ``install.log`` in the work folder; what the log shows is one line.
    """
    if not device.wheels_folder:
        remedy = (
            "install 64-bit Raspberry Pi OS (Pi 3, 4, 5, Zero 2 W), or build the wheel on a "
            "Pi (pip wheel awscrt; cmake and a compiler needed) and plan again with "
            "--wheelhouse DIR"
        )
        return "\n".join(
            [
                "echo {} >&2".format(
                    shlex.quote(
                        "edge-agent install: {}: {}".format(
                            device.missing or "no wheels for " + device.machine, remedy
                        )
                    )
                ),
                "exit 1",
            ]
        )
    wheels = "{{artifacts:decompressedPath}}/{}".format(device.wheels_folder)
    version = tuple(int(n) for n in device.python.split("."))
    lines = [
        'if [ -x "{venv}/bin/python" ] && [ "$(cat "{stamp}" 2>/dev/null)" = "{digest}" ]; '
        "then exit 0; fi".format(venv=VENV, stamp=STAMP, digest=device.digest),
    ]
    lines += _one_line_failure(
        "! python3 -c 'import sys; sys.exit(sys.version_info[:2] != {!r})' 2>/dev/null".format(
            version
        ),
        "the bundled wheels are for Python {} on {}, this device has another Python; plan "
        "again with --device-python X.Y (python3 -V shows it)".format(
            device.python, device.machine
        ),
    )
    lines.append('rm -rf "{}"'.format(VENV))
    lines += _one_line_failure(
        '! python3 -m venv --system-site-packages "{}" > "{}" 2>&1'.format(VENV, INSTALL_LOG),
        "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv); "
        "details in " + INSTALL_LOG,
    )
    lines += _one_line_failure(
        '! "{venv}/bin/python" -m pip install --no-index --find-links "{wheels}" '
        "--no-cache-dir --disable-pip-version-check --no-input --quiet "
        '-r "{wheels}/requirements.txt" >> "{log}" 2>&1'.format(
            venv=VENV, wheels=wheels, log=INSTALL_LOG
        ),
        "pip could not install the bundled wheels offline; details in " + INSTALL_LOG,
    )
    lines.append('echo "{}" > "{}"'.format(device.digest, STAMP))
    return "\n".join(lines)


def build_recipe(
    topology: GroupTopology,
    spec: FunctionSpec,
    *,
    name: str,
    version: str,
    artifact_uri: str,
    zip_file: str,
    secret_arns: Mapping[str, str],
    devices: Sequence[DeviceManifest] = (),
) -> Dict[str, Any]:
    """The component recipe. It holds no value that a deployment can change: the variables
    come from the component's configuration, through ``{configuration:/name}`` in
    ``Setenv`` (a changed value restarts the component with it) or, for the sensor's
    run-time variables, over IPC (applied without a restart); ``accessControl`` comes
    with the deployment too (:func:`component_configuration`).

    ``devices``: one manifest per architecture whose ``Install`` installs the component's
    wheels offline from an artifact (see :func:`install_script`). Without any (a function
    that needs nothing compiled), one manifest for every Linux device, without ``Install``.
    """
    # Which IPC services it uses decides its dependencies, whichever thing it runs as.
    acl = access_control(topology.for_thing(THING_NAME_VARIABLE), spec, name, secret_arns)
    unpacked = "{{artifacts:decompressedPath}}/{}".format(zip_file[: -len(".zip")])
    read_over_ipc = ipc_variables(spec)
    environment = {
        key: configuration_reference(key)
        for key in configuration_names(spec)
        if key not in read_over_ipc
    }
    environment.update(PYTHONPATH=unpacked, PYTHONUNBUFFERED="1")
    code = {
        "URI": artifact_uri,
        "Unarchive": "ZIP",
        "Permission": {"Read": "OWNER", "Execute": "NONE"},
    }
    manifests: List[Dict[str, Any]] = []
    for device in devices:
        lifecycle: Dict[str, Any] = {
            "Setenv": dict(environment),
            "Install": {"Script": install_script(device), "Timeout": 900},
            "Run": {"Script": "{}/bin/python -m {}".format(VENV, spec.module)},
        }
        artifacts = [dict(code)]
        if device.wheels_uri:
            artifacts.append(
                {
                    "URI": device.wheels_uri,
                    "Unarchive": "ZIP",
                    "Permission": {"Read": "OWNER", "Execute": "NONE"},
                }
            )
        manifests.append(
            {
                "Platform": {"os": "linux", "architecture": device.architecture},
                "Lifecycle": lifecycle,
                "Artifacts": artifacts,
            }
        )
    if not manifests:
        manifests.append(
            {
                "Platform": {"os": "linux"},
                "Lifecycle": {
                    "Setenv": dict(environment),
                    "Run": {"Script": "python3 -m {}".format(spec.module)},
                },
                "Artifacts": [code],
            }
        )
    recipe: Dict[str, Any] = {
        "RecipeFormatVersion": RECIPE_FORMAT_VERSION,
        "ComponentName": name,
        "ComponentVersion": version,
        "ComponentDescription": "edge-agent {} function ({}) as a native component".format(
            spec.id, spec.module
        ),
        "ComponentPublisher": topology.name,
    }
    dependencies: Dict[str, Any] = {}
    if SECRET_MANAGER in acl:
        dependencies[SECRET_MANAGER] = {
            "VersionRequirement": SECRET_MANAGER_REQUIREMENT,
            "DependencyType": "HARD",
        }
    if SHADOW_MANAGER in acl:
        dependencies[SHADOW_MANAGER] = {
            "VersionRequirement": SHADOW_MANAGER_REQUIREMENT,
            "DependencyType": "SOFT",
        }
    if dependencies:
        recipe["ComponentDependencies"] = dependencies
    recipe["ComponentConfiguration"] = {"DefaultConfiguration": default_configuration(spec)}
    recipe["Manifests"] = manifests
    return recipe


def access_control_errors(acl: Mapping[str, Any]) -> List[str]:
    """Structural problems of an ``accessControl`` configuration value."""
    errors: List[str] = []
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
    return errors


def recipe_errors(recipe: Mapping[str, Any]) -> List[str]:
    """Structural checks of a recipe (the service validates recipes only on upload)."""
    errors: List[str] = []
    if recipe.get("RecipeFormatVersion") != RECIPE_FORMAT_VERSION:
        errors.append("RecipeFormatVersion must be {}".format(RECIPE_FORMAT_VERSION))
    if not _COMPONENT_NAME.fullmatch(str(recipe.get("ComponentName", ""))):
        errors.append("ComponentName {!r} is not valid".format(recipe.get("ComponentName")))
    if not SEMVER.fullmatch(str(recipe.get("ComponentVersion", ""))):
        errors.append(
            "ComponentVersion {!r} is not major.minor.patch".format(recipe.get("ComponentVersion"))
        )
    for dep, spec in (recipe.get("ComponentDependencies") or {}).items():
        if not isinstance(spec, dict) or not spec.get("VersionRequirement"):
            errors.append("dependency {} needs a VersionRequirement".format(dep))
        if spec.get("DependencyType", "HARD") not in ("HARD", "SOFT"):
            errors.append("dependency {}: DependencyType must be HARD or SOFT".format(dep))
    defaults = recipe.get("ComponentConfiguration", {}).get("DefaultConfiguration", {})
    errors += access_control_errors(defaults.get(ACCESS_CONTROL, {}))
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
                continue
            # an unknown key would reach the process as the literal "{configuration:/x}"
            for pointer in re.findall(r"\{configuration:/([^:}]+)\}", value):
                if pointer.split("/")[0] not in defaults:
                    errors.append(
                        "Setenv {} refers to configuration /{} that has no default".format(
                            key, pointer
                        )
                    )
        for artifact in manifest.get("Artifacts") or []:
            if not str(artifact.get("URI", "")).startswith("s3://"):
                errors.append("artifact URI {!r} is not s3://".format(artifact.get("URI")))
            if artifact.get("Unarchive", "NONE") not in ("NONE", "ZIP"):
                errors.append("artifact Unarchive must be NONE or ZIP")
    return errors
