"""Check documents against botocore's service models and AWS's documented rules, offline.

``botocore.validate.ParamValidator`` checks required members, types and
minimum lengths. It does not check ``pattern``, ``enum`` or ``max``, so
:func:`validate_params` adds those from the same model, which is how a
placeholder ARN that would be rejected by the service is caught before any
call. No credentials or network are needed: the models ship with botocore.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Dict, List, Mapping, Tuple

import botocore.session
from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator

from .errors import DeployError


@functools.lru_cache(maxsize=None)
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.lru_cache(maxsize=None)
def operation_model(service: str, operation: str) -> OperationModel:
    return _session().get_service_model(service).operation_model(operation)


def _extra_checks(value: Any, shape: Shape, path: str, errors: List[str]) -> None:
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, Mapping):
        for key, member_value in value.items():
            member = shape.members.get(key)
            if member is not None:
                _extra_checks(member_value, member, "{}.{}".format(path, key), errors)
    elif shape.type_name == "list" and isinstance(value, (list, tuple)):
        if "max" in meta and len(value) > meta["max"]:
            errors.append("{}: {} items, at most {} allowed".format(path, len(value), meta["max"]))
        for i, item in enumerate(value):
            _extra_checks(item, shape.member, "{}[{}]".format(path, i), errors)
    elif shape.type_name == "map" and isinstance(value, Mapping):
        for key, item in value.items():
            _extra_checks(key, shape.key, "{}<key {!r}>".format(path, key), errors)
            _extra_checks(item, shape.value, "{}[{!r}]".format(path, key), errors)
    elif shape.type_name == "string" and isinstance(value, str):
        enum = getattr(shape, "enum", None) or []
        if enum and value not in enum:
            errors.append("{}: {!r} is not one of {}".format(path, value, ", ".join(enum)))
        if "max" in meta and len(value) > meta["max"]:
            errors.append("{}: longer than {} characters".format(path, meta["max"]))
        pattern = meta.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            errors.append("{}: {!r} does not match the pattern {}".format(path, value, pattern))


def validation_errors(service: str, operation: str, params: Mapping[str, Any]) -> List[str]:
    """Every problem botocore's model finds with ``params``; empty when valid."""
    model = operation_model(service, operation)
    report = ParamValidator().validate(dict(params), model.input_shape)
    errors = [line for line in report.generate_report().splitlines() if line.strip()]
    if errors and errors[0].startswith("Invalid "):
        errors = errors[1:] or errors
    if model.input_shape is not None:
        _extra_checks(params, model.input_shape, operation, errors)
    return errors


def validate_params(service: str, operation: str, params: Mapping[str, Any]) -> None:
    """Raise :class:`DeployError` listing what botocore's model rejects."""
    errors = validation_errors(service, operation, params)
    if errors:
        raise DeployError(
            "{}.{} parameters do not match the service model:\n  {}".format(
                service, operation, "\n  ".join(errors)
            )
        )


# Greengrass's own model has no ARN patterns, so the ARNs it takes are checked
# against the Lambda model's function-name pattern and these shapes.
_THING_ARN = re.compile(r"arn:aws[a-z-]*:iot:[a-z0-9-]+:\d{12}:thing/[a-zA-Z0-9:_-]+")
_CERT_ARN = re.compile(r"arn:aws[a-z-]*:iot:[a-z0-9-]+:\d{12}:cert/[0-9a-f]{64}")
_SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}"
)


def check_thing_arn(arn: str) -> None:
    if not _THING_ARN.fullmatch(arn):
        raise DeployError("{!r} is not an AWS IoT thing ARN".format(arn))


def check_certificate_arn(arn: str) -> None:
    if not _CERT_ARN.fullmatch(arn):
        raise DeployError("{!r} is not an AWS IoT certificate ARN".format(arn))


def check_secret_arn(arn: str) -> None:
    if not _SECRET_ARN.fullmatch(arn):
        raise DeployError("{!r} is not a Secrets Manager secret ARN".format(arn))


# --- AWS's documented rules -------------------------------------------------------------
#
# What the service models cannot say but AWS documents, and a core enforces only at
# deployment time ("group config is invalid") or when it starts a function ("unable to
# start lambda container"). ``plan`` and ``up`` refuse such documents up front, naming
# the resource, the rule and where AWS says so.

