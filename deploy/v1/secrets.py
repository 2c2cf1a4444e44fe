"""The ServiceNow secret in Secrets Manager: read its value from a file or a prompt, ensure it exists.

The value never comes from the command line, and errors name keys, never values.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from agent.topology import GroupTopology

from ..context import RunContext, section
from ..errors import DeployError
from ..naming import secret_arn


def parse_secret_value(text: str, source: str) -> Dict[str, str]:
    """The ServiceNow secret: ``{"username", "password"}`` or OAuth ``client_id``/``client_secret``.

    Errors name the missing keys, never a value.
    """
    try:
        value = json.loads(text)
    except ValueError:
        raise DeployError(
            '{} is not JSON (expected {{"username": ..., "password": ...}})'.format(source)
        )
    if not isinstance(value, dict):
        raise DeployError("{} must hold a JSON object".format(source))
    basic = all(isinstance(value.get(k), str) and value.get(k) for k in ("username", "password"))
    oauth = all(
        isinstance(value.get(k), str) and value.get(k) for k in ("client_id", "client_secret")
    )
    if not (basic or oauth):
        raise DeployError(
            '{} needs non-empty "username" and "password" (or "client_id" and '
            '"client_secret" for OAuth); it has keys: {}'.format(
                source, ", ".join(sorted(value)) or "none"
            )
        )
    return {str(k): v for k, v in value.items()}


def read_secret_value(
    path: Optional[Path],
    prompt: Callable[[str], str] = getpass.getpass,
    interactive: Optional[bool] = None,
    out: Callable[[str], None] = print,
) -> Dict[str, str]:
    """From a file, else from a hidden prompt. Never from the command line."""
    if path is not None:
        path = Path(path)
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except OSError as exc:
            raise DeployError("cannot read --secret-file {}: {}".format(path, exc.strerror))
        if mode & 0o077:
            out("warning: {} is readable by other users; chmod 600 it".format(path))
        return parse_secret_value(text, str(path))
    interactive = sys.stdin.isatty() if interactive is None else interactive
    if not interactive:
        raise DeployError(
            "--create-secret needs --secret-file FILE or an interactive terminal to prompt",
            hint='FILE holds {"username": "...", "password": "..."}; keep it chmod 600',
        )
    username = prompt("ServiceNow username: ")
    password = prompt("ServiceNow password: ")
    return parse_secret_value(json.dumps({"username": username, "password": password}), "prompt")


class Secrets:
    """Ensure every secret resource of the topology exists in Secrets Manager."""

    def __init__(
        self,
        ctx: RunContext,
        topology: GroupTopology,
        reader: Callable[[Optional[Path]], Dict[str, str]],
        greengrass_v1: bool = True,
    ) -> None:
        self.ctx = ctx
        self.topology = topology
        self.reader = reader
        # V1's default resource-access policy covers secrets named greengrass-*; a V2
        # core's token exchange role is granted the exact ARN instead.
        self.greengrass_v1 = greengrass_v1

    def ensure(self, create: bool, secret_file: Optional[Path]) -> Dict[str, str]:
        """Resource id -> secret ARN. ``create``: make missing secrets (value from the reader)."""
        ctx = self.ctx
        secrets = section(ctx.state, "secrets")
        arns: Dict[str, str] = {}
        value: Optional[Dict[str, str]] = None
        for secret in self.topology.secrets:
            recorded = secrets.get(secret.id) if isinstance(secrets.get(secret.id), dict) else None
            if self.greengrass_v1 and not secret.secret_name.startswith("greengrass-"):
                ctx.out(
                    "warning: secret {!r} does not start with 'greengrass-': the default "
                    "Greengrass resource-access policy will not cover it".format(secret.secret_name)
                )
            if recorded:
                dry: Any = {"ARN": recorded["arn"]}
            elif create:
                dry = None
            else:
                dry = {"ARN": secret_arn(ctx.region, ctx.account, secret.secret_name)}
            found = ctx.api.find(
                "secretsmanager", "DescribeSecret", {"SecretId": secret.secret_name}, dry=dry
            )
            if found and found.get("DeletedDate"):  # the core could not fetch it
                raise DeployError(
                    "secret {} is scheduled for deletion; the core could not fetch it".format(
                        secret.secret_name
                    ),
                    hint="aws secretsmanager restore-secret --secret-id " + secret.secret_name,
                )
            if found:
                arn = found["ARN"]
                created = bool(recorded and recorded.get("created"))
                if create:
                    ctx.out(
                        "secret {}: exists, value left unchanged (update it in Secrets "
                        "Manager; the core gets it on the next deployment)".format(
                            secret.secret_name
                        )
                    )
            elif create:
                if value is None:
                    value = self.reader(secret_file)
                response = ctx.api.call(
                    "secretsmanager",
                    "CreateSecret",
                    {
                        "Name": secret.secret_name,
                        "Description": "ServiceNow credentials for the {} Greengrass group".format(
                            self.topology.name
                        ),
                        "SecretString": json.dumps(value),
                    },
                    dry={"ARN": secret_arn(ctx.region, ctx.account, secret.secret_name)},
                )
                arn = response["ARN"]
                created = True
                ctx.note("secret {}: created".format(secret.secret_name))
            else:
                raise DeployError(
                    "secret {!r} does not exist in {}".format(secret.secret_name, ctx.region),
                    hint="create it: add --create-secret --secret-file FILE "
                    '(FILE: {"username": ..., "password": ...}, chmod 600), or pass '
                    "--secret-name NAME",
                )
            secrets[secret.id] = {"name": secret.secret_name, "arn": arn, "created": created}
            arns[secret.id] = arn
            ctx.state.save()
        return arns

    def destroy(self, delete_secret: bool, recovery_days: int) -> None:
        """Schedule deletion (``delete_secret``) or keep and say so."""
        ctx, state = self.ctx, self.ctx.state
        for rid, secret in list(state.get("secrets", {}).items()):
            if delete_secret:
                ctx.delete_if_present(
                    "secretsmanager",
                    "DeleteSecret",
                    {"SecretId": secret["arn"], "RecoveryWindowInDays": recovery_days},
                )
                ctx.note(
                    "secret {}: scheduled for deletion in {} days".format(
                        secret["name"], recovery_days
                    )
                )
                del state["secrets"][rid]
            else:
                ctx.out("secret {}: kept (--delete-secret to delete it)".format(secret["name"]))
        if not state.get("secrets"):
            state.pop("secrets", None)
