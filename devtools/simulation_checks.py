"""What ``edge-agent simulate`` checks before anything starts, and what it decides from that.

:func:`prepare` reads the options, every function variable (through the
functions' own validation), the secret file's shape, the replay file and the
state folder, and raises :class:`agent.errors.ConfigError` naming the first
bad one: the command exits 2 and nothing ran, no stand-in, no reading.
"""

from __future__ import annotations

import math
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from agent.config import AnomalySettings, SensorSettings
from agent.credentials import Credentials
from agent.errors import ConfigError
from agent.sensors import open_sensor
from agent.sensors.base import Sensor
from agent.sensors.fake import get_scenario
from agent.standalone.arguments import check_secret_file
from agent.standalone.group import function_environments
from agent.topology import default_topology
from devtools.simulation_changes import check_changes
from devtools.simulation_options import SimulationOptions

DEFAULT_PERIOD = 5.0
STATE_FILES = (
    ("outbox.sqlite3", "the anomaly function's outbox"),
    ("servicenow-standin.sqlite3", "the ServiceNow stand-in's incidents"),
)


@dataclass
class Plan:
    """What :func:`prepare` checked and decided."""

    sensor: Optional[Sensor]  # the replay (already scanned); the fake is made on the run's clock
    credentials: Optional[Credentials]
    duration: float
    period: float
    start: Optional[float]  # the replay's first timestamp; None: now
    state_dir: str
    temporary_state: bool
    environ_sensor: Dict[str, str]
    environ_anomaly: Dict[str, str]


def prepare(options: SimulationOptions) -> Plan:
    """Check everything that can be checked before the run; raise ConfigError naming what is wrong."""
    check_positive("--duration", options.duration)
    check_positive("--period", options.period)
    for name, flag in (("stateDir", "--state-dir"), ("snowUrl", "--snow-url")):
        if name in options.environment:
            raise ConfigError(f"give {flag} instead of --set {name}")
    if options.replay and (options.period is not None or "period" in options.environment):
        raise ConfigError(
            "--period and --set period do not apply to --replay: the file's own timestamps "
            "set the pace (use --fast to replay it in virtual time)"
        )
    set_period = options.environment.get("period")
    if options.period is not None and set_period is not None:
        raise ConfigError(
            f"give --period or --set period, not both (got {options.period:g} and {set_period})"
        )
    if options.snow_url:
        from agent.config import parse_snow_url

        # First: a URL with credentials in it is refused, and never echoed.
        parse_snow_url(options.snow_url, "--snow-url")
    if options.snow_url and not options.secret_file:
        raise ConfigError(
            "--snow-url needs --secret-file FILE: the ServiceNow credentials as stored in "
            'Secrets Manager, {"username": ..., "password": ...}'
        )
    credentials = check_secret_file(options.secret_file) if options.secret_file else None

    sensor: Optional[Sensor] = None
    start: Optional[float] = None
    if options.replay:
        sensor = open_sensor("replay", path=options.replay)
        stats = sensor.stats  # type: ignore[attr-defined]
        start = stats.first_ts
        duration = stats.span if options.duration is None else options.duration
        period = stats.period_hint or DEFAULT_PERIOD
    else:
        scenario = get_scenario(options.scenario)
        duration = scenario.duration if options.duration is None else options.duration
    check_outages(options.outages, duration)
    check_changes(options.changes, duration)

    # The stand-in's URL is not known yet; a loopback URL stands for it while checking.
    base = {"deviceId": options.device_id, "snowUrl": options.snow_url or "http://127.0.0.1"}
    if options.replay:
        base["period"] = repr(period)  # informational: the file sets the pace
    elif options.period is not None:
        base["period"] = repr(options.period)
    try:
        environ_sensor, environ_anomaly = function_environments(
            default_topology(), base, options.environment, {"stateDir": options.state_dir or "/"}
        )
        # The functions check every variable themselves at start; checking here first
        # means a bad one stops the run before the stand-in or anything else starts.
        sensor_settings = SensorSettings.from_mapping(environ_sensor)
        AnomalySettings.from_mapping(environ_anomaly)
        if not options.replay:
            period = sensor_settings.period
        state_dir, temporary = state_folder(options.state_dir)
    except BaseException:
        if sensor is not None:
            sensor.close()
        raise
    for environ in (environ_sensor, environ_anomaly):
        environ["stateDir"] = state_dir
    return Plan(
        sensor,
        credentials,
        duration,
        period,
        start,
        state_dir,
        temporary,
        environ_sensor,
        environ_anomaly,
    )


def check_positive(option: str, value: Optional[float]) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} must be a positive number of seconds, got {value:g}")


def check_outages(outages: Sequence[Tuple[float, float]], duration: float) -> None:
    for start, end in outages:
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ConfigError(f"--outage takes finite seconds, got {start:g}:{end - start:g}")
        if start < 0:
            raise ConfigError(
                f"--outage START must not be negative (seconds into the run), got {start:g}"
            )
        if end <= start:
            raise ConfigError(f"--outage DURATION must be positive, got {start:g}:{end - start:g}")
        if start >= duration:
            raise ConfigError(
                f"--outage {start:g}:{end - start:g} starts after the run ends ({duration:g} s): it would do nothing"
            )


def state_folder(given: Optional[str]) -> Tuple[str, bool]:
    if given is None:
        return tempfile.mkdtemp(prefix="edge-agent-sim-"), True
    try:
        os.makedirs(given, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use --state-dir {given}: {exc.strerror}") from None
    for name, what in STATE_FILES:
        problem = sqlite_problem(os.path.join(given, name))
        if problem:
            raise ConfigError(
                "{} ({}) is not a readable SQLite database: {}. Move it aside or choose "
                "another --state-dir".format(os.path.join(given, name), what, problem)
            )
    return given, False


def sqlite_problem(path: str) -> Optional[str]:
    if not os.path.exists(path):
        return None
    try:
        conn = sqlite3.connect(path)
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if row is None or row[0] != "ok":
        return "integrity check says {}".format(row[0] if row else "nothing")
    return None


def parse_outages(values: List[str]) -> List[Tuple[float, float]]:
    """``START:DURATION`` in seconds, e.g. ``120:600``; ValueError says what is wrong."""
    outages = []
    for value in values:
        try:
            start, length = (float(x) for x in value.split(":"))
        except ValueError:
            raise ValueError(f"--outage takes START:DURATION in seconds, got {value!r}")
        if not (math.isfinite(start) and math.isfinite(length)):
            raise ValueError(f"--outage takes a finite START:DURATION in seconds, got {value!r}")
        try:
            check_outages([(start, start + length)], math.inf)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        outages.append((start, start + length))
    return outages
