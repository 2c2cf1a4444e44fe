"""``edge-agent simulate``: the whole pipeline on a laptop, with the device's own function code.

Both functions are created through their entry modules (``functions/``), wired
to the local core emulation, which routes by the group's topology; the sensor
is the fake (or a replayed CSV) and ServiceNow is the local stand-in unless a
URL is given. With ``fast=True`` everything, retries included, runs in
virtual time.

Everything that can be checked is checked before anything starts
(:func:`prepare`): options, every function variable, the secret file's shape,
the replay file and the state folder. A bad one raises
:class:`agent.errors.ConfigError` (exit code 2) and nothing has run. A
replay runs on the file's own clock: the console shows its timestamps and the
run lasts its span.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

from agent.clock import Clock, VirtualClock
from agent.config import AnomalySettings, SensorSettings
from agent.credentials import Credentials
from agent.errors import ConfigError
from agent.greengrass.local import LocalCore
from agent.sensors import open_sensor
from agent.sensors.base import METRICS, Sensor
from agent.sensors.fake import get_scenario
from agent.topology import default_topology
from devtools.console import PROGRESS_EVERY, Console, WarningsToConsole
from devtools.exit_codes import exit_code_for, meaning
from devtools.local_group import build_group, check_secret_file, function_environments

log = logging.getLogger("edge_agent.simulate")

DEV_USER = "edge-agent-dev"
DRAIN_LIMIT_S = 3600.0  # simulated seconds to keep retrying after the last reading
REAL_DRAIN_LIMIT_S = 60.0  # wall seconds to wait for the outbox after a real-time run
DEFAULT_PERIOD = 5.0
STATE_FILES = (
    ("outbox.sqlite3", "the anomaly function's outbox"),
    ("servicenow-standin.sqlite3", "the ServiceNow stand-in's incidents"),
)


@dataclass
class SimulationOptions:
    scenario: str = "humid-spell"
    replay: Optional[str] = None
    duration: Optional[float] = None  # seconds; default: the scenario's length or the file's span
    period: Optional[float] = None  # seconds between readings; default: --set period, else 5
    fast: bool = False
    seed: int = 1
    snow_url: Optional[str] = None
    secret_file: Optional[str] = None
    state_dir: Optional[str] = None  # default: a temporary folder, removed after the run
    device_id: str = "sim-pi"
    outages: Sequence[Tuple[float, float]] = ()  # (start, end) seconds into the run
    environment: Dict[str, str] = field(default_factory=dict)  # extra function variables
    drain_timeout: float = DRAIN_LIMIT_S
    mqtt_url: Optional[str] = None
    mqtt_tls: Dict[str, Optional[str]] = field(default_factory=dict)  # ca, cert, key paths
    progress_every: float = PROGRESS_EVERY  # wall seconds between progress lines


@dataclass
class _Plan:
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


def prepare(options: SimulationOptions) -> _Plan:
    """Check everything that can be checked before the run; raise ConfigError naming what is wrong."""
    _check_positive("--duration", options.duration)
    _check_positive("--period", options.period)
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
    _check_outages(options.outages, duration)

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
        state_dir, temporary = _state_dir(options.state_dir)
    except BaseException:
        if sensor is not None:
            sensor.close()
        raise
    for environ in (environ_sensor, environ_anomaly):
        environ["stateDir"] = state_dir
    return _Plan(
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


def run(options: SimulationOptions, out: Optional[TextIO] = None) -> Dict[str, Any]:
    """Run one simulation and return its summary (``exit_code`` included).

    Raises :class:`ConfigError` before anything starts when an option, a
    variable, the secret file, the replay file or the state folder is bad.
    Ctrl-C stops the run early: the summary says ``interrupted``.
    """
    plan = prepare(options)
    if options.fast:
        clock: Clock = VirtualClock(
            start=plan.start if plan.start is not None else _round_start(time.time())
        )
    elif plan.start is not None:
        clock = _ShiftedClock(plan.start - time.time())  # real pace, the file's time
    else:
        clock = Clock()
    sensor = plan.sensor
    if sensor is None:
        sensor = open_sensor("fake", clock=clock, scenario=options.scenario, seed=options.seed)
    else:
        sensor.clock = clock
    metrics = getattr(sensor, "metrics", METRICS)
    console = Console(out, clock, metrics=metrics, progress_every=options.progress_every)
    warnings = WarningsToConsole(console)
    agent_log = logging.getLogger("agent")
    agent_log.addHandler(warnings)
    summary: Dict[str, Any] = {}
    try:
        summary = _run(options, plan, clock, sensor, console)
        return summary
    finally:
        agent_log.removeHandler(warnings)
        sensor.close()
        # A failed run leaves its temporary folder for a look; it was named at the start.
        if summary.get("state_dir_removed"):
            shutil.rmtree(plan.state_dir, ignore_errors=True)


def _run(
    options: SimulationOptions, plan: _Plan, clock: Clock, sensor: Sensor, console: Console
) -> Dict[str, Any]:
    state_dir = plan.state_dir
    if plan.temporary_state:
        console.line(
            "state",
            f"{state_dir} (temporary: removed after the run unless actions are left in it)",
        )
    else:
        console.line("state", state_dir)
    standin = None
    if options.snow_url is None:
        standin, secret_value = _start_standin(state_dir, plan.credentials, console)
        snow_url = standin.url
    else:
        snow_url = options.snow_url
        secret_value = None
        console.line("servicenow", snow_url)
    environ_sensor = dict(plan.environ_sensor)
    environ_anomaly = dict(plan.environ_anomaly, snowUrl=snow_url)

    topology = default_topology()
    core = LocalCore(topology)
    secret_name = environ_anomaly.get("snowSecretId") or topology.secrets[0].secret_name
    if options.secret_file:
        core.load_secret_file(secret_name, options.secret_file)
    elif secret_value is not None:
        core.add_secret(secret_name, secret_value)

    bridge = None
    anomaly_app = None
    start = clock.time()
    interrupted = False
    drained = False
    started_wall = time.monotonic()
    try:
        if options.mqtt_url:
            from agent.greengrass.mqtt_bridge import attach_bridge

            tls = {k: v for k, v in options.mqtt_tls.items() if v}
            bridge = attach_bridge(core, options.mqtt_url, **tls)
            console.line("mqtt", "bridging 'cloud' to {}".format(options.mqtt_url))
        sensor_app, anomaly_app = build_group(core, environ_sensor, environ_anomaly, clock, sensor)
        sensor_app.on_reading.append(console.reading)
        sensor_app.on_event.append(console.event)
        anomaly_app.deliverer.on_outcome.append(console.outcome)
        set_down = _outage_switch(standin, options.outages, start, console)
        ticks = _tick_times(sensor, start, plan.duration, plan.period, bool(options.replay))
        end = start + plan.duration

        def progress() -> str:
            return _progress_text(clock.time() - start, plan.duration, sensor_app, options.fast)

        try:
            _start_line(options, plan, console, sensor)
            if options.fast:
                drained = _run_virtual(
                    clock,
                    sensor_app,
                    anomaly_app,
                    ticks,
                    end,
                    options.drain_timeout,
                    set_down,
                    console,
                    progress,
                )
            else:
                anomaly_app.start()
                drained = _run_real(
                    clock, sensor_app, anomaly_app, ticks, end, set_down, console, progress
                )
        except KeyboardInterrupt:
            interrupted = True
            console.line("stopped", "interrupted (Ctrl-C)")
        finally:
            anomaly_app.stop()
    finally:
        if bridge is not None:
            bridge.close()
        incidents_in_standin = None
        if standin is not None:
            incidents_in_standin = len(standin.incidents())
            standin.stop()

    summary: Dict[str, Any] = {
        "scenario": options.replay or options.scenario,
        "fast": options.fast,
        "duration_seconds": plan.duration,
        "period_seconds": plan.period,
        "simulated_seconds": round(clock.time() - start, 1),
        "wall_seconds": round(time.monotonic() - started_wall, 3),
        "samples": sensor_app.counts["samples"],
        "readings_published": sensor_app.counts["readings"],
        "anomalies_published": sensor_app.counts["anomalies"],
        "episodes": {k: sensor_app.counts[k] for k in ("breach", "update", "recovered")},
        "errors": {
            "sensor": sensor_app.counts["sensor_errors"],
            "publish": sensor_app.counts["publish_errors"],
            "rejected_messages": anomaly_app.counts["rejected"],
        },
        "sensor": console.fault_counts(sensor_app.counts["sensor_errors"]),
        "messages_to_cloud": core.stats["to_cloud"],
        "drained": drained,
        "interrupted": interrupted,
        "state_dir": state_dir,
    }
    if options.replay:
        summary["replay"] = sensor.stats.as_dict()  # type: ignore[attr-defined]
    summary.update(anomaly_app.summary())
    anomaly_app.outbox.close()
    if incidents_in_standin is not None:
        summary["incidents_in_standin"] = incidents_in_standin
    summary["exit_code"] = exit_code_for(summary)
    summary["state_dir_removed"] = plan.temporary_state and not _kept_for(summary)
    _done_lines(summary, console, plan.temporary_state)
    return summary


# -- preparing ------------------------------------------------------------------------------


def _check_positive(option: str, value: Optional[float]) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{option} must be a positive number of seconds, got {value:g}")


def _check_outages(outages: Sequence[Tuple[float, float]], duration: float) -> None:
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


def _state_dir(given: Optional[str]) -> Tuple[str, bool]:
    if given is None:
        return tempfile.mkdtemp(prefix="edge-agent-sim-"), True
    try:
        os.makedirs(given, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot use --state-dir {given}: {exc.strerror}") from None
    for name, what in STATE_FILES:
        problem = _sqlite_problem(os.path.join(given, name))
        if problem:
            raise ConfigError(
                "{} ({}) is not a readable SQLite database: {}. Move it aside or choose "
                "another --state-dir".format(os.path.join(given, name), what, problem)
            )
    return given, False


def _sqlite_problem(path: str) -> Optional[str]:
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


def _start_standin(
    state_dir: str, credentials: Optional[Credentials], console: Console
) -> Tuple[Any, Optional[str]]:
    """The local stand-in; it accepts the secret file's credentials, else a throwaway user's."""
    from devtools.servicenow_standin import ServiceNowStandIn

    users: Dict[str, str] = {}
    clients: Dict[str, str] = {}
    secret_value = None
    if credentials is None:
        password = secrets.token_urlsafe(16)  # a throwaway development secret
        users[DEV_USER] = password
        secret_value = json.dumps({"username": DEV_USER, "password": password})
        who = f"a throwaway user {DEV_USER}"
    else:
        if credentials.username and credentials.password:
            users[credentials.username] = credentials.password
        if credentials.client_id and credentials.client_secret:
            clients[credentials.client_id] = credentials.client_secret
        who = "the secret file's {} credentials{}".format(
            credentials.kind, f" (user {credentials.username})" if credentials.username else ""
        )
    standin = ServiceNowStandIn(
        db_path=os.path.join(state_dir, "servicenow-standin.sqlite3"),
        users=users,
        oauth_clients=clients,
    ).start()
    console.line("servicenow", f"local stand-in at {standin.url}, accepting {who}")
    return standin, secret_value


# -- running -----------------------------------------------------------------------------


class _ShiftedClock(Clock):
    """Real time, moved by ``offset`` seconds: a real-time replay runs on the file's clock."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