# AWS IoT Greengrass V1 Developer Guide, "Access Local Resources with Lambda Functions and
# Connectors" (access-local-resources) and its CLI tutorial (lra-cli).
DOC_LOCAL_RESOURCES = (
    'AWS IoT Greengrass V1 Developer Guide, "Access local resources with Lambda functions '
    'and connectors"'
)
# "Working with Secret Resources" (secrets-using), under "Deploy secrets to the core".
DOC_SECRETS = (
    'AWS IoT Greengrass V1 Developer Guide, "Deploy secrets to the core" / '
    '"Working with secret resources"'
)
# "Run Lambda functions on the AWS IoT Greengrass core": "Reference Lambda functions by
# alias or version"; subscriptions name functions the same way.
DOC_LAMBDA_VERSIONS = (
    'AWS IoT Greengrass V1 Developer Guide, "Run Lambda functions on the core": '
    '"Reference Lambda functions by alias or version"'
)
# "Cross-service confused deputy prevention" (V1 and V2 guides), with the trust policies
# of "Greengrass service role" and "Greengrass group role".
DOC_CONFUSED_DEPUTY = (
    'AWS IoT Greengrass Developer Guide, "Cross-service confused deputy prevention"'
)

# Volume sources may be anywhere on the root file system except under these
# (a core cannot bind-mount them into the Lambda container).
FORBIDDEN_VOLUME_SOURCES = ("/sys", "/dev", "/var")
# ...with one exception: /dev/shm may be a volume (only), and only read-write.
SHARED_MEMORY = "/dev/shm"
# Volumes under the host's /proc (core v1.6+) are read-only, and must not be mounted
# over the container's own /proc.
PROC = "/proc"
_RESOURCE_ID = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
_CONNECTOR_ARN = re.compile(
    r"arn:aws[a-z-]*:greengrass:[a-z0-9-]+::/connectors/[\w-]+/versions/\d+"
)
GREENGRASS_ENDPOINTS = ("cloud", "GGShadowService")
SAME_REFERENCE_RULE = (
    "A Greengrass group references a function by a published version or an alias, "
    "never $LATEST and never unqualified"
)


class RuleViolation:
    """One broken rule: what, which rule, where AWS documents it, what to do."""

    def __init__(self, subject: str, problem: str, rule: str, doc: str, hint: str = "") -> None:
        self.subject = subject
        self.problem = problem
        self.rule = rule
        self.doc = doc
        self.hint = hint

    def __str__(self) -> str:
        text = "{}: {}. {} ({})".format(self.subject, self.problem, self.rule, self.doc)
        return text + (". " + self.hint[:1].upper() + self.hint[1:] if self.hint else "")

    def __repr__(self) -> str:
        return "RuleViolation({!r})".format(str(self))


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _path_problem(path: str) -> str:
    """Why ``path`` is not a clean absolute path, or ''."""
    if not path.startswith("/"):
        return "{!r} is not an absolute path".format(path)
    parts = path.split("/")[1:]
    if path != "/" and any(p in ("", ".", "..") for p in parts):
        return "{!r} is not a normalized path (no '.', '..', '//' or trailing '/')".format(path)
    return ""


def _volume_violations(rid: str, data: Mapping[str, Any]) -> List[RuleViolation]:
    subject = "resource {!r}".format(rid)
    found: List[RuleViolation] = []
    source = str(data.get("SourcePath", ""))
    destination = str(data.get("DestinationPath", ""))
    for label, path in (("source", source), ("destination", destination)):
        problem = _path_problem(path)
        if problem:
            found.append(
                RuleViolation(
                    subject,
                    "volume {} {}".format(label, problem),
                    "Volume source and destination paths are absolute paths",
                    DOC_LOCAL_RESOURCES,
                )
            )
    if not _is_under(source, SHARED_MEMORY):  # the documented exception
        for root in FORBIDDEN_VOLUME_SOURCES:
            if _is_under(source, root):
                found.append(
                    RuleViolation(
                        subject,
                        "volume source {} is under {}".format(source, root),
                        "A local volume resource may be any directory on the root file system "
                        'except under /sys, /dev or /var; the core fails with "unable to start '
                        'lambda container"',
                        DOC_LOCAL_RESOURCES,
                        hint="use a directory such as /opt/edge-agent/state (deploy "
                        "--state-dir DIR), created on the Pi for the functions' uid/gid",
                    )
                )
    if destination == "/":
        found.append(
            RuleViolation(
                subject,
                "volume destination is /",
                "The destination is a directory inside the Lambda container, not its root",
                DOC_LOCAL_RESOURCES,
            )
        )
    if _is_under(source, PROC) and _is_under(destination, PROC):
        found.append(
            RuleViolation(
                subject,
                "volume destination {} is under /proc".format(destination),
                "The container has its own /proc: a /proc volume needs another destination "
                "(e.g. /host-proc)",
                DOC_LOCAL_RESOURCES,
            )
        )
    return found


