"""``python -m deploy <command>`` (and ``edge-agent deploy <command>``).

Commands: plan, package, up, status, reset, destroy, render-config, v2-plan,
v2-up. See deploy/README.md. Exit codes: 0 ok, 1 error, 2 usage,
3 deployment failed, 4 deployment timed out, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from agent.topology import DEFAULT_SECRET_NAME, GroupTopology, default_topology

from .errors import DeployError
from .naming import DEFAULT_ALIAS, PLACEHOLDER_REGION, Names, target_from
from .state import DEFAULT_STATE_PATH, State

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
        help="vendor dependencies from this directory instead of the current "
        "environment (e.g. pip install --target DIR --python-version 3.8 ...)",
    )
    p.add_argument(
        "--strict",
        dest="strict_package",
        action="store_true",
        help="fail when a dependency cannot be vendored cleanly",
    )


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Deploy the edge agent: Greengrass V1 group versions and Greengrass V2 "
        "deployments, built from agent.topology.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("plan", help="write the V1 definitions and IoT policy (offline)")
    _add_topology_options(p)
    _add_state_option(p)
    p.add_argument("--out", type=Path, default=Path("out") / "plan")
    p.add_argument("--region", default="")
    p.add_argument("--account", default="")
    p.add_argument("--certificate-arn", default="")
    p.add_argument("--secret-arn", default="")
    p.add_argument("--group-id", default="")

    p = sub.add_parser("package", help="build one reproducible zip per function (offline)")
    _add_topology_options(p)
    _add_package_options(p, out_flag="--out")
    p.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="ID",
        help="only this function id (repeatable)",
    )
    p.add_argument("--runtime", choices=("v1", "v2"), default="v1")

    p = sub.add_parser("up", help="create or update everything and deploy (V1)")
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

    p = sub.add_parser("destroy", help="remove everything up created")
    _add_topology_options(p)
    _add_state_option(p)
    _add_aws_options(p)
    _add_wait_options(p, timeout=120.0)
    p.add_argument(
        "--force", action="store_true", help="force-reset deployments (when the core is offline)"
    )
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
    p.add_argument("--keep-certs", action="store_true", help="keep the local certificate/key files")
    p.add_argument("--certs-dir", type=Path, default=Path("certs"))
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    p = sub.add_parser("render-config", help="the core's config.json from the state file")
    _add_state_option(p)
    p.add_argument("--out", default="-", help="file to write (default: stdout)")
    p.add_argument("--endpoint", default="", help="IoT data endpoint (default: from state)")

    for name, text in (
        ("v2-plan", "write V2 recipes and the deployment (offline)"),
        ("v2-up", "upload artifacts, create components, deploy (V2)"),
    ):
        p = sub.add_parser(name, help=text)
        _add_topology_options(p)
        _add_state_option(p)
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
            "--thing-group", default="", help="deploy to this thing group instead of the thing"
        )
        p.add_argument(
            "--secret-manager-version",
            default="",
            help="aws.greengrass.SecretManager version (v2-up default: the newest)",
        )
        p.add_argument(
            "--posix-user",
            default="",
            help="user:group the components run as (default uid:gid of the topology)",
        )
        p.add_argument("--account", default="")
        if name == "v2-plan":
            p.add_argument("--out", type=Path, default=Path("out") / "v2-plan")
            p.add_argument("--region", default="")
            p.add_argument("--secret-arn", default="")
        else:
            _add_aws_options(p)
            _add_wait_options(p, timeout=600.0)
            p.add_argument("--force-deploy", action="store_true")
    return parser


# --- helpers -------------------------------------------------------------------------


def parse_env(items: Sequence[str]) -> Dict[str, Dict[str, str]]:
    result: Dict[str, Dict[str, str]] = {}
    for item in items:
        function_id, sep, assignment = item.partition(":")
        name, eq, value = assignment.partition("=")
        if not sep or not eq or not function_id or not name:
            raise DeployError("--env {!r} must look like FUNCTION:NAME=VALUE".format(item))
        result.setdefault(function_id, {})[name] = value
    return result


def _load_topology(spec: str) -> GroupTopology:
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = getattr(importlib.import_module(module_name), attr or "topology")
    except (ImportError, AttributeError) as exc:
        raise DeployError("cannot load --topology {}: {}".format(spec, exc))
    if callable(obj) and not isinstance(obj, GroupTopology):
        obj = obj()
    if not isinstance(obj, GroupTopology):
        raise DeployError("--topology {} is not a GroupTopology".format(spec))
    return obj


def build_topology(
    args: argparse.Namespace, topology: Optional[GroupTopology] = None
) -> GroupTopology:
    environment = parse_env(args.env)
    if topology is None and not args.topology:
        kwargs: Dict[str, Any] = {"environment": environment}
        if args.secret_name:
            kwargs["secret_name"] = args.secret_name
        if args.framebuffer:
            kwargs["framebuffer"] = args.framebuffer
        if args.joystick:
            kwargs["joystick"] = args.joystick
        topology = default_topology(**kwargs)
    else:
        if any((args.secret_name, args.framebuffer, args.joystick)):
            raise DeployError(
                "--secret-name/--framebuffer/--joystick apply to the default "
                "topology only; set them in your topology"
            )
        topology = topology or _load_topology(args.topology)
        for function_id, variables in environment.items():
            topology = topology.with_environment(function_id, **variables)
    ids = {spec.id for spec in topology.functions}
    unknown = sorted(set(environment) - ids)
    if unknown:
        raise DeployError(
            "--env names unknown function(s) {}; known: {}".format(
                ", ".join(unknown), ", ".join(sorted(ids))
            )
        )
    uid = topology.run_as_uid if args.uid is None else args.uid
    gid = topology.run_as_gid if args.gid is None else args.gid
    if args.run_as_root:
        uid = gid = 0
    elif uid == 0 or gid == 0:
        raise DeployError("uid/gid 0 is root", hint="pass --run-as-root explicitly to run as root")
    if uid < 0 or gid < 0:
        raise DeployError("--uid/--gid must be positive")
    return replace(topology, run_as_uid=uid, run_as_gid=gid)


def _region(args: argparse.Namespace, state: State, required: bool) -> str:
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        try:
            import botocore.session

            region = botocore.session.Session(profile=args.profile).get_config_variable("region")
        except Exception:
            region = None
    region = region or state.get("region")
    if not region:
        if required:
            raise DeployError("no AWS region", hint="pass --region or set AWS_DEFAULT_REGION")
        return PLACEHOLDER_REGION
    return str(region)


def _api(args: argparse.Namespace, state: State, out: Callable[[str], None]):  # -> Api
    from .awsapi import Api

    dry_run = getattr(args, "dry_run", False)
    region = _region(args, state, required=not dry_run)
    if dry_run:
        out("dry-run: no AWS calls are made; region {}".format(region))
    return Api(
        region,
        profile=args.profile,
        dry_run=dry_run,
        out=out,
        verbose=getattr(args, "verbose", False),
    )


def _write_json(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


# --- commands ------------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    from .definitions import CREATE_OPERATIONS, build_documents, content_hash, validate_documents

    state = State.load(args.state, dry_run=True)
    target = target_from(
        topology,
        state.data,
        region=args.region,
        account=args.account,
        thing_name=args.thing_name,
        certificate_arn_value=args.certificate_arn,
        group_id=args.group_id,
        alias=args.alias,
        secret_arn_value=args.secret_arn,
        run_as_root=args.run_as_root,
    )
    documents = build_documents(topology, target)
    names = Names.for_topology(topology, target.thing_name)
    validate_documents(documents, names.policy)
    out_dir = Path(args.out)
    summary: Dict[str, Any] = {
        "region": target.region,
        "account": target.account,
        "thing": target.thing_name,
        "placeholders": list(target.placeholders),
        "files": {},
        "commands": [],
    }
    for kind in CREATE_OPERATIONS:
        file_name = "{}-definition.json".format(kind)
        _write_json(out_dir / file_name, documents.definition(kind))
        summary["files"][file_name] = content_hash(documents.definition(kind))
        summary["commands"].append(
            "aws greengrass {} --name {} --initial-version file://{}".format(
                "create-{}-definition".format(kind), names.definition(kind), file_name
            )
        )
    _write_json(out_dir / "iot-policy.json", documents.policy)
    summary["files"]["iot-policy.json"] = content_hash(documents.policy)
    summary["commands"].append(
        "aws iot create-policy --policy-name {} --policy-document file://iot-policy.json".format(
            names.policy
        )
    )
    _write_json(out_dir / "plan.json", summary)
    for name in sorted(summary["files"]):
        out("wrote {}".format(out_dir / name))
    out("validated against botocore's greengrass and iot service models")
    if target.placeholders:
        out(
            "placeholders used (pass options or run up first): {}".format(
                ", ".join(target.placeholders)
            )
        )
    if args.run_as_root:
        from .v1 import ROOT_CONFIG_NOTE

        out("note: " + ROOT_CONFIG_NOTE)
    return 0


def cmd_package(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    from .package import build_packages

    results = build_packages(
        topology,
        Path(args.package_dir),
        function_ids=args.function,
        source_root=args.source_root,
        site_packages=args.site_packages,
        strict=args.strict_package,
        runtime=args.runtime,
    )
    for result in results.values():
        out("{}  {}  {} bytes".format(result.sha256, result.path, result.size))
        out(
            "  vendored: {}".format(
                ", ".join("{} {}".format(v["name"], v["version"]) for v in result.vendored)
                or "nothing"
            )
        )
        for skipped in result.skipped:
            out("  not vendored: {} ({})".format(skipped["name"], skipped["reason"]))
        for warning in result.warnings:
            out("  warning: {}".format(warning))
    return 0


def cmd_up(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    from .v1 import UpOptions, V1Deployer

    state = State.load(args.state, dry_run=args.dry_run)
    api = _api(args, state, out)
    options = UpOptions(
        alias=args.alias or DEFAULT_ALIAS,
        thing_name=args.thing_name,
        account=args.account,
        certs_dir=args.certs_dir,
        package_dir=args.package_dir,
        source_root=args.source_root,
        site_packages=args.site_packages,
        strict_package=args.strict_package,
        lambda_role_arn=args.lambda_role_arn,
        group_role_arn=args.group_role_arn,
        create_service_role=args.create_service_role,
        create_secret=args.create_secret,
        secret_file=args.secret_file,
        run_as_root=args.run_as_root,
        deploy=args.deploy,
        force_deploy=args.force_deploy,
        wait=args.wait,
        timeout=args.timeout,
        poll_interval=args.poll_interval,
    )
    return V1Deployer(api, topology, state, options, out=out).up()


def _deployer(args: argparse.Namespace, topology: GroupTopology, out: Callable):
    from .v1 import UpOptions, V1Deployer

    state = State.load(args.state, dry_run=getattr(args, "dry_run", False))
    api = _api(args, state, out)
    options = UpOptions(
        alias=args.alias or state.get("alias") or DEFAULT_ALIAS,
        thing_name=args.thing_name,
        certs_dir=getattr(args, "certs_dir", Path("certs")),
        wait=getattr(args, "wait", True),
        timeout=getattr(args, "timeout", 300.0),
        poll_interval=getattr(args, "poll_interval", 5.0),
    )
    return V1Deployer(api, topology, state, options, out=out)


def cmd_status(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    return _deployer(args, topology, out).status()


def cmd_reset(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    return _deployer(args, topology, out).reset(force=args.force)


def cmd_destroy(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    if not args.yes and not args.dry_run:
        if not sys.stdin.isatty():
            raise DeployError(
                "destroy deletes the group, certificate, policy, thing, functions "
                "and roles up created",
                hint="pass --yes to confirm",
            )
        answer = input("Delete everything recorded in {}? [y/N] ".format(args.state))
        if answer.strip().lower() not in ("y", "yes"):
            out("destroy: cancelled")
            return 1
    deployer = _deployer(args, topology, out)
    return deployer.destroy(
        force=args.force,
        delete_secret=args.delete_secret,
        recovery_days=args.recovery_days,
        keep_certs=args.keep_certs,
    )


def cmd_render_config(
    args: argparse.Namespace, topology: Optional[GroupTopology], out: Callable
) -> int:
    from .coreconfig import config_from_state, render

    if not Path(args.state).exists():
        raise DeployError(
            "no state file at {}".format(args.state), hint="run python -m deploy up first"
        )
    state = State.load(args.state, dry_run=True)
    document = config_from_state(state.data, iot_endpoint=args.endpoint)
    text = render(document)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        _write_json(Path(args.out), document)
        out("wrote {} (copy it to /greengrass/config/config.json on the Pi)".format(args.out))
    if document["runtime"].get("allowFunctionsToRunAsRoot"):
        _err("note: functions were deployed with --run-as-root, so this config allows it")
    return 0


def _v2_options(args: argparse.Namespace):
    from .v2 import V2Options

    return V2Options(
        bucket=args.bucket,
        prefix=args.component_prefix,
        artifact_prefix=args.artifact_prefix,
        version=args.component_version,
        thing_name=args.thing_name,
        thing_group=args.thing_group,
        account=args.account,
        secret_manager_version=args.secret_manager_version,
        posix_user=args.posix_user,
        package_dir=args.package_dir,
        source_root=args.source_root,
        site_packages=args.site_packages,
        force_deploy=getattr(args, "force_deploy", False),
        wait=getattr(args, "wait", True),
        timeout=getattr(args, "timeout", 600.0),
        poll_interval=getattr(args, "poll_interval", 10.0),
    )


def cmd_v2_plan(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    from .v2 import PLACEHOLDER_SECRET_MANAGER_VERSION, build_v2_plan

    state = State.load(args.state, dry_run=True)
    target = target_from(
        topology,
        state.data,
        region=args.region,
        account=args.account,
        thing_name=args.thing_name,
        secret_arn_value=args.secret_arn,
    )
    options = _v2_options(args)
    plan = build_v2_plan(
        topology,
        region=target.region,
        account=target.account,
        secret_arns={s.id: target.secret_arn(topology, s.id) for s in topology.secrets},
        options=options,
        secret_manager_version=args.secret_manager_version or PLACEHOLDER_SECRET_MANAGER_VERSION,
    )
    out_dir = Path(args.out)
    for name, recipe in plan.recipes.items():
        _write_json(out_dir / "{}.recipe.json".format(name), recipe)
        out("wrote {}".format(out_dir / "{}.recipe.json".format(name)))
    _write_json(out_dir / "deployment.json", plan.deployment)
    out("wrote {}".format(out_dir / "deployment.json"))
    placeholders = [p for p in target.placeholders if not p.startswith(("certificate", "group"))]
    if not args.bucket:
        placeholders.append("bucket")
    if not args.secret_manager_version:
        placeholders.append("secret_manager_version")
    if placeholders:
        out("placeholders used: {}".format(", ".join(placeholders)))
    return 0


def cmd_v2_up(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    from .v2 import V2Deployer

    state = State.load(args.state, dry_run=args.dry_run)
    api = _api(args, state, out)
    return V2Deployer(api, topology, state, _v2_options(args), out=out).up()


# Commands that build the group's definitions: they check its variables first.
_WRITES_THE_GROUP = ("plan", "package", "up", "v2-plan", "v2-up")
# What ``pip install 'edge-agent[deploy]'`` brings (boto3 and what it needs).
_DEPLOY_EXTRA = ("boto3", "botocore", "s3transfer", "jmespath")

COMMANDS = {
    "plan": cmd_plan,
    "package": cmd_package,
    "up": cmd_up,
    "status": cmd_status,
    "reset": cmd_reset,
    "destroy": cmd_destroy,
    "render-config": cmd_render_config,
    "v2-plan": cmd_v2_plan,
    "v2-up": cmd_v2_up,
}


def main(argv: Optional[List[str]] = None, topology: Optional[GroupTopology] = None) -> int:
    """Run one command. ``topology`` replaces the default (for embedding and tests)."""
    parser = build_parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    from agent.config import check_group
    from agent.errors import ConfigError

    try:
        if args.command == "render-config":
            return cmd_render_config(args, None, _out)
        built = build_topology(args, topology)
        if args.command in _WRITES_THE_GROUP:
            check_group(built)  # the functions' own validation, before anything is written
        return COMMANDS[args.command](args, built, _out)
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
