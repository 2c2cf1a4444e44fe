"""``edge-agent simulate``: the whole pipeline on a laptop, with the device's own function code.

Both functions are created through their entry modules (``functions/``), wired
to the local core emulation, which routes by the group's topology; the sensor
is the fake (or a replayed CSV) and ServiceNow is the local stand-in unless a
URL is given. With ``fast=True`` everything, retries included, runs in
virtual time.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from agent.clock import Clock, VirtualClock
from agent.greengrass.local import LocalCore
from agent.judge import EpisodeEvent
from agent.sensors import open_sensor
from agent.sensors.base import UNITS, Reading
from agent.topology import default_topology
from devtools.local_group import build_group, function_environments

log = logging.getLogger("edge_agent.simulate")

DEV_USER = "edge-agent-dev"
DRAIN_LIMIT_S = 3600.0  # simulated seconds to keep retrying after the last reading


@dataclass
class SimulationOptions:
    scenario: str = "humid-spell"
    replay: Optional[str] = None
    duration: Optional[float] = None  # seconds; default: the scenario's own length
    period: float = 5.0
    fast: bool = False
    seed: int = 1
    snow_url: Optional[str] = None
    secret_file: Optional[str] = None
    state_dir: Optional[str] = None
    device_id: str = "sim-pi"
    outages: Sequence[Tuple[float, float]] = ()  # (start, end) seconds into the run
    environment: Dict[str, str] = field(default_factory=dict)  # extra function variables
    drain_timeout: float = DRAIN_LIMIT_S
    mqtt_url: Optional[str] = None
    mqtt_tls: Dict[str, Optional[str]] = field(default_factory=dict)  # ca, cert, key paths


class Console:
    """Live, readable progress lines; a reading line once a simulated minute."""

    def __init__(self, out: Optional[TextIO], clock: Clock) -> None:
        self.out = out
        self.clock = clock
        self._last_reading_line = float("-inf")

    def line(self, kind: str, text: str) -> None:
        if self.out is None:
            return
        stamp = datetime.fromtimestamp(self.clock.time(), tz=timezone.utc).strftime("%H:%M:%S")
        self.out.write(f"{stamp}  {kind:<9} {text}\n")
        self.out.flush()

    def reading(self, reading: Reading) -> None:
        if reading.ts - self._last_reading_line < 60:
            return
        self._last_reading_line = reading.ts
        parts = []
        for metric in ("temperature", "humidity", "pressure"):
            value = reading.value(metric)
            if value is not None:
                parts.append(f"{metric[0]}={value:.1f}{UNITS[metric]}")
        self.line("reading", "  ".join(parts) or "(no valid values)")

    def event(self, event: EpisodeEvent) -> None:
        unit = UNITS[event.metric]
        self.line(
            event.event.upper(),
            f"{event.metric} {event.value:.1f}{unit} (limit {event.limit:g}{unit}, "
            f"peak {event.peak:.1f}{unit})  {event.episode_id}",
        )


class _IncidentLog(logging.Handler):
    """Shows the anomaly function's ServiceNow outcomes on the console."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.console.line(record.levelname, message)
        elif message.startswith(
            ("opened incident", "resolved incident", "added a work note", "incident ")
        ):
            self.console.line("SNOW", message)


