"""The ``edge-agent`` command: simulate, run the ServiceNow stand-in, deploy."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import List, Optional

# Options whose value may start with "-" (``--outage -60:600``): argparse would take
# the value for an option and answer "expected one argument"; the check says why.
_VALUES_MAY_START_WITH_DASH = ("--outage", "--at")


def main(argv: Optional[List[str]] = None) -> int:
    """The ``edge-agent`` entry point; see the README's exit-code table."""
    try:
        return _main(argv)
    except BrokenPipeError:
        # Piped into head and the reader left: stop quietly, without "[Errno 32] Broken pipe".
        from devtools.console import silence

        silence(sys.stdout)
        return 1


def _main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Subcommands with their own parsers get the rest of the line untouched.
    if argv and argv[0] == "deploy":
        from deploy.cli import main as deploy_main

        return deploy_main(argv[1:])
    if argv and argv[0] == "standin":
        from devtools.servicenow_standin import main as standin_main

        return standin_main(argv[1:])
    if argv and argv[0] == "run":
        from agent.standalone.run import main as run_main

        return run_main(argv[1:])
    if argv and argv[0] == "status":
        from devtools.status_cmd import main as status_main

        return status_main(argv[1:])
    if argv and argv[0] == "bench":
        from benchmarks.run import main as bench_main

        return bench_main(argv[1:])

    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="run both functions on this laptop")
    from agent.sensors.fake import SCENARIOS

    source = sim.add_mutually_exclusive_group()
    source.add_argument(
        "--scenario",
        default="humid-spell",
        choices=sorted(SCENARIOS),
        help="fake-sensor story (default: humid-spell)",
    )
    source.add_argument(
        "--replay",
        metavar="FILE.csv",
        help="replay readings: timestamp,temperature,humidity[,pressure]",
    )
    sim.add_argument(
        "--duration",
        type=float,
        help="seconds to run (default: the scenario's length, or the replay file's span)",
    )
    sim.add_argument(
        "--period",
        type=float,
        help="seconds between readings (default: --set period, else 5); not with --replay",
    )
    sim.add_argument(
        "--fast", action="store_true", help="virtual time: ten simulated minutes in about a second"
    )
    sim.add_argument("--seed", type=int, default=1, help="fake-sensor random seed")
    sim.add_argument("--snow-url", help="a real or other ServiceNow instance (default: stand-in)")
    sim.add_argument(
        "--secret-file",
        help='the secret\'s value as stored in Secrets Manager: {"username": ..., "password": ...}',
    )
    sim.add_argument(
        "--state-dir",
        help="where the outbox and episode state live, kept after the run "
        "(default: a temporary folder, removed after the run unless actions are left in it)",
    )
    sim.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="START:DURATION",
        help="take the stand-in down for DURATION s, START s into the run",
    )
    sim.add_argument(
        "--at",
        action="append",
        default=[],
        metavar="SECONDS:NAME=VALUE",
        help="set the shadow's desired NAME (a limit, hysteresis, debounce, renotify or "
        "period) to VALUE, SECONDS into the run, e.g. --at 300:humidLimit=70",
    )
    sim.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a function variable, e.g. --set humidLimit=55 (see README)",
    )
    sim.add_argument(
        "--mqtt",
        metavar="URL",
        help="bridge messages for 'cloud' to an MQTT broker, e.g. mqtt://127.0.0.1",
    )
    sim.add_argument("--mqtt-ca", metavar="FILE", help="CA bundle for an mqtts:// broker")
    sim.add_argument("--mqtt-cert", metavar="FILE", help="client certificate for the broker")
    sim.add_argument("--mqtt-key", metavar="FILE", help="client key for the broker")
    sim.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        help="serve the status page, /metrics and /healthz during the run (with --fast, "
        "also after it until Ctrl-C); host 127.0.0.1 unless given",
    )
    sim.add_argument("--json", action="store_true", help="print a machine-readable summary")
    sim.add_argument("-v", "--verbose", action="store_true", help="show the agent's log")
    sub.add_parser("config-table", help="print the configuration table (markdown)")
    box = sub.add_parser(
        "outbox",
        help="show the anomaly function's outbox and whether actions were lost; requeue dead letters",
        description="Show the anomaly function's outbox (JSON on stdout) and any sign that queued "
        "ServiceNow actions were lost (on stderr): an outbox that is missing, damaged or behind "
        "its marker, or one the agent moved aside into DIR/outbox.broken-<time>/. Without "
        "--requeue-dead or --acknowledge it only reads, so it is safe while the agent runs.",
        epilog="exit status: 0 the outbox is healthy; 2 there is no outbox in DIR (none was "
        "ever made there); 3 actions may have been lost: check ServiceNow for the episodes of "
        "that time, then run again with --acknowledge (the moved-aside files stay).",
    )
    from agent.config import DEFAULT_STATE_DIR

    box.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"the anomaly function's stateDir (default: {DEFAULT_STATE_DIR})",
    )
    box.add_argument(
        "--requeue-dead",
        action="store_true",
        help="put every dead-lettered action back in the queue",
    )
    box.add_argument(
        "--acknowledge",
        action="store_true",
        help="mark the reports of moved-aside outboxes as seen, so they no longer count for exit "
        "status 3; deletes nothing",
    )
    sub.add_parser("standin", help="run the local ServiceNow stand-in (see --help)")
    sub.add_parser("deploy", help="Greengrass deploy commands (see deploy --help)")
    sub.add_parser("bench", help="run the benchmark suite")
    sub.add_parser("status", help="the state dir on one screen: episodes, outbox, locks")
    sub.add_parser("run", help="run both functions on this device without Greengrass (see --help)")
    args = parser.parse_args(_join_dash_values(argv))

    if args.command == "config-table":
        from agent.config import markdown_table

        print(markdown_table())
        return 0
    if args.command == "outbox":
        return _outbox(args)
    return _simulate(args, sim)


