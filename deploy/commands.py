"""What each ``python -m deploy`` command does, given parsed arguments and the topology.

The argument parser is ``deploy.cli``; this module turns arguments into a
topology, options and an :class:`~deploy.awsapi.Api`, and runs one command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

from agent.topology import STATE_VOLUME_ID, GroupTopology, default_topology

from .errors import DeployError
from .naming import DEFAULT_ALIAS, PLACEHOLDER_REGION, target_from
from .state import State


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _write_json(path: Path, document: Any) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


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


def _site_topology(
    args: argparse.Namespace,
    environment: Dict[str, Dict[str, str]],
    topology: Optional[GroupTopology],
) -> GroupTopology:
    """``--site NAME --devices N``: the site's group (agent/site/topology.py)."""
    from agent.site.topology import site_topology

    from .site import device_names

    if topology is not None or args.topology:
        raise DeployError("--site builds the site's own group; it does not take --topology")
    if any((args.secret_name, args.framebuffer, args.joystick)):
        raise DeployError("--secret-name/--framebuffer/--joystick do not apply with --site")
    return site_topology(args.site, device_names(args.site, args.devices), environment=environment)


def build_topology(
    args: argparse.Namespace, topology: Optional[GroupTopology] = None
) -> GroupTopology:
    environment = parse_env(args.env)
    if getattr(args, "site", ""):
        topology = _site_topology(args, environment, topology)
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
    if getattr(args, "state_dir", None):
        topology = with_state_dir(topology, args.state_dir)
    uid = topology.run_as_uid if args.uid is None else args.uid
    gid = topology.run_as_gid if args.gid is None else args.gid
    if args.run_as_root:
        uid = gid = 0
    elif uid == 0 or gid == 0:
        raise DeployError("uid/gid 0 is root", hint="pass --run-as-root explicitly to run as root")
    if uid < 0 or gid < 0:
        raise DeployError("--uid/--gid must be positive")
    return topology.with_changes(run_as_uid=uid, run_as_gid=gid)


def with_state_dir(topology: GroupTopology, directory: str) -> GroupTopology:
    """The topology with its state volume (source and destination) and every function's
    ``stateDir`` at ``directory``."""
    if not directory.startswith("/"):
        raise DeployError("--state-dir {!r} must be an absolute path".format(directory))
    if not any(v.id == STATE_VOLUME_ID for v in topology.volumes):
        raise DeployError(
            "--state-dir: the topology has no {!r} volume to move".format(STATE_VOLUME_ID)
        )
    volumes = tuple(
        v.with_changes(source_path=directory, destination_path=directory)
        if v.id == STATE_VOLUME_ID
        else v
        for v in topology.volumes
    )
    functions = tuple(
        f.with_changes(environment=dict(f.environment, stateDir=directory))
        if "stateDir" in f.environment
        else f
        for f in topology.functions
    )
    return topology.with_changes(volumes=volumes, functions=functions)


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


