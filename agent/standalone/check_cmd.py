"""``edge-agent check-servicenow``: test the instance, the credentials and the roles before the
first breach (the checks are :mod:`agent.servicenow.check`).

The configuration is the anomaly function's: its variables from the
environment (as on a device, in the function's environment), overridden by
``--set NAME=VALUE`` and ``--snow-url``; the secret from ``--secret-file``,
else ``$EDGE_AGENT_SECRET_FILE``, else the Greengrass runtime's secret
``snowSecretId`` (on a core, in the component's environment).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict

from ..credentials import Credentials
from ..errors import AgentError, ConfigError

USAGE = 2
DESCRIPTION = (
    "Check ServiceNow before the first breach: name, TLS, Table API, credentials, roles, "
    "the CI, Event Management; stops at the first failure with the fix."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("--snow-url", metavar="URL", help="the instance (default: snowUrl)")
    parser.add_argument(
        "--secret-file",
        metavar="FILE",
        help='the ServiceNow secret as stored in Secrets Manager: {"username": ..., '
        '"password": ...} or an OAuth client (default: $EDGE_AGENT_SECRET_FILE, else the '
        "deployed secret snowSecretId through Greengrass)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a function variable, e.g. --set snowCmdbCi={device} --set snowSink=event",
    )
    parser.add_argument(
        "--create-test-incident",
        action="store_true",
        help="also open an incident marked as a test, add a work note, resolve it; print its number",
    )


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..config import AnomalySettings
    from ..servicenow.check import ServiceNowCheck
    from .arguments import check_secret_file, parse_assignments

    try:
        variables: Dict[str, str] = {k: v for k, v in os.environ.items()}
        variables.update(parse_assignments(args.set))
        if args.snow_url:
            variables["snowUrl"] = args.snow_url
        if not variables.get("snowUrl"):
            raise ConfigError("no ServiceNow instance: give --snow-url URL (or set snowUrl)")
        settings = AnomalySettings.from_mapping(variables)
        secret_file = args.secret_file or os.environ.get("EDGE_AGENT_SECRET_FILE")
        if secret_file:
            credentials = check_secret_file(secret_file)
        else:
            credentials = _deployed_secret(settings.secret_id)
    except (ValueError, AgentError) as exc:
        print("edge-agent check-servicenow: {}".format(exc), file=sys.stderr)
        return USAGE

    def say(line: str) -> None:
        print(line, flush=True)

    say("Checking {} with the {} sink".format(settings.snow_url, settings.sink))
    return ServiceNowCheck(settings, credentials, say).run(args.create_test_incident)


def _deployed_secret(secret_id: str) -> Credentials:
    """The secret the deployed anomaly function reads, through the Greengrass runtime."""
    from ..greengrass import open_runtime
    from ..names import ANOMALY_FUNCTION_ID

    try:
        runtime = open_runtime(ANOMALY_FUNCTION_ID)
        text = runtime.get_secret(secret_id)
    except Exception as exc:  # no core here, no access: say how to give the secret instead
        raise ConfigError(
            "cannot read the deployed secret {} ({}); give --secret-file FILE".format(
                secret_id, type(exc).__name__
            )
        ) from None
    return Credentials.from_secret_string(text, "secret " + secret_id)