def _join_dash_values(argv: List[str]) -> List[str]:
    """``--outage -60:600`` as ``--outage=-60:600``, so the value reaches its check."""
    joined: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if (
            arg in _VALUES_MAY_START_WITH_DASH
            and i + 1 < len(argv)
            and argv[i + 1].startswith("-")
            and ":" in argv[i + 1]
        ):
            joined.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        joined.append(arg)
        i += 1
    return joined


def _simulate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from agent.errors import AgentError
    from agent.standalone.arguments import parse_assignments
    from agent.standalone.exit_codes import BAD_CONFIGURATION, INTERRUPTED
    from devtools.console import silence
    from devtools.simulate import SimulationOptions, parse_outages, run
    from devtools.simulation_changes import parse_changes

    # The console shows the agent's warnings and ServiceNow outcomes; the full
    # log goes to stderr only with --verbose.
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[stderr])
    try:
        outages = parse_outages(args.outage)
        environment = parse_assignments(args.set)
        changes = parse_changes(args.at)
    except ValueError as exc:
        parser.error(str(exc))
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


def _outbox(args: argparse.Namespace) -> int:
    """Inspect the outbox read-only (safe beside a running agent); exit 0, 2 or 3 (see --help)."""
    import time

    from agent.servicenow.outbox import Outbox
    from agent.servicenow.outbox_inspect import acknowledge, inspect

    if args.acknowledge:
        count = acknowledge(args.state_dir)
        print("edge-agent outbox: acknowledged {} reports".format(count), file=sys.stderr)
    report = inspect(args.state_dir)
    if report["status"] == "absent":
        print("edge-agent outbox: no outbox at {}".format(report["outbox"]), file=sys.stderr)
        return 2
    if args.requeue_dead:
        if "counts" not in report:
            print("edge-agent outbox: cannot requeue: the outbox is unreadable", file=sys.stderr)
            return 3
        outbox = Outbox(report["outbox"])
        try:
            count = outbox.requeue_dead_letters(time.time())
        finally:
            outbox.close()
        print("requeued {} dead-lettered actions".format(count), file=sys.stderr)
        report = inspect(args.state_dir)
    print(json.dumps(report, indent=2, default=str))
    if report["status"] == "ok":
        return 0
    for problem in report["problems"]:
        print("edge-agent outbox: ACTIONS MAY BE LOST: {}".format(problem), file=sys.stderr)
    print(
        "edge-agent outbox: check ServiceNow for the episodes of that time, then run "
        "`edge-agent outbox --state-dir {} --acknowledge`".format(args.state_dir),
        file=sys.stderr,
    )
    return 3


if __name__ == "__main__":
    raise SystemExit(main())
