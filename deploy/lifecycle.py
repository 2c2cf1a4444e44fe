"""What the platforms' lifecycles mean for the deploy commands: the command names, the V1 notice.

``deploy`` is organised by target: ``deploy v2 plan|up|status|destroy|package`` (Greengrass
V2, what a new device uses), then ``deploy v1 ...``. The names used before that split
(``plan``, ``up``, ``v2-plan``...) still work: :func:`canonical_argv` maps them to the new
ones and says so in one line.

Greengrass V1 and its Lambda runtime are past their end (AWS "Greengrass V1 maintenance
policy": discontinued on 2026-10-07, V1 resources can no longer be accessed; AWS Lambda
"Runtime deprecation policy": python3.8 deprecated 2024-10-14, function creation blocked
from 2025-02-28, updates from 2025-03-31). Every V1 command prints :func:`v1_notice` before
it does anything, and the V1 deployer asks AWS whether this account still has V1
(:func:`check_v1_available`) before it creates or reads anything: a refusal becomes one
line naming the V2 command, exit 1.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import DeployError

V1_END = "2026-10-07"
PY38_DEPRECATED = "2024-10-14"
PY38_CREATE_BLOCKED = "2025-02-28"

# The names before the split by target -> (target, command).
ALIASES: Dict[str, Tuple[str, str]] = {
    "v2-plan": ("v2", "plan"),
    "v2-up": ("v2", "up"),
    "v2-status": ("v2", "status"),
    "v2-destroy": ("v2", "destroy"),
    "plan": ("v1", "plan"),
    "up": ("v1", "up"),
    "status": ("v1", "status"),
    "reset": ("v1", "reset"),
    "destroy": ("v1", "destroy"),
    "render-config": ("v1", "render-config"),
    "package": ("v1", "package"),  # "package --runtime v2" is "v2 package"
}

# What to run on V2 instead of each V1 command.
V2_INSTEAD = {
    "plan": "v2 plan",
    "up": "v2 up",
    "status": "v2 status",
    "reset": "v2 destroy",
    "destroy": "v2 destroy",
    "package": "v2 package",
    "render-config": "v2 plan",
}


def _runtime_option(argv: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """``package``'s old ``--runtime`` value, and the arguments without it."""
    rest: List[str] = []
    runtime = None
    skip = False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--runtime" and index + 1 < len(argv):
            runtime, skip = argv[index + 1], True
        elif arg.startswith("--runtime="):
            runtime = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return runtime, rest


def canonical_argv(argv: Sequence[str]) -> Tuple[List[str], Optional[str]]:
    """(the arguments with an old command name replaced by the new one, the note to print).

    ``package --runtime v1|v2`` becomes ``v1|v2 package``; any other runtime is left for
    the parser to refuse.
    """
    argv = list(argv)
    if not argv or argv[0] not in ALIASES:
        return argv, None
    old = argv[0]
    target, command = ALIASES[old]
    rest = argv[1:]
    shown_old = old
    if old == "package":
        runtime, without = _runtime_option(rest)
        if runtime in ("v1", "v2"):
            target, rest = runtime, without
            shown_old = "package --runtime {}".format(runtime)
        elif runtime is not None:
            return argv, None  # let the parser say what is wrong
    note = "note: 'deploy {}' is now 'deploy {} {}' (the old name still works)".format(
        shown_old, target, command
    )
    return [target, command] + rest, note


def v1_notice(command: str) -> str:
    """What every V1 command says first (stderr), before any AWS call."""
    return (
        "note: AWS ended Greengrass V1 on {end}, and AWS Lambda no longer creates python3.8 "
        "functions (deprecated {dep}, creation blocked from {blocked}): 'deploy v1 {cmd}' "
        "works only for an account that still has V1; for a device today use "
        "'deploy {instead}' (deploy/README.md)".format(
            end=V1_END,
            dep=PY38_DEPRECATED,
            blocked=PY38_CREATE_BLOCKED,
            cmd=command,
            instead=V2_INSTEAD.get(command, "v2 up"),
        )
    )


def v1_refused(operation: str, code: str, message: str, command: str) -> str:
    """One line for a V1 (or python3.8 Lambda) call AWS refused."""
    detail = " ".join("{}: {}".format(code, message).split()) if code else message
    return (
        "AWS refused {op} ({detail}): this account has no Greengrass V1 any more (ended {end}) "
        "or cannot create python3.8 functions (blocked from {blocked}); use 'deploy {instead}'"
    ).format(
        op=operation,
        detail=detail,
        end=V1_END,
        blocked=PY38_CREATE_BLOCKED,
        instead=V2_INSTEAD.get(command, "v2 up"),
    )


def check_v1_available(api: Any, command: str) -> None:
    """Ask AWS whether this account still has Greengrass V1 (one ``ListGroups``), before any
    other call: a refusal raises :class:`V1Unavailable` (one line, exit 1).

    Rejected credentials and throttling keep their own errors (they say nothing about V1);
    any other refusal, or a V1 endpoint that no longer answers, is taken as V1 being gone.
    """
    from botocore.exceptions import ClientError

    from .awsapi import CREDENTIAL_CODES, THROTTLE_CODES, error_code, error_message

    try:
        api.call("greengrass", "ListGroups", {"MaxResults": "1"}, dry={"Groups": []})
    except ClientError as exc:
        code = error_code(exc)
        if code in CREDENTIAL_CODES or code in THROTTLE_CODES:
            raise
        raise V1Unavailable(
            v1_refused("greengrass.ListGroups", code, error_message(exc), command)
        ) from None
    except DeployError as exc:
        if "cannot reach AWS" not in str(exc):
            raise
        raise V1Unavailable(
            v1_refused("greengrass.ListGroups", "", str(exc).splitlines()[0], command)
        ) from None


def lambda_runtime_refused(exc: Any, command: str) -> Optional[str]:
    """The one line for Lambda refusing the python3.8 runtime, or None for another error.

    AWS answers a create or update of a blocked runtime with
    ``InvalidParameterValueException`` whose message names the runtime ("The runtime
    parameter of python3.8 is no longer supported for creating or updating AWS Lambda
    functions").
    """
    from .awsapi import error_code, error_message

    code, message = error_code(exc), error_message(exc)
    if code == "InvalidParameterValueException" and "runtime" in message.lower():
        return v1_refused("lambda." + exc.operation_name, code, message, command)
    return None


class V1Unavailable(DeployError):
    """AWS refused Greengrass V1 (or the python3.8 runtime) for this account: one line, exit 1."""
