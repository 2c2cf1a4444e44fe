"""``edge-agent run``: the agent on this device without Greengrass, straight to AWS IoT Core.

Both functions run in this one process, on the group runtime ``edge-agent simulate`` uses too
(:class:`agent.standalone.group.LocalGroup`): the in-process core routes
between them by the group's own topology. What the topology sends to ``cloud`` goes
over the MQTT bridge to AWS IoT Core, authenticated by the device certificate
as a Greengrass core would be::

    edge-agent run --endpoint abc123-ats.iot.eu-west-1.amazonaws.com \\
        --thing pi-kitchen --cert certs/device.pem.crt --key certs/private.pem.key \\
        --ca certs/AmazonRootCA1.pem --secret-file /etc/edge-agent/snow.json

The client id is the thing name: the policy the deploy step writes allows
``iot:Connect`` only for that client id. ``--mqtt URL`` points the bridge at
any other broker (a local Mosquitto, see ``certs-example/LOCAL-MQTT.md``).
The sensor is the real one (the Sense HAT on a Pi) unless ``--sensor`` says
otherwise. Runs until Ctrl-C or SIGTERM (or ``--duration`` / ``--max-ticks``),
then stops both functions and flushes the bridge.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any, Dict, List, Optional

from .arguments import CommandParser, add_log_arguments, log_level
from .mqtt_bridge.options import BridgeOptions

log = logging.getLogger("edge_agent.run")

ENV_THING = "AWS_IOT_THING_NAME"
AWS_IOT_PORT = 8883
SPOOL_BYTES = 2_500_000


DESCRIPTION = "Run both functions on this device, bridged to AWS IoT Core (no Greengrass)."


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="edge-agent run", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edge-agent run``."""
    parser.description = DESCRIPTION
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="read the options below and the variables from an INI file (/etc/edge-agent/"
        "config.ini for the service); options given here beat the file, the file beats "
        "environment variables",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--endpoint",
        metavar="HOST[:PORT]",
        help="AWS IoT Core data endpoint (aws iot describe-endpoint --endpoint-type iot:Data-ATS); "
        "port 8883 unless given",
    )
    target.add_argument(
        "--mqtt", metavar="URL", help="any MQTT broker instead: mqtt://host or mqtts://host[:port]"
    )
    parser.add_argument("--cert", metavar="FILE", help="device certificate (PEM)")
    parser.add_argument("--key", metavar="FILE", help="device private key (PEM)")
    parser.add_argument(
        "--ca", metavar="FILE", help="CA certificate of the broker, e.g. AmazonRootCA1.pem"
    )
    parser.add_argument(
        "--thing", metavar="NAME", help=f"thing name (default: ${ENV_THING}); also the device id"
    )
    parser.add_argument(
        "--client-id", metavar="ID", help="MQTT client id (default: the thing name)"
    )
    parser.add_argument(
        "--protocol",
        choices=("3.1.1", "5", "auto"),
        help="MQTT version (default auto: 5, or 3.1.1 if the broker refuses 5)",
    )
    parser.add_argument(
        "--sensor",
        metavar="NAME",
        help="sensor backend: i2c, sensehat, emulator, fake, replay (default: the Sense HAT "
        "over I2C on a Pi)",
    )
    parser.add_argument(
        "--secret-file",
        metavar="FILE",
        help='the ServiceNow secret as stored in Secrets Manager: {"username": ..., "password": ...} '
        "(default: $EDGE_AGENT_SECRET_FILE)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a function variable, e.g. --set humidLimit=55 (see edge-agent config-table)",
    )
    parser.add_argument(
        "--state-dir", metavar="DIR", help="where episode state and the outbox live"
    )
    parser.add_argument(
        "--spool-file",
        metavar="FILE",
        help="keep messages waiting for the broker in this SQLite file (default: in memory)",
    )
    parser.add_argument(
        "--spool-bytes",
        type=int,
        metavar="N",
        help="spool size; the oldest message is dropped when full (default %d)" % SPOOL_BYTES,
    )
    parser.add_argument(
        "--status",
        metavar="HOST:PORT",
        help="serve the status page, /api/state, /metrics and /healthz, e.g. 127.0.0.1:8080",
    )
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--max-ticks", type=int, metavar="N", help="stop after N sensor readings")
    add_log_arguments(parser, verbose="debug")


