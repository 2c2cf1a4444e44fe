"""``edge-agent simulate``: its options, and the run they describe (:mod:`devtools.simulate`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

DESCRIPTION = (
    "Run both functions on this laptop, with their own code, on the in-process core: a fake "
    "Sense HAT telling a story, a local ServiceNow stand-in, a throwaway secret."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edge-agent simulate``."""
    from agent.sensors.fake import SCENARIOS
    from devtools.fleet_stories import STORIES

    parser.description = DESCRIPTION
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--scenario",
        default="humid-spell",
        choices=sorted(SCENARIOS) + sorted(STORIES),
        help="fake-sensor story (default: humid-spell); with --fleet, a site's story: "
        + ", ".join(sorted(STORIES)),
    )
    source.add_argument(
        "--replay",
        metavar="FILE.csv",
        help="replay readings from a CSV file whose first row is the header "
        "timestamp,temperature,humidity[,pressure] (any order); a row or cell it cannot use "
        "is counted and named by its line; with a device column, each device is a sensor "
        "function of its own and a gateway groups them",
    )
    parser.add_argument(
        "--fleet",
        type=int,
        metavar="N",
        help="a site of N Pis (their own ids and state) and one gateway anomaly function; "
        "with --scenario site-humid-spell or switch-failure",
    )
    parser.add_argument(
        "--site", default="sim-site", help="the site's name with --fleet (default: sim-site)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds to run (default: the scenario's length, or the replay file's span)",
    )
    parser.add_argument(
        "--period",
        type=float,
        help="seconds between readings (default: --set period, else 5); not with --replay",
    )
    parser.add_argument(
        "--fast", action="store_true", help="virtual time: ten simulated minutes in about a second"
    )
    parser.add_argument("--seed", type=int, default=1, help="fake-sensor random seed")
    parser.add_argument(
        "--snow-url", help="a real or other ServiceNow instance (default: stand-in)"
    )
    parser.add_argument(
        "--secret-file",
        help='the secret\'s value as stored in Secrets Manager: {"username": ..., "password": ...}',
    )
    parser.add_argument(
        "--state-dir",
        help="where the outbox and episode state live, kept after the run "
        "(default: a temporary folder, removed after the run unless actions are left in it)",
    )
    parser.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="START:DURATION",
        help="take the stand-in down for DURATION s, START s into the run",
    )
    parser.add_argument(
        "--at",
        action="append",
        default=[],
        metavar="SECONDS:NAME=VALUE",
        help="set the shadow's desired NAME (a limit, hysteresis, debounce, renotify or "
        "period) to VALUE, SECONDS into the run, e.g. --at 300:humidLimit=70",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a function variable, e.g. --set humidLimit=55 (edge-agent config-table lists them)",
    )
    parser.add_argument(
        "--mqtt",
        metavar="URL",
        help="bridge messages for 'cloud' to an MQTT broker, e.g. mqtt://127.0.0.1",
    )
    parser.add_argument("--mqtt-ca", metavar="FILE", help="CA bundle for an mqtts:// broker")
    parser.add_argument("--mqtt-cert", metavar="FILE", help="client certificate for the broker")
    parser.add_argument("--mqtt-key", metavar="FILE", help="client key for the broker")
    parser.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help="serve the status page, /metrics and /healthz during the run (with --fast, "
        "also after it until Ctrl-C); host 127.0.0.1 unless given",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable summary")
    from agent.standalone.arguments import add_log_arguments

    # Without either, the agent's log is not shown (the console says what happens).
    add_log_arguments(parser, verbose="info")


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``edge-agent simulate`` with its parsed options (``parser`` reports a bad one)."""
    from agent.errors import AgentError
    from agent.standalone.arguments import log_level, parse_assignments
    from agent.standalone.exit_codes import BAD_CONFIGURATION, INTERRUPTED
    from devtools.console import silence
    from devtools.simulate import SimulationOptions, parse_outages, run
    from devtools.simulation_changes import parse_changes

    # The console shows the agent's warnings and ServiceNow outcomes; the full
    # log goes to stderr only with -v or --log-level.
    stderr = logging.StreamHandler(sys.stderr)
    level = log_level(args, default="critical")
    stderr.setLevel(level)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=min(level, logging.INFO), handlers=[stderr])
    try:
        outages = parse_outages(args.outage)
        environment = parse_assignments(args.set)
        changes = parse_changes(args.at)
    except ValueError as exc:
        parser.error(str(exc))
    if args.fleet is not None or (args.replay and _device_column(args.replay)):
        return _fleet(args, parser, environment)
    if args.serve:
        from agent.status.settings import parse_address

        try:
            parse_address(args.serve)
        except ValueError as exc:
            parser.error(str(exc))
    options = SimulationOptions(
        scenario=args.scenario,
        replay=args.replay,
        duration=args.duration,
        period=args.period,
        fast=args.fast,
        seed=args.seed,
        snow_url=args.snow_url,
        secret_file=args.secret_file,
        state_dir=args.state_dir,
        outages=outages,
        environment=environment,
        mqtt_url=args.mqtt,
        mqtt_tls={"ca": args.mqtt_ca, "cert": args.mqtt_cert, "key": args.mqtt_key},
        serve=args.serve,
        changes=changes,
    )

    def print_summary(summary: dict) -> None:  # when the run ends, before --serve serves on
        if args.json:
            try:
                print(json.dumps(summary, indent=2, sort_keys=True), flush=True)
            except BrokenPipeError:
                silence(sys.stdout)

    try:
        summary = run(
            options, out=sys.stderr if args.json else sys.stdout, on_finished=print_summary
        )
    except (AgentError, OSError) as exc:
        print(f"edge-agent simulate: {exc}", file=sys.stderr)
        return BAD_CONFIGURATION
    except KeyboardInterrupt:  # before the run started (scanning a replay, say)
        print("edge-agent simulate: interrupted before the run started", file=sys.stderr)
        return INTERRUPTED
    return summary["exit_code"]


def _device_column(path: str) -> bool:
    from agent.errors import AgentError
    from devtools.fleet_replay import has_device_column

    try:
        return has_device_column(path)
    except AgentError:
        return False  # the single-device replay reports what is wrong with the file


def _fleet(args: argparse.Namespace, parser: argparse.ArgumentParser, environment: dict) -> int:
    """``simulate --fleet N`` (or a replay with a device column): a site and its gateway."""
    from agent.errors import AgentError
    from agent.standalone.exit_codes import BAD_CONFIGURATION
    from devtools.fleet import FleetOptions, run_fleet

    for option, given in (("--outage", args.outage), ("--at", args.at), ("--mqtt", args.mqtt)):
        if given:
            parser.error(f"{option} is not supported with --fleet")
    if args.serve:
        parser.error("--serve is not supported with --fleet")
    scenario = args.scenario
    if args.fleet is not None and scenario == "humid-spell":
        scenario = "site-humid-spell"  # the default story, for a site
    options = FleetOptions(
        devices=args.fleet or 0,
        scenario=scenario,
        duration=args.duration,
        period=args.period or float(environment.get("period", 5)),
        fast=args.fast,
        seed=args.seed,
        site=args.site,
        snow_url=args.snow_url,
        secret_file=args.secret_file,
        state_dir=args.state_dir,
        environment=environment,
        replay=args.replay,
    )
    try:
        summary = run_fleet(options, out=sys.stderr if args.json else sys.stdout)
    except (AgentError, OSError) as exc:
        print(f"edge-agent simulate: {exc}", file=sys.stderr)
        return BAD_CONFIGURATION
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True), flush=True)
    exit_code: int = summary["exit_code"]
    return exit_code