def run(options: SimulationOptions, out: Optional[TextIO] = None) -> Dict[str, Any]:
    """Run one simulation and return its summary."""
    clock: Clock = VirtualClock(start=_round_start(time.time())) if options.fast else Clock()
    console = Console(out, clock)
    state_dir = options.state_dir or tempfile.mkdtemp(prefix="edge-agent-sim-")
    os.makedirs(state_dir, exist_ok=True)
    standin = None
    password = None
    if options.snow_url is None:
        from devtools.servicenow_standin import ServiceNowStandIn

        password = secrets.token_urlsafe(16)  # a throwaway development secret
        standin = ServiceNowStandIn(
            db_path=os.path.join(state_dir, "servicenow-standin.sqlite3"),
            users={DEV_USER: password},
        ).start()
        snow_url = standin.url
        console.line("servicenow", f"local stand-in at {snow_url}")
    else:
        from agent.config import parse_snow_url

        # Checked before it is shown: a URL with credentials in it is refused, unechoed.
        snow_url = parse_snow_url(options.snow_url, "--snow-url")
        console.line("servicenow", snow_url)

    topology = default_topology()
    environ_sensor, environ_anomaly = function_environments(
        topology,
        {
            "stateDir": state_dir,
            "deviceId": options.device_id,
            "period": str(options.period),
            "snowUrl": snow_url,
        },
        options.environment,
    )

    core = LocalCore(topology)
    secret_name = environ_anomaly.get("snowSecretId") or topology.secrets[0].secret_name
    if options.secret_file:
        core.load_secret_file(secret_name, options.secret_file)
    elif password is not None:
        core.add_secret(secret_name, json.dumps({"username": DEV_USER, "password": password}))

    bridge = None
    if options.mqtt_url:
        from agent.greengrass.mqtt_bridge import attach_bridge

        tls = {k: v for k, v in options.mqtt_tls.items() if v}
        bridge = attach_bridge(core, options.mqtt_url, **tls)
        console.line("mqtt", "bridging 'cloud' to {}".format(options.mqtt_url))

    if options.replay:
        sensor = open_sensor("replay", clock=clock, path=options.replay)
    else:
        sensor = open_sensor("fake", clock=clock, scenario=options.scenario, seed=options.seed)
    duration = options.duration
    if duration is None:
        if options.replay:
            duration = len(sensor) * options.period  # type: ignore[arg-type]
        else:
            duration = sensor.scenario.duration  # type: ignore[attr-defined]

    sensor_app, anomaly_app = build_group(core, environ_sensor, environ_anomaly, clock, sensor)
    sensor_app.on_reading.append(console.reading)
    sensor_app.on_event.append(console.event)
    handler = _IncidentLog(console)
    agent_log = logging.getLogger("agent")
    agent_log.addHandler(handler)
    previous_level = agent_log.level
    agent_log.setLevel(logging.INFO)

    start = clock.time()
    set_down = _outage_switch(standin, options.outages, start, console)
    console.line(
        "start",
        "scenario {} for {:.0f}s at {:g}s per reading{}".format(
            options.replay or options.scenario,
            duration,
            options.period,
            " (virtual time)" if options.fast else "",
        ),
    )
    started_wall = time.monotonic()
    try:
        ticks = int(duration // options.period)
        if options.fast:
            _run_virtual(clock, sensor_app, anomaly_app, ticks, options.period, set_down)
            drained = _drain_virtual(clock, anomaly_app, options.drain_timeout, set_down)
        else:
            anomaly_app.start()
            _run_real(clock, sensor_app, ticks, options.period, set_down)
            drained = _drain_real(anomaly_app, min(options.drain_timeout, 60.0))
            anomaly_app.stop()
    finally:
        agent_log.removeHandler(handler)
        agent_log.setLevel(previous_level)
        if bridge is not None:
            bridge.close()
        if standin is not None:
            incidents_in_standin = len(standin.incidents())
            standin.stop()
        else:
            incidents_in_standin = None

    summary: Dict[str, Any] = {
        "scenario": options.replay or options.scenario,
        "fast": options.fast,
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
        "messages_to_cloud": core.stats["to_cloud"],
        "drained": drained,
        "state_dir": state_dir,
    }
    summary.update(anomaly_app.summary())
    if incidents_in_standin is not None:
        summary["incidents_in_standin"] = incidents_in_standin
    console.line(
        "done",
        "{} incidents opened, {} updated, {} resolved; {} actions left in the "
        "outbox, {} dead-lettered".format(
            summary["incidents_opened"],
            summary["incidents_updated"],
            summary["incidents_resolved"],
            summary["actions_pending"],
            summary["actions_dead_lettered"],
        ),
    )
    anomaly_app.outbox.close()
    return summary


def _round_start(now: float) -> float:
    return float(int(now // 60 * 60))


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


def _run_virtual(
    clock: VirtualClock,
    sensor_app: Any,
    anomaly_app: Any,
    ticks: int,
    period: float,
    set_down: Callable[[float], None],
) -> None:
    for _ in range(ticks):
        set_down(clock.time())
        try:
            sensor_app.tick()
        except EOFError:
            break
        tick_end = clock.time() + period
        # Retries that come due between two readings happen at their own time.
        while True:
            anomaly_app.pump()
            next_at = anomaly_app.next_attempt_at()
            if next_at is None or next_at >= tick_end:
                break
            clock.advance_to(max(next_at, clock.time() + 0.001))  # always make progress
            set_down(clock.time())
        clock.advance_to(tick_end)


def _drain_virtual(
    clock: VirtualClock, anomaly_app: Any, limit: float, set_down: Callable[[float], None]
) -> bool:
    deadline = clock.time() + limit
    while True:
        set_down(clock.time())
        anomaly_app.pump()
        next_at = anomaly_app.next_attempt_at()
        if next_at is None:
            return True
        if next_at > deadline:
            return False
        clock.advance_to(max(next_at, clock.time() + 0.001))


def _run_real(
    clock: Clock, sensor_app: Any, ticks: int, period: float, set_down: Callable[[float], None]
) -> None:
    next_at = clock.monotonic()
    for _ in range(ticks):
        set_down(clock.time())
        try:
            sensor_app.tick()
        except EOFError:
            break
        next_at += period
        clock.sleep(next_at - clock.monotonic())


def _drain_real(anomaly_app: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if anomaly_app.next_attempt_at() is None:
            return True
        anomaly_app.wake()
        time.sleep(0.1)
    return anomaly_app.next_attempt_at() is None


def parse_outages(values: List[str]) -> List[Tuple[float, float]]:
    """``START:DURATION`` in seconds, e.g. ``120:600``."""
    outages = []
    for value in values:
        try:
            start, length = (float(x) for x in value.split(":"))
        except ValueError:
            raise ValueError(f"--outage takes START:DURATION in seconds, got {value!r}")
        outages.append((start, start + length))
    return outages