def endpoint_url(endpoint: str, protocol: Optional[str] = None) -> str:
    """``mqtts://HOST:8883`` for an AWS IoT endpoint given as ``HOST`` or ``HOST:PORT``."""
    host = endpoint.strip()
    if "://" in host:
        raise ValueError("--endpoint takes a host name; use --mqtt for a URL")
    if host.rsplit(":", 1)[-1].isdigit() and host.count(":") == 1:
        host, port = host.split(":")
    else:
        port = str(AWS_IOT_PORT)
    url = f"mqtts://{host}:{port}"
    return url + (f"?protocol={protocol}" if protocol else "")


def bridge_settings(args: argparse.Namespace, environ: Dict[str, str]) -> Optional[BridgeOptions]:
    """The bridge's options from the command line; None without a broker."""
    thing = args.thing or environ.get(ENV_THING) or None
    client_id = args.client_id or thing
    if args.endpoint:
        if not (args.cert and args.key):
            raise ValueError("AWS IoT Core needs the device certificate: give --cert and --key")
        if not client_id:
            raise ValueError(
                f"AWS IoT Core needs the thing name as client id: give --thing or set {ENV_THING}"
            )
        url = endpoint_url(args.endpoint)
    elif args.mqtt:
        url = args.mqtt
    else:
        return None
    return BridgeOptions(
        url,
        client_id=client_id,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        protocol=args.protocol,
        spool_path=args.spool_file,
        spool_limit_bytes=args.spool_bytes or SPOOL_BYTES,
    )