# --- commands ------------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    """``v1 plan`` (definitions and IoT policy) and ``v2 plan`` (recipes, deployment,
    artifacts): offline."""
    from .plans import write_plan

    # An unusable --out fails here, before the function packages are built (20-70 s on a
    # busy machine), not after; a plan refused later leaves no empty folder behind.
    folder = Path(args.out)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        plan = _build_plan(args, topology, out)
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise
    write_plan(folder, plan, out)
    return 0


def _build_plan(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> Any:
    from .plans import v1_plan

    state = State.load(args.state, dry_run=True)
    target = target_from(
        topology,
        state.data,
        region=args.region,
        account=args.account,
        thing_name=args.thing_name,
        certificate_arn_value=getattr(args, "certificate_arn", ""),
        group_id=getattr(args, "group_id", ""),
        alias=args.alias,
        secret_arn_value=args.secret_arn,
        run_as_root=args.run_as_root,
    )
    site = getattr(args, "site", "")
    if args.target == "v2":
        from .v2.plan import v2_plan

        options = _v2_options(args)
        plan = v2_plan(topology, target, options, out=out)
        if site:
            from .naming import Names
            from .site import add_v2_site, device_names

            add_v2_site(
                plan,
                topology,
                site,
                device_names(site, args.devices),
                region=target.region,
                account=target.account,
                thing_group=options.thing_group,
                core_thing=Names.for_topology(topology, target.thing_name).thing,
                per_minute=args.rollout_per_minute,
                abort_percent=args.abort_threshold,
            )
    else:
        plan = v1_plan(topology, target)
        if site:
            from .site import add_v1_site, device_names

            add_v1_site(
                plan,
                topology,
                device_names(site, args.devices),
                region=target.region,
                account=target.account,
            )
        if args.run_as_root:
            from .v1 import ROOT_CONFIG_NOTE

            plan.notes.append("note: " + ROOT_CONFIG_NOTE)
    return plan


def package_options(args: argparse.Namespace) -> Any:  # -> PackageOptions
    from .package import PackageOptions

    return PackageOptions(
        package_dir=Path(args.package_dir),
        source_root=args.source_root,
        site_packages=args.site_packages,
        device_python=args.device_python,
        allow_warnings=args.allow_warnings,
        refresh_vendor=args.refresh_vendor,
    )


def cmd_package(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    from .package import build_packages

    results = build_packages(
        topology, package_options(args), runtime=args.target, function_ids=args.function, out=out
    )
    for result in results.values():
        out("{}  {}  {} bytes".format(result.sha256, result.path, result.size))
        out(
            "  for Python {}, dependencies from {}".format(
                result.target_python, result.resolved_with
            )
        )
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
        packaging=package_options(args),
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


def _confirmed(args: argparse.Namespace, what: str, out: Callable) -> bool:
    """--yes, --dry-run, or a yes at the terminal; no terminal: a clear error."""
    if args.yes or args.dry_run:
        return True
    if not sys.stdin.isatty():
        raise DeployError(what, hint="pass --yes to confirm")
    answer = input("Delete everything recorded in {}? [y/N] ".format(args.state))
    if answer.strip().lower() not in ("y", "yes"):
        out("{} {}: cancelled".format(args.target, args.command))
        return False
    return True


def cmd_destroy(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    what = (
        "v1 destroy deletes the group, certificate, policy, thing, functions and roles v1 up "
        "created"
    )
    if not _confirmed(args, what, out):
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
            "no state file at {}".format(args.state), hint="run python -m deploy v1 up first"
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
    from .wheels import DEFAULT_ARCHITECTURES

    options = V2Options(
        bucket=args.bucket,
        prefix=args.component_prefix,
        artifact_prefix=args.artifact_prefix,
        version=args.component_version,
        thing_name=args.thing_name,
        thing_group=args.thing_group,
        account=args.account,
        secret_manager_version=args.secret_manager_version,
        shadow_manager_version=args.shadow_manager_version,
        posix_user=args.posix_user,
        packaging=package_options(args),
        architectures=tuple(dict.fromkeys(args.device_arch or DEFAULT_ARCHITECTURES)),
        wheelhouse=args.wheelhouse,
        no_index=args.no_index,
        certs_dir=args.certs_dir,
        nucleus_version=args.nucleus_version,
        create_secret=getattr(args, "create_secret", False),
        secret_file=getattr(args, "secret_file", None),
        force_deploy=getattr(args, "force_deploy", False),
        wait=getattr(args, "wait", True),
        timeout=getattr(args, "timeout", 600.0),
        poll_interval=getattr(args, "poll_interval", 10.0),
        site=getattr(args, "site", ""),
        devices=getattr(args, "devices", 0),
        rollout_per_minute=getattr(args, "rollout_per_minute", 10),
        abort_threshold=getattr(args, "abort_threshold", 10.0),
    )
    if options.site and not options.thing_group:
        options.thing_group = "{}-gateways".format(options.site)  # a site deploys to a group
    return options


def _v2_deployer(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> Any:
    from .v2 import V2Deployer

    state = State.load(args.state, dry_run=args.dry_run)
    return V2Deployer(_api(args, state, out), topology, state, _v2_options(args), out=out)


def cmd_v2_up(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    return _v2_deployer(args, topology, out).up()


def cmd_v2_status(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    return _v2_deployer(args, topology, out).status()


def cmd_v2_destroy(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    if not _confirmed(
        args,
        "v2 destroy deletes the deployment, components, role alias, role, "
        "policy, certificate and thing v2 up created",
        out,
    ):
        return 1
    return _v2_deployer(args, topology, out).destroy(
        force=args.force,
        keep_certs=args.keep_certs,
        delete_secret=args.delete_secret,
        recovery_days=args.recovery_days,
    )


def _shadow_api(args: argparse.Namespace, out: Callable) -> Any:
    """An Api for ``set``/``get``, and ``args.thing`` filled from the state when not given."""
    state = State.load(args.state, dry_run=True)  # read only: set and get create nothing
    if not args.thing:
        v2 = state.get("v2") or {}
        args.thing = (
            args.thing_name
            or (state.get("thing") or {}).get("name")
            or (v2.get("thing") or {}).get("name")
            or ""
        )
    if not args.thing:
        raise DeployError(
            "which device? no --thing, and no core in {}".format(args.state),
            hint="pass --thing NAME (the device's IoT thing)",
        )
    return _api(args, state, out)


def cmd_set(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    from .shadow_cmd import cmd_set as run

    return run(args, topology, _shadow_api(args, out), out)


def cmd_get(args: argparse.Namespace, topology: GroupTopology, out: Callable) -> int:
    from .shadow_cmd import cmd_get as run

    return run(args, topology, _shadow_api(args, out), out)


# Keyed by target and command (``deploy.cli.command_name``), V2 first.
COMMANDS = {
    "v2 plan": cmd_plan,
    "v2 up": cmd_v2_up,
    "v2 status": cmd_v2_status,
    "v2 destroy": cmd_v2_destroy,
    "v2 package": cmd_package,
    "v1 plan": cmd_plan,
    "v1 up": cmd_up,
    "v1 status": cmd_status,
    "v1 reset": cmd_reset,
    "v1 destroy": cmd_destroy,
    "v1 package": cmd_package,
    "v1 render-config": cmd_render_config,
    "set": cmd_set,
    "get": cmd_get,
}