def _round_start(now: float) -> float:
    return float(int(now // 60 * 60))


def _tick_times(
    sensor: Any, start: float, duration: float, period: float, replay: bool
) -> Iterator[float]:
    """When each reading is taken: every ``period`` seconds, or at the replay's own timestamps."""
    if replay:
        end = start + duration
        while True:
            at = sensor.next_ts()
            if at is None or at > end:
                return
            yield at
    else:
        # 1.2 s at 0.1 s is 12 readings, although 1.2 // 0.1 == 11.0 in floating point.
        for i in range(int(duration / period + 1e-9)):
            yield start + i * period


def _outage_switch(
    standin: Any, outages: Sequence[Tuple[float, float]], start: float, console: Console
) -> Callable[[float], None]:
    """A function of the clock that takes the stand-in down during the given windows."""
    state = {"down": False}

    def update(now: float) -> None:
        if standin is None or not outages:
            return
        down = any(a <= now - start < b for a, b in outages)
        if down != state["down"]:
            state["down"] = down
            standin.faults.down = down
            console.line("outage", "ServiceNow is {}".format("DOWN" if down else "back"))

    return update


def _deliver_until(
    clock: VirtualClock, anomaly_app: Any, until: float, set_down: Callable[[float], None]
) -> bool:
    """Deliver in virtual time, each retry at its own time, up to ``until``; True when nothing is left."""
    while True:
        set_down(clock.time())
        anomaly_app.pump()
        next_at = anomaly_app.next_attempt_at()
        if next_at is None:
            return True
        if next_at >= until:
            return False
        clock.advance_to(max(next_at, clock.time() + 0.001))  # always make progress


def _run_virtual(
    clock: VirtualClock,
    sensor_app: Any,
    anomaly_app: Any,
    ticks: Iterator[float],
    end: float,
    drain_timeout: float,
    set_down: Callable[[float], None],
    console: Console,
    progress: Callable[[], str],
) -> bool:
    for at in ticks:
        _deliver_until(clock, anomaly_app, at, set_down)  # retries due before this reading
        clock.advance_to(at)
        set_down(at)
        if not _tick(sensor_app, console):
            break
        console.progress(progress)
    _deliver_until(clock, anomaly_app, end, set_down)
    clock.advance_to(end)
    return _deliver_until(clock, anomaly_app, clock.time() + drain_timeout, set_down)


def _run_real(
    clock: Clock,
    sensor_app: Any,
    anomaly_app: Any,
    ticks: Iterator[float],
    end: float,
    set_down: Callable[[float], None],
    console: Console,
    progress: Callable[[], str],
) -> bool:
    for at in ticks:
        _sleep_until(clock, at, set_down, console, progress)
        set_down(clock.time())
        if not _tick(sensor_app, console):
            break
        console.progress(progress)
    _sleep_until(clock, end, set_down, console, progress)
    deadline = time.monotonic() + REAL_DRAIN_LIMIT_S
    while anomaly_app.next_attempt_at() is not None and time.monotonic() < deadline:
        anomaly_app.wake()
        time.sleep(0.1)
        console.progress(
            lambda: "waiting for ServiceNow: {} actions queued".format(
                anomaly_app.outbox.counts()["pending"]
            )
        )
    return anomaly_app.next_attempt_at() is None


def _sleep_until(
    clock: Clock,
    at: float,
    set_down: Callable[[float], None],
    console: Console,
    progress: Callable[[], str],
) -> None:
    # In slices, so progress lines and outages keep their times while readings are far apart.
    while True:
        left = at - clock.time()
        if left <= 0:
            return
        clock.sleep(min(left, 0.5))
        set_down(clock.time())
        console.progress(progress)


def _tick(sensor_app: Any, console: Console) -> bool:
    try:
        sensor_app.tick()
    except EOFError:
        return False
    console.after_tick(sensor_app.counts["sensor_errors"])
    return True


def _progress_text(elapsed: float, total: float, sensor_app: Any, fast: bool) -> str:
    episodes = sensor_app.judge.open_episodes()
    text = "{} of {} simulated ({:.0f}%), {} readings, {} open episode{}{}".format(
        _clock_text(elapsed),
        _clock_text(total),
        100.0 * min(elapsed, total) / total if total else 100.0,
        sensor_app.counts["readings"],
        len(episodes),
        "" if len(episodes) == 1 else "s",
        " ({})".format(", ".join(sorted(episodes))) if episodes else "",
    )
    if not fast and total > elapsed:
        text += ", {} to go".format(_clock_text(total - elapsed))
    return text


def _clock_text(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return (
        "{}:{:02d}:{:02d}".format(hours, *divmod(rest, 60))
        if hours
        else "{}:{:02d}".format(*divmod(rest, 60))
    )


def _start_line(options: SimulationOptions, plan: _Plan, console: Console, sensor: Any) -> None:
    pace = " (virtual time)" if options.fast else ""
    if options.replay:
        stats = sensor.stats
        console.line(
            "replay",
            "{}: {} to {} UTC; {}".format(
                options.replay, _utc(stats.first_ts), _utc(stats.last_ts), stats.describe()
            ),
        )
        if stats.used and not stats.in_order:
            console.line("replay", "rows played sorted by timestamp")
        console.line(
            "start",
            "replay of {} for {} ({}), at the file's own pace{}".format(
                options.replay,
                _clock_text(plan.duration),
                "the file's span" if options.duration is None else "--duration",
                pace,
            ),
        )
    else:
        console.line(
            "start",
            "scenario {} for {} at {:g}s per reading{}".format(
                options.scenario, _clock_text(plan.duration), plan.period, pace
            ),
        )


def _utc(ts: Optional[float]) -> str:
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _kept_for(summary: Dict[str, Any]) -> bool:
    """A temporary state folder is kept when it still holds actions, so nothing is lost."""
    return bool(summary.get("actions_pending") or summary.get("actions_dead_lettered"))


def _done_lines(summary: Dict[str, Any], console: Console, temporary: bool) -> None:
    console.line(
        "done",
        "{} readings, {} breaches; {} incidents opened, {} updated, {} resolved; {} actions "
        "left in the outbox, {} dead-lettered".format(
            summary["readings_published"],
            summary["episodes"]["breach"],
            summary["incidents_opened"],
            summary["incidents_updated"],
            summary["incidents_resolved"],
            summary["actions_pending"],
            summary["actions_dead_lettered"],
        ),
    )
    faults = summary["sensor"]
    if faults["errors"] or faults["invalid_values"] or faults["unchanged_streaks"]:
        console.line(
            "sensor",
            "{errors} read errors, {invalid_values} invalid values, {unchanged_streaks} "
            "stretches of identical readings".format(**faults),
        )
    if temporary:
        if summary["state_dir_removed"]:
            console.line("state", "removed the temporary folder {}".format(summary["state_dir"]))
        else:
            folder = summary["state_dir"]
            console.line("state", f"kept {folder}: it still holds incident actions")
            if summary["actions_dead_lettered"]:
                console.line(
                    "state",
                    f"fix what ServiceNow refused, then: edge-agent outbox --state-dir {folder} "
                    "--requeue-dead",
                )
            console.line(
                "state", f"deliver them with: edge-agent simulate --state-dir {folder} ..."
            )
    console.line("exit", "{} ({})".format(summary["exit_code"], meaning(summary["exit_code"])))


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
            _check_outages([(start, start + length)], math.inf)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        outages.append((start, start + length))
    return outages
