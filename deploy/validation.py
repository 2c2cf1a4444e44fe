"""Check request documents against botocore's own service models, offline.

``botocore.validate.ParamValidator`` checks required members, types and
minimum lengths. It does not check ``pattern``, ``enum`` or ``max``, so
:func:`validate_params` adds those from the same model, which is how a
placeholder ARN that would be rejected by the service is caught before any
call. No credentials or network are needed: the models ship with botocore.
"""

from __future__ import annotations

import functools
import re
from typing import Any, List, Mapping

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


def check_qualified_lambda_arn(arn: str) -> None:
    """A Greengrass V1 function ARN: a full Lambda ARN with a version or alias, not $LATEST."""
    pattern = operation_model("lambda", "GetFunction").input_shape.members["FunctionName"]
    pattern_text = pattern.metadata["pattern"]
    parts = arn.split(":")
    if not re.fullmatch(pattern_text, arn) or len(parts) != 8 or parts[2] != "lambda":
        raise DeployError("{!r} is not a qualified Lambda function ARN".format(arn))
    if parts[7] in ("", "$LATEST"):
        raise DeployError(
            "{!r}: Greengrass needs a published version or alias, never $LATEST".format(arn)
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