def _device_violations(rid: str, data: Mapping[str, Any]) -> List[RuleViolation]:
    source = str(data.get("SourcePath", ""))
    problem = _path_problem(source)
    if problem or not source.startswith("/dev/") or _is_under(source, SHARED_MEMORY):
        return [
            RuleViolation(
                "resource {!r}".format(rid),
                "device source " + problem
                if problem
                else "device source {} is not a device file under /dev".format(source),
                "A local device resource is a character or block device under /dev "
                "(/dev/shm can only be a volume)",
                DOC_LOCAL_RESOURCES,
            )
        ]
    return []


def _lambda_arn_problem(arn: str) -> str:
    """Why ``arn`` is not a version- or alias-qualified Lambda ARN, or ''."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[2] != "lambda" or parts[5] != "function":
        return "{!r} is not a Lambda function ARN".format(arn)
    if len(parts) == 7 or parts[7] == "":
        return "{} is unqualified".format(arn)
    if parts[7] == "$LATEST":
        return "{} points at $LATEST".format(arn)
    pattern = operation_model("lambda", "GetFunction").input_shape.members["FunctionName"]
    if len(parts) != 8 or not re.fullmatch(pattern.metadata["pattern"], arn):
        return "{!r} is not a valid qualified Lambda ARN".format(arn)
    return ""


def _endpoint_violations(sid: str, side: str, endpoint: str) -> List[RuleViolation]:
    if endpoint in GREENGRASS_ENDPOINTS:
        return []
    subject = "subscription {!r}".format(sid)
    if ":lambda:" in endpoint:
        problem = _lambda_arn_problem(endpoint)
        if not problem:
            return []
        return [
            RuleViolation(
                subject, "{} {}".format(side, problem), SAME_REFERENCE_RULE, DOC_LAMBDA_VERSIONS
            )
        ]
    if _THING_ARN.fullmatch(endpoint) or _CONNECTOR_ARN.fullmatch(endpoint):
        return []
    return [
        RuleViolation(
            subject,
            "{} {!r} is neither a qualified function ARN, a device (thing) ARN, a connector, "
            "'cloud' nor 'GGShadowService'".format(side, endpoint),
            "Subscriptions route between functions, devices, connectors, the cloud and the "
            "local shadow service",
            DOC_LAMBDA_VERSIONS,
        )
    ]


def _resource_violations(
    resource_doc: Mapping[str, Any],
) -> Tuple[List[RuleViolation], Dict[str, str], Dict[str, str]]:
    """(violations, resource id -> kind, volume id -> source path)."""
    found: List[RuleViolation] = []
    kinds: Dict[str, str] = {}
    volume_sources: Dict[str, str] = {}
    secret_arns: Dict[str, str] = {}
    for resource in resource_doc.get("Resources", []):
        rid = str(resource.get("Id", ""))
        for key in ("Id", "Name"):
            if not _RESOURCE_ID.fullmatch(str(resource.get(key, ""))):
                found.append(
                    RuleViolation(
                        "resource {!r}".format(rid),
                        "{} {!r} does not match [a-zA-Z0-9:_-]{{1,128}}".format(
                            key, resource.get(key)
                        ),
                        "Resource ids and names use letters, digits, ':', '_' and '-', at most 128",
                        DOC_LOCAL_RESOURCES,
                    )
                )
        container = resource.get("ResourceDataContainer", {})
        if "LocalVolumeResourceData" in container:
            kinds[rid] = "volume"
            data = container["LocalVolumeResourceData"]
            volume_sources[rid] = str(data.get("SourcePath", ""))
            found += _volume_violations(rid, data)
        elif "LocalDeviceResourceData" in container:
            kinds[rid] = "device"
            found += _device_violations(rid, container["LocalDeviceResourceData"])
        elif "SecretsManagerSecretResourceData" in container:
            kinds[rid] = "secret"
            arn = str(container["SecretsManagerSecretResourceData"].get("ARN", ""))
            if arn in secret_arns:
                found.append(
                    RuleViolation(
                        "resource {!r}".format(rid),
                        "secret {} is already resource {!r}".format(arn, secret_arns[arn]),
                        "A group can reference a secret only once",
                        DOC_SECRETS,
                    )
                )
            secret_arns.setdefault(arn, rid)
    return found, kinds, volume_sources


def _access_violations(
    fid: str, policy: Mapping[str, Any], kinds: Mapping[str, str], sources: Mapping[str, str]
) -> List[RuleViolation]:
    rid, permission = policy.get("ResourceId"), policy.get("Permission", "ro")
    subject = "function {!r}, resource {!r}".format(fid, rid)
    kind, source = kinds.get(str(rid)), sources.get(str(rid), "")
    if kind == "secret" and permission != "ro":
        return [
            RuleViolation(
                subject,
                "permission {!r} on a secret".format(permission),
                "Only 'ro' is supported for secret resources",
                DOC_SECRETS,
            )
        ]
    if kind == "volume" and _is_under(source, PROC) and permission != "ro":
        return [
            RuleViolation(
                subject,
                "permission {!r} on a /proc volume".format(permission),
                "Volumes under /proc are read-only",
                DOC_LOCAL_RESOURCES,
            )
        ]
    if kind == "volume" and _is_under(source, SHARED_MEMORY) and permission != "rw":
        return [
            RuleViolation(
                subject,
                "permission {!r} on /dev/shm".format(permission),
                "/dev/shm can only be granted read-write",
                DOC_LOCAL_RESOURCES,
            )
        ]
    return []


def v1_rule_violations(
    resource_doc: Mapping[str, Any],
    function_doc: Mapping[str, Any],
    subscription_doc: Mapping[str, Any],
) -> List[RuleViolation]:
    """Every documented Greengrass V1 rule these definition documents break."""
    found, kinds, sources = _resource_violations(resource_doc)
    for function in function_doc.get("Functions", []):
        fid = str(function.get("Id", ""))
        problem = _lambda_arn_problem(str(function.get("FunctionArn", "")))
        if problem:
            found.append(
                RuleViolation(
                    "function {!r}".format(fid), problem, SAME_REFERENCE_RULE, DOC_LAMBDA_VERSIONS
                )
            )
        environment = function.get("FunctionConfiguration", {}).get("Environment", {})
        for policy in environment.get("ResourceAccessPolicies", []):
            found += _access_violations(fid, policy, kinds, sources)
    for sub in subscription_doc.get("Subscriptions", []):
        sid = str(sub.get("Id", ""))
        found += _endpoint_violations(sid, "source", str(sub.get("Source", "")))
        found += _endpoint_violations(sid, "target", str(sub.get("Target", "")))
    return found


def raise_violations(found: List[RuleViolation], what: str) -> None:
    if found:
        raise DeployError(
            "{} would be refused ({} of AWS's documented rules broken):\n  {}".format(
                what, len(found), "\n  ".join(str(v) for v in found)
            )
        )


# Roles a service assumes on the account's behalf, and the condition keys AWS documents
# for them. Greengrass (service role, group role): aws:SourceArn and aws:SourceAccount.
# Lambda (execution role): aws:SourceAccount. credentials.iot.amazonaws.com (the V2
# token exchange role) is absent on purpose: AWS documents no source keys for the IoT
# credentials provider; that role is reachable only through the core's certificate and
# its IoT policy's iot:AssumeRoleWithCertificate on one role alias.
CONFUSED_DEPUTY_KEYS = {
    "greengrass.amazonaws.com": ("aws:SourceArn", "aws:SourceAccount"),
    "lambda.amazonaws.com": ("aws:SourceAccount",),
}


def _condition_values(condition: Mapping[str, Any], key: str) -> List[str]:
    values: List[str] = []
    for operator_values in condition.values():
        if isinstance(operator_values, Mapping):
            for name, value in operator_values.items():
                if name.lower() == key.lower():
                    values += [value] if isinstance(value, str) else list(value)
    return values


def trust_policy_violations(
    role_name: str, document: Mapping[str, Any], account: str
) -> List[RuleViolation]:
    """A trust policy that lets a service assume the role for *any* account's resources."""
    found: List[RuleViolation] = []
    for statement in document.get("Statement", []):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, Mapping) else []
        services = [services] if isinstance(services, str) else list(services)
        condition = statement.get("Condition", {}) or {}
        for service in services:
            for key in CONFUSED_DEPUTY_KEYS.get(service, ()):
                values = _condition_values(condition, key)
                ok = bool(values) and all(
                    (v == account if key == "aws:SourceAccount" else ":{}:".format(account) in v)
                    for v in values
                )
                if not ok:
                    found.append(
                        RuleViolation(
                            "role {!r}".format(role_name),
                            "its trust policy lets {} assume it without {} = account {}".format(
                                service, key, account
                            ),
                            "Trust policies for service principals carry aws:SourceArn / "
                            "aws:SourceAccount conditions against the confused deputy problem",
                            DOC_CONFUSED_DEPUTY,
                        )
                    )
    return found