def main(argv: Optional[List[str]] = None) -> int:
    """Run until Ctrl-C / SIGTERM (or --duration / --max-ticks); return the exit status."""
    parser = build_parser()
    return handle(parser.parse_args(argv), parser)


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``edge-agent run`` with its parsed options (``parser`` reports a bad one)."""
    if args.config:
        from ..errors import ConfigError
        from .config_file import assignments, merged_options, read_config_file

        try:
            config = read_config_file(args.config)
        except ConfigError as exc:
            print(f"edge-agent run: {exc}", file=sys.stderr)
            return 2
        taken = merged_options(config, vars(args))
        for dest, value in taken.items():
            setattr(args, dest, value)
        args.set = assignments(config, args.set)
    # Under systemd stderr is the journal (JOURNAL_STREAM says so), which stamps each line itself.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(
        level=log_level(args, default="info"),
        format=stamp + "%(levelname)s %(name)s: %(message)s",
    )
    if args.config:
        log.debug(
            "from %s: %s; variables %s (the command line's options and --set beat them)",
            args.config,
            ", ".join(sorted(taken)) or "no option",
            ", ".join(config.variables) or "none",
        )
    if args.spool_bytes is not None and args.spool_bytes < 1:
        parser.error("--spool-bytes must be 1 or more")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if args.max_ticks is not None and args.max_ticks < 1:
        parser.error("--max-ticks must be 1 or more")
    from .arguments import check_secret_file, parse_assignments

    try:
        overrides = parse_assignments(args.set)
        settings = bridge_settings(args, dict(os.environ))
        secret_file = args.secret_file or os.environ.get("EDGE_AGENT_SECRET_FILE")
        if secret_file:
            check_secret_file(secret_file)  # its shape now, not at the first delivery
        if args.status:
            from ..status.settings import parse_address

            parse_address(args.status, "--status")
    except ValueError as exc:
        parser.error(str(exc))

    from ..errors import AgentError

    try:
        return _run(args, overrides, settings, secret_file)
    except (AgentError, OSError) as exc:
        print(f"edge-agent run: {exc}", file=sys.stderr)
        return 2


def _run(
    args: argparse.Namespace,
    overrides: Dict[str, str],
    settings: Optional[BridgeOptions],
    secret_file: Optional[str],
) -> int:
    from ..clock import Clock
    from ..config import SensorSettings
    from ..sensors import open_sensor
    from ..topology import default_topology
    from .exit_codes import MQTT_LOST, exit_code_for
    from .group import LocalGroup, function_environments
    from .words import counted

    clock = Clock()
    topology = default_topology()
    thing = args.thing or os.environ.get(ENV_THING)
    common: Dict[str, str] = {}
    if thing:
        common["deviceId"] = thing
    if args.state_dir:
        common["stateDir"] = args.state_dir
    environ_status = None
    if args.status:
        from .status import status_topology

        topology, environ_status = status_topology(topology, args.status, common, overrides)
    environ_sensor, environ_anomaly = function_environments(topology, common, overrides)
    if not secret_file:
        log.warning(
            "no --secret-file: the anomaly function cannot open ServiceNow incidents "
            "(actions wait in the outbox)"
        )
    if settings is None:
        log.warning("no --endpoint or --mqtt: messages for the cloud stay on this device")

    log.debug(
        "state dir %s, sensor %s, broker %s, status page %s",
        environ_sensor.get("stateDir"),
        args.sensor or "the default",
        settings.url if settings is not None else "none",
        args.status or "off",
    )
    sensor = None
    if args.sensor:
        name = args.sensor.strip().lower()
        options: Dict[str, Any] = {}
        if name in ("i2c", "sensehat", "emulator"):
            sensor_settings = SensorSettings.from_mapping(environ_sensor)
            options["compensation_factor"] = sensor_settings.compensation_factor
            if name == "i2c":
                options["i2c_bus"] = sensor_settings.i2c_bus
        sensor = open_sensor(name, clock=clock, **options)

    stop_reason: Dict[str, str] = {}
    group = LocalGroup(
        environ_sensor,
        environ_anomaly,
        clock,
        topology=topology,
        sensor=sensor,
        secret_file=secret_file,
        bridge=settings,
        environ_status=environ_status,
    )
    with group:
        sensor_app = group.sensor

        def request_stop(reason: str) -> None:
            stop_reason.setdefault("why", reason)
            sensor_app.stop(timeout=0)

        previous = _install_sigterm(lambda: request_stop("SIGTERM"))
        timer = None
        if args.duration is not None:
            timer = threading.Timer(args.duration, request_stop, args=("--duration",))
            timer.daemon = True
            timer.start()
        log.info(
            "running as %s: readings every %s s; Ctrl-C to stop",
            sensor_app.settings.device_id,
            environ_sensor.get("period"),
        )
        group.start()
        try:
            sensor_app.run(max_ticks=args.max_ticks)
        except KeyboardInterrupt:
            stop_reason.setdefault("why", "Ctrl-C")
        finally:
            if timer is not None:
                timer.cancel()
            _restore_sigterm(previous)
            log.info("stopping (%s)", stop_reason.get("why", "done"))
            group.stop()
    summary = dict(group.anomaly_summary)
    mqtt = group.mqtt
    log.info(
        "stopped: %s, %s; %s opened, %s left in the outbox%s",
        counted(sensor_app.counts["readings"], "reading"),
        counted(sensor_app.counts["anomalies"], "anomaly event"),
        counted(summary.get("incidents_opened", 0), "incident"),
        counted(summary.get("actions_pending", 0), "action"),
        ""
        if mqtt is None
        else "; MQTT: {published} published, {rejected} rejected, {dropped} dropped, "
        "{lost} lost, {kept} kept for the next start".format(**mqtt.as_dict()),
    )
    if mqtt is not None:
        summary["mqtt"] = mqtt.summary()
        if mqtt.undelivered:
            log.error(
                "%d message(s) for %s were not delivered (exit status %d)",
                mqtt.undelivered,
                mqtt.broker,
                MQTT_LOST,
            )
    return exit_code_for(dict(summary, interrupted=stop_reason.get("why") == "Ctrl-C"))


def _install_sigterm(handler: Any) -> Any:
    """SIGTERM stops the loop as Ctrl-C does; only possible from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, lambda signum, frame: handler())
    except (ValueError, OSError):
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is None:
        return
    try:
        signal.signal(signal.SIGTERM, previous)
    except (ValueError, OSError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
