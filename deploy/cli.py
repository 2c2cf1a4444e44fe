"""``python -m deploy <command>`` (and ``edge-agent deploy <command>``).

Commands, by target: ``v2 plan|up|status|destroy|package`` (Greengrass V2, first), ``v1
plan|up|status|reset|destroy|package|render-config`` (Greengrass V1, ended 2026-10-07), and
``set``/``get`` (a device's run-time variables, either target). The names used before
(``plan``, ``v2 up``...) are aliases (``deploy.lifecycle``). See deploy/README.md. Exit codes:
0 ok, 1 error, 2 usage, 3 deployment failed, 4 deployment timed out, 130 interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, List, Optional

from agent.live_settings import RUNTIME_VARIABLES
from agent.topology import DEFAULT_SECRET_NAME, GroupTopology

from .commands import COMMANDS, build_topology, cmd_render_config
from .errors import DeployError
from .lifecycle import ALIASES, V1_END, canonical_argv, lambda_runtime_refused, v1_notice
from .naming import DEFAULT_ALIAS, DEFAULT_DEVICE_PYTHON, DEFAULT_NUCLEUS_VERSION, TARGET_PYTHON
from .state import DEFAULT_STATE_PATH
from .wheels import ARCHITECTURES, DEFAULT_ARCHITECTURES

PROG = "deploy"


def _out(text: str) -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- options -----------------------------------------------------------------------


def _add_topology_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("topology (defaults: agent.topology.default_topology())")
    g.add_argument(
        "--topology",
        metavar="MODULE:NAME",
        help="a GroupTopology (or a function returning one) instead of the default",
    )
    g.add_argument(
        "--secret-name", help="Secrets Manager name (default {})".format(DEFAULT_SECRET_NAME)
    )
    g.add_argument(
        "--state-dir",
        metavar="DIR",
        help="host directory for episode state and the outbox: the state volume's source and "
        "destination and every function's stateDir (default: the topology's)",
    )
    g.add_argument("--framebuffer", help="Sense HAT framebuffer device (default /dev/fb1)")
    g.add_argument("--joystick", help="Sense HAT joystick device (default /dev/input/event0)")
    g.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="FUNCTION:NAME=VALUE",
        help="set a function's environment variable (repeatable)",
    )
    g.add_argument("--uid", type=int, help="uid the functions run as (default from topology: 1000)")
    g.add_argument("--gid", type=int, help="gid the functions run as (default from topology: 1000)")
    g.add_argument(
        "--run-as-root",
        action="store_true",
        help="run functions as uid/gid 0 (the core's config.json then needs "
        '"runtime": {"allowFunctionsToRunAsRoot": "yes"})',
    )
    g.add_argument("--thing-name", default="", help="the core's IoT thing (default <group>-core)")
    g.add_argument(
        "--alias", default="", help="Lambda alias the group uses (default {})".format(DEFAULT_ALIAS)
    )


def _add_state_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE_PATH,
        help="state file up writes (default {})".format(DEFAULT_STATE_PATH),
    )


def _add_aws_options(p: argparse.ArgumentParser, dry_run: bool = True) -> None:
    p.add_argument("--region", default="", help="AWS region (default: AWS config / state file)")
    p.add_argument("--profile", default=None, help="AWS profile")
    p.add_argument("-v", "--verbose", action="store_true", help="print every AWS call")
    if dry_run:
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="print every AWS call it would make and make none (no credentials needed)",
        )


def _python_version(text: str) -> str:
    if not re.fullmatch(r"3\.\d{1,2}", text):
        raise argparse.ArgumentTypeError(
            "expected a Python version like 3.11, got {!r}".format(text)
        )
    return text


def _add_package_options(p: argparse.ArgumentParser, out_flag: str = "--package-dir") -> None:
    p.add_argument(
        out_flag,
        dest="package_dir",
        type=Path,
        default=Path("out") / "package",
        help="where the zips go (default out/package)",
    )
    p.add_argument(
        "--source-root",
        type=Path,
        default=None,
        help="checkout holding agent/, functions/ and pyproject.toml",
    )
    p.add_argument(
        "--site-packages",
        type=Path,
        default=None,
        help="vendor dependencies from this directory as they are, instead of resolving "
        "them with pip for the device's Python",
    )
    p.add_argument(
        "--device-python",
        type=_python_version,
        default=DEFAULT_DEVICE_PYTHON,
        metavar="X.Y",
        help="the Python of the V2 core device (default {}: Raspberry Pi OS 12); "
        "V1 zips are always for Python {}".format(DEFAULT_DEVICE_PYTHON, TARGET_PYTHON),
    )
    p.add_argument(
        "--allow-warnings",
        action="store_true",
        help="package even when a dependency would not work on the device",
    )
    p.add_argument(
        "--refresh-vendor",
        action="store_true",
        help="resolve the dependencies again instead of using the cached resolution",
    )
    # Warnings are errors by default now; --strict stays accepted for old scripts.
    p.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)


def _add_wait_options(p: argparse.ArgumentParser, timeout: float = 300.0) -> None:
    p.add_argument(
        "--no-wait", dest="wait", action="store_false", help="do not poll the deployment status"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        help="seconds to wait for the deployment (default {:g})".format(timeout),
    )
    p.add_argument(
        "--poll-interval", type=float, default=5.0, help="seconds between status polls (default 5)"
    )


def _add_secret_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--create-secret",
        action="store_true",
        help="create the ServiceNow secret if missing (value from --secret-file or a "
        "prompt, never the command line)",
    )
    p.add_argument(
        "--secret-file",
        type=Path,
        default=None,
        help='JSON file {"username": ..., "password": ...} (chmod 600)',
    )


def _add_delete_secret_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--delete-secret",
        action="store_true",
        help="also delete the secret (with a recovery window)",
    )
    p.add_argument(
        "--recovery-days",
        type=int,
        default=30,
        choices=range(7, 31),
        metavar="7..30",
        help="secret recovery window (default 30)",
    )


def _add_v2_options(p: argparse.ArgumentParser) -> None:
    _add_package_options(p)
    p.add_argument("--bucket", default="", help="S3 bucket for the component artifacts")
    p.add_argument("--artifact-prefix", default="edge-agent/artifacts")
    p.add_argument("--component-prefix", default="com.edgeagent")
    p.add_argument(
        "--component-version",
        default="",
        help="component version (default: the agent's version)",
    )
    p.add_argument(
        "--thing-group",
        default="",
        help="deploy to this thing group (created if missing, the core added) instead of the thing",
    )
    p.add_argument(
        "--secret-manager-version",
        default="",
        help="aws.greengrass.SecretManager version (v2 up default: the newest)",
    )
    p.add_argument(
        "--shadow-manager-version",
        default="",
        help="aws.greengrass.ShadowManager version (v2 up default: the newest)",
    )
    p.add_argument(
        "--posix-user",
        default="",
        help="user:group the components run as (default uid:gid of the topology)",
    )
    p.add_argument(
        "--certs-dir",
        type=Path,
        default=Path("certs"),
        help="where the core's certificate, private key, config.yaml and install-on-pi.sh go",
    )
    p.add_argument(
        "--nucleus-version",
        default=DEFAULT_NUCLEUS_VERSION,
        help="Greengrass nucleus the Pi installs (default {})".format(DEFAULT_NUCLEUS_VERSION),
    )
    p.add_argument("--account", default="")
    p.add_argument(
        "--device-arch",
        action="append",
        choices=list(ARCHITECTURES),
        metavar="ARCH",
        help="a device architecture to give the components a manifest and wheels for "
        "(repeatable; default: {}; aarch64 is 64-bit Raspberry Pi OS, armv7l 32-bit)".format(
            ", ".join(DEFAULT_ARCHITECTURES)
        ),
    )
    p.add_argument(
        "--wheelhouse",
        type=Path,
        default=None,
        metavar="DIR",
        help="wheels to use besides PyPI for the devices (an armv7l awscrt you built: "
        "pip wheel awscrt on a Pi)",
    )
    p.add_argument(
        "--no-index",
        action="store_true",
        help="take the devices' wheels from --wheelhouse only, never from PyPI",
    )


def _add_site_options(p: argparse.ArgumentParser, v2: bool) -> None:
    g = p.add_argument_group("a site of many Pis (docs/site.md)")
    g.add_argument(
        "--site",
        default="",
        help="a site gateway for this site's Pis (their things, the association)",
    )
    g.add_argument("--devices", type=int, default=0, help="how many Pis the site has")
    if v2:
        g.add_argument(
            "--rollout-per-minute",
            type=int,
            default=10,
            help="gateways the deployment reaches per minute (default 10)",
        )
        g.add_argument(
            "--abort-threshold",
            type=float,
            default=10.0,
            help="cancel the deployment when more than this %% of gateways failed (default 10)",
        )


def _add_v2_parsers(sub: Any) -> None:
    for name, text in (
        ("plan", "write the recipes, the deployment and the core's identity documents (offline)"),
        ("up", "create the core's identity, the components and the deployment"),
        ("status", "the deployment on each core device"),
        ("destroy", "remove what v2 up created"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        _add_topology_options(p)
        _add_state_option(p)
        _add_v2_options(p)
        if name == "plan":
            p.add_argument("--out", type=Path, default=Path("out") / "v2-plan")
            p.add_argument("--region", default="")
            p.add_argument("--secret-arn", default="")
            _add_site_options(p, v2=True)
            continue
        _add_aws_options(p)
        _add_wait_options(p, timeout=600.0)
        if name == "up":
            p.add_argument("--force-deploy", action="store_true")
            _add_secret_options(p)
            _add_site_options(p, v2=True)
        if name == "destroy":
            p.add_argument(
                "--force",
                action="store_true",
                help="do not wait for the cores to remove the components (cloud side only)",
            )
            p.add_argument("--keep-certs", action="store_true", help="keep the local files")
            p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
            _add_delete_secret_options(p)
    _add_package_parser(sub, "V2 components (the Pi's Python, --device-python)")


def _add_package_parser(sub: Any, what: str) -> None:
    text = "build one reproducible zip per function for {} (offline)".format(what)
    p = sub.add_parser("package", help=text, description=text)
    _add_topology_options(p)
    _add_package_options(p, out_flag="--out")
    p.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="ID",
        help="only this function id (repeatable)",
    )


def _add_v1_parsers(sub: Any) -> None:
    p = sub.add_parser("plan", help="write the V1 definitions and IoT policy (offline)")
    _add_topology_options(p)
    _add_state_option(p)
    p.add_argument("--out", type=Path, default=Path("out") / "plan")
    p.add_argument("--region", default="")
    p.add_argument("--account", default="")
    p.add_argument("--certificate-arn", default="")
    p.add_argument("--secret-arn", default="")
    p.add_argument("--group-id", default="")
    _add_site_options(p, v2=False)

    p = sub.add_parser("up", help="create or update everything and deploy")
    _add_topology_options(p)
    _add_state_option(p)
    _add_aws_options(p)
    _add_package_options(p)
    _add_wait_options(p)
    p.add_argument("--account", default="", help="account id to show in --dry-run output")
    p.add_argument(
        "--certs-dir",
        type=Path,
        default=Path("certs"),
        help="where the certificate and private key are written (default certs)",
    )
    p.add_argument("--lambda-role-arn", default="", help="reuse this Lambda execution role")
    p.add_argument("--group-role-arn", default="", help="reuse this Greengrass group role")
    p.add_argument(
        "--create-service-role",
        action="store_true",
        help="create the Greengrass service role (AWSGreengrassResourceAccessRolePolicy)"
        " and associate it with the account",
    )
    _add_secret_options(p)
    p.add_argument(
        "--no-deploy", dest="deploy", action="store_false", help="stop after the group version"
    )
    p.add_argument("--force-deploy", action="store_true", help="deploy even when nothing changed")

    p = sub.add_parser("status", help="group, latest version, latest deployment")
    _add_topology_options(p)
    _add_state_option(p)
    _add_aws_options(p)

    p = sub.add_parser("reset", help="reset the group's deployments")
    _add_topology_options(p)
    _add_state_option(p)
    _add_aws_options(p)
    _add_wait_options(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="ForceResetDeployment: cloud side only, without the core",
    )

    p = sub.add_parser("destroy", help="remove everything v1 up created")
    _add_topology_options(p)
    _add_state_option(p)
    _add_aws_options(p)
    _add_wait_options(p, timeout=120.0)
    p.add_argument(
        "--force", action="store_true", help="force-reset deployments (when the core is offline)"
    )
    _add_delete_secret_options(p)
    p.add_argument("--keep-certs", action="store_true", help="keep the local certificate/key files")
    p.add_argument("--certs-dir", type=Path, default=Path("certs"))
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    _add_package_parser(sub, "V1 Lambda functions (Python {})".format(TARGET_PYTHON))

    p = sub.add_parser("render-config", help="the core's config.json from the state file")
    _add_state_option(p)
    p.add_argument("--out", default="-", help="file to write (default: stdout)")
    p.add_argument("--endpoint", default="", help="IoT data endpoint (default: from state)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deploy the edge agent, built from agent.topology: Greengrass V2 "
        "deployments (what a device uses today), and Greengrass V1 group versions for "
        "accounts that still have V1 (AWS ended it on {}).".format(V1_END),
        epilog="Old names still accepted (each says its new name): "
        + ", ".join(
            "{} = {} {}".format(old, *new) for old, new in ALIASES.items() if old != "package"
        )
        + ", package [--runtime v1|v2] = v1|v2 package.",
    )
    targets = parser.add_subparsers(dest="target", metavar="COMMAND")
    targets.required = True
    v2 = targets.add_parser(
        "v2",
        help="Greengrass V2: plan, up, status, destroy, package",
        description="Greengrass V2 components and deployments, on the Pi's own Python.",
    )
    sub = v2.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_v2_parsers(sub)
    v1 = targets.add_parser(
        "v1",
        help="Greengrass V1 (ended {}): plan, up, status, reset, destroy, package, "
        "render-config".format(V1_END),
        description="Greengrass V1 group versions and python3.8 Lambda functions, for "
        "accounts that still have V1 (AWS ended it on {}).".format(V1_END),
    )
    sub = v1.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_v1_parsers(sub)
    for name, text in (
        ("set", "set one device's run-time variables (limits...) in its shadow's desired state"),
        ("get", "one device's run-time variables: desired, reported, pending, rejected"),
    ):
        p = targets.add_parser(name, help=text)
        _add_topology_options(p)
        _add_state_option(p)
        _add_aws_options(p)
        p.add_argument(
            "--thing",
            default="",
            help="the device's IoT thing (default: the core v1/v2 up created, from --state)",
        )
        if name == "set":
            p.add_argument(
                "values",
                nargs="+",
                metavar="NAME=VALUE",
                help="e.g. humidLimit=55 (null removes the override): "
                + ", ".join(RUNTIME_VARIABLES),
            )
        else:
            p.add_argument("--json", action="store_true", help="the whole shadow document")
    return parser


def command_name(args: argparse.Namespace) -> str:
    """``"v2 plan"``, ``"v1 up"``, ``"set"``: the key of :data:`deploy.commands.COMMANDS`."""
    command = getattr(args, "command", None)
    return "{} {}".format(args.target, command) if command else str(args.target)


# Commands that build the group's definitions: they check its variables first.
_WRITES_THE_GROUP = ("v1 plan", "v1 package", "v1 up", "v2 plan", "v2 package", "v2 up")
# What ``pip install 'edge-agent[deploy]'`` brings (boto3 and what it needs).
_DEPLOY_EXTRA = ("boto3", "botocore", "s3transfer", "jmespath")


def main(argv: Optional[List[str]] = None, topology: Optional[GroupTopology] = None) -> int:
    """Run one command. ``topology`` replaces the default (for embedding and tests)."""
    parser = build_parser()
    argv, alias_note = canonical_argv(sys.argv[1:] if argv is None else argv)
    if alias_note:
        _err(alias_note)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    from agent.config import check_group
    from agent.errors import ConfigError

    name = command_name(args)
    if getattr(args, "no_index", False) and args.wheelhouse is None:
        _err("deploy: error: --no-index needs --wheelhouse DIR (the wheels to use instead of PyPI)")
        return 2
    if args.target == "v1":
        _err(v1_notice(args.command))  # before anything else, AWS calls included
    try:
        if name == "v1 render-config":
            return cmd_render_config(args, None, _out)
        built = build_topology(args, topology)
        if name in _WRITES_THE_GROUP:
            check_group(built)  # the functions' own validation, before anything is written
        return COMMANDS[name](args, built, _out)
    except DeployError as exc:
        _err("error: {}".format(exc))
        return exc.exit_code
    except ConfigError as exc:
        _err("error: {}".format(exc))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in _DEPLOY_EXTRA:
            raise
        _err(
            "error: the deploy commands need {}, which is not installed here; install the "
            "deploy extra: pip install 'edge-agent[deploy]'".format(missing)
        )
        return 1
    except OSError as exc:
        # A path given on the command line that cannot be used (an unwritable --out, say).
        if exc.filename is None:
            raise
        _err(
            "error: cannot use {}: {}; check the path given with --out, --package-dir, "
            "--state or --secret-file".format(exc.filename, exc.strerror or exc)
        )
        return 1
    except Exception as exc:  # an AWS error we did not anticipate: say which call and why
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError):
            refused = lambda_runtime_refused(exc, args.command) if args.target == "v1" else None
            if refused:
                _err("error: {}".format(refused))
                return 1
            error = exc.response.get("Error", {})
            _err(
                "error: AWS {} failed: {}: {}".format(
                    exc.operation_name, error.get("Code"), error.get("Message")
                )
            )
            return 1
        if isinstance(exc, BotoCoreError):
            _err("error: {}".format(exc))
            return 1
        raise
