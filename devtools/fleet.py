"""``edge-agent simulate --fleet N``: a site of N Pis and its gateway, on the in-process core.

N sensor functions (each built through ``functions/sensor_function.py`` with its
own device id, its own sensor and its own episode state) and one gateway anomaly
function (``functions/anomaly_function.py`` with the site's variables) run on one
:class:`~agent.greengrass.local.LocalCore`, routed by the site's topology
(:func:`agent.site.topology.site_topology`): readings and episode events go from
the sensors to the gateway, as over the gateway's local broker. The stories are
in :mod:`devtools.fleet_stories` (or a replayed file with a ``device`` column).

The console groups what ServiceNow was asked by incident; the summary adds
``devices``, ``groups`` (each with its members and the ServiceNow calls it took)
and ``servicenow_calls``. With ``fast`` it runs in virtual time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, TextIO, Tuple

from agent.clock import Clock, VirtualClock
from agent.errors import ConfigError
from agent.greengrass.local import LocalCore
from agent.names import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID
from agent.servicenow.delivery import Outcome
from agent.site.topology import site_topology
from devtools.console import Console
from devtools.fleet_stories import DURATION, STORIES, Story
from devtools.simulation_loop import clock_text, deliver_until, round_start
from devtools.summary_fields import FLEET_SUMMARY_SCHEMA

DRAIN_S = 3600.0
MAX_FLEET = 5000


class FleetOptions:
    """What one fleet run is asked to do."""

    def __init__(
        self,
        devices: int,
        scenario: str = "site-humid-spell",
        duration: Optional[float] = None,
        period: float = 5.0,
        fast: bool = False,
        seed: int = 1,
        site: str = "sim-site",
        snow_url: Optional[str] = None,
        secret_file: Optional[str] = None,
        state_dir: Optional[str] = None,
        environment: Optional[Dict[str, str]] = None,
        replay: Optional[str] = None,
    ) -> None:
        self.devices = devices
        self.scenario = scenario
        self.duration = duration
        self.period = period
        self.fast = fast
        self.seed = seed
        self.site = site
        self.snow_url = snow_url
        self.secret_file = secret_file
        self.state_dir = state_dir
        self.environment = dict(environment or {})
        self.replay = replay


def check(options: FleetOptions) -> None:
    """Refuse what cannot run, before anything starts."""
    if options.replay is None:
        if not 1 <= options.devices <= MAX_FLEET:
            raise ConfigError(f"--fleet must be 1 to {MAX_FLEET} devices, got {options.devices}")
        if options.scenario not in STORIES:
            raise ConfigError(
                "--fleet runs a site's story: --scenario {}, got {!r}".format(
                    " or ".join(sorted(STORIES)), options.scenario
                )
            )
    if options.period <= 0:
        raise ConfigError(f"--period must be positive, got {options.period}")


class Calls:
    """ServiceNow calls per incident: the client's count, attributed to each action's group."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.per_group: Dict[str, int] = {}
        self.actions: Dict[str, List[Tuple[float, str]]] = {}
        self.numbers: Dict[str, str] = {}
        self._seen = 0

    def total(self) -> int:
        return sum(self.client.calls.values())

    def outcome(self, outcome: Outcome, now: float) -> None:
        corr = outcome.action.correlation_id
        total = self.total()
        self.per_group[corr] = self.per_group.get(corr, 0) + total - self._seen
        self._seen = total
        self.actions.setdefault(corr, []).append((now, outcome.kind))
        if outcome.incident is not None:
            self.numbers[corr] = outcome.incident.number


class Breaching:
    """Readings past an upper limit: what the seed's design turns into one incident each."""

    def __init__(self, environment: Dict[str, str]) -> None:
        self.limits = [
            (metric, float(environment[name]))
            for metric, name in (("temperature", "tempLimit"), ("humidity", "humidLimit"))
            if environment.get(name)
        ]
        self.count = 0

    def observe(self, reading: Any) -> None:
        for metric, limit in self.limits:
            value = getattr(reading, metric)
            if value is not None and value > limit:
                self.count += 1
                return


def run_fleet(options: FleetOptions, out: Optional[TextIO] = None) -> Dict[str, Any]:
    """Run the site; return its summary (``exit_code`` included)."""
    check(options)
    rows = None
    if options.replay is not None:
        from devtools.fleet_replay import read_fleet_file

        rows = read_fleet_file(options.replay)
    started_wall = time.monotonic()
    if rows is not None:
        start = rows.first_ts
    else:
        start = round_start(time.time())
    clock: Clock = VirtualClock(start=start) if options.fast else Clock()
    if not options.fast:
        start = clock.time()
    console = Console(out, clock)
    temporary = options.state_dir is None
    state_dir = options.state_dir or tempfile.mkdtemp(prefix="edge-agent-fleet-")
    if rows is not None:
        devices = rows.devices
        duration = options.duration if options.duration is not None else rows.span + options.period
    else:
        devices = ["pi-{:04d}".format(i + 1) for i in range(options.devices)]
        duration = options.duration if options.duration is not None else DURATION
    story = Story(options.scenario if rows is None else "replay", devices, options.seed)
    standin = None
    try:
        if options.snow_url is None:
            from devtools.simulate import _start_standin

            standin, secret_value = _start_standin(state_dir, None, console)
            snow_url = standin.url
        else:
            snow_url, secret_value = options.snow_url, None
        summary = _run(
            options,
            clock,
            console,
            state_dir,
            devices,
            duration,
            story,
            rows,
            snow_url,
            secret_value,
            start,
        )
        if standin is not None:
            incidents = standin.incidents()
            summary["incidents_in_standin"] = len(incidents)
            states = {i["correlation_id"]: i["state"] for i in incidents}
            for group in summary["groups"]:
                group["state"] = states.get(group["correlation_id"])
        summary["wall_seconds"] = round(time.monotonic() - started_wall, 3)
        _print_groups(summary, console)
        console.line(
            "done",
            "{} devices, {} readings; {} incidents, {} ServiceNow calls in {:.1f} s".format(
                len(devices),
                summary["readings"],
                len(summary["groups"]),
                summary["servicenow_calls"],
                summary["wall_seconds"],
            ),
        )
        summary["exit_code"] = 0 if summary["drained"] else 1
        return summary
    finally:
        if standin is not None:
            standin.stop()
        if temporary:
            shutil.rmtree(state_dir, ignore_errors=True)


def _run(
    options: FleetOptions,
    clock: Clock,
    console: Console,
    state_dir: str,
    devices: List[str],
    duration: float,
    story: Story,
    rows: Any,
    snow_url: str,
    secret_value: Optional[str],
    start: float,
) -> Dict[str, Any]:
    from functions import anomaly_function, sensor_function

    variables = dict(options.environment)
    variables.setdefault("period", "{:g}".format(options.period))
    topology = site_topology(options.site, devices, variables)
    core = LocalCore(topology, clock=clock)
    secret_name = topology.secrets[0].secret_name
    if options.secret_file:
        core.load_secret_file(secret_name, options.secret_file)
    else:
        core.add_secret(secret_name, secret_value or "{}")
    gateway_env = dict(topology.function(ANOMALY_FUNCTION_ID).environment)
    gateway_env.update(snowUrl=snow_url, stateDir=os.path.join(state_dir, "gateway"))
    gateway = anomaly_function.create_app(
        environ=gateway_env, runtime=core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock
    )
    core.register(ANOMALY_FUNCTION_ID, gateway.function_handler)
    calls = Calls(gateway.client)
    gateway.deliverer.on_outcome.append(lambda o: _outcome(o, calls, console, clock))
    sensor_env = dict(topology.function(SENSOR_FUNCTION_ID).environment)
    sensor_env["stateDir"] = os.path.join(state_dir, "sensors")
    sensor_env.pop("EDGE_AGENT_SENSOR", None)
    apps = []
    breaching = Breaching(sensor_env)
    for index, device in enumerate(devices):
        sensor = (
            rows.sensor(device, clock)
            if rows is not None
            else story.sensor(device, index, options.seed, clock, start)
        )
        app = sensor_function.create_app(
            environ=dict(sensor_env, deviceId=device),
            runtime=core.runtime_for(SENSOR_FUNCTION_ID),
            sensor=sensor,
            clock=clock,
        )
        app.live_config = None  # a fleet's devices follow no shadow here
        app.on_reading.append(breaching.observe)
        apps.append((device, app))
    console.line(
        "start",
        "site {}: {} devices, {} for {}{}; gateway groups by {}, waits {:g} s".format(
            options.site,
            len(devices),
            "replay of " + str(options.replay)
            if rows is not None
            else "scenario " + options.scenario,
            clock_text(duration),
            " (virtual time)" if options.fast else "",
            ",".join(gateway.settings.group_by),
            gateway.settings.group_wait,
        ),
    )
    end = start + duration
    readings = 0
    try:
        if isinstance(clock, VirtualClock):
            for at, due in _ticks(rows, apps, start, end, options.period):
                deliver_until(clock, gateway, at, _nothing)
                clock.advance_to(at)
                readings += _tick(due, story, at - start)
            deliver_until(clock, gateway, end, _nothing)
            clock.advance_to(end)
            if gateway.site is not None:
                gateway.site.stop_watching()  # the run is over, not the devices
            drained = deliver_until(clock, gateway, clock.time() + DRAIN_S, _nothing)
        else:
            gateway.start()
            for at, due in _ticks(rows, apps, start, end, options.period):
                clock.sleep(max(0.0, at - clock.time()))
                readings += _tick(due, story, at - start)
            clock.sleep(max(0.0, end - clock.time()))
            if gateway.site is not None:
                gateway.site.stop_watching()
            deadline = time.monotonic() + 60.0
            while gateway.next_attempt_at() is not None and time.monotonic() < deadline:
                gateway.wake()
                time.sleep(0.1)
            drained = gateway.next_attempt_at() is None
    finally:
        gateway.stop()
        summary = gateway.summary()
        site = gateway.site
        groups = _groups(site, calls) if site is not None else []
        device_states = site.device_states() if site is not None else {}
        gateway.close()
    return {
        "schema": FLEET_SUMMARY_SCHEMA,  # its fields: devtools/summary_fields.py
        "site": options.site,
        "scenario": options.replay or options.scenario,
        "fast": options.fast,
        "simulated_seconds": round(clock.time() - start, 1),
        "devices": {"count": len(devices), "by_state": device_states},
        "readings": readings,
        "episodes": {
            k: sum(app.counts[k] for _, app in apps) for k in ("breach", "update", "recovered")
        },
        "groups": groups,
        "servicenow_calls": calls.total(),
        "breaching_readings": breaching.count,
        "drained": drained,
        **{
            k: summary[k]
            for k in (
                "incidents_opened",
                "incidents_updated",
                "incidents_resolved",
                "actions_pending",
                "actions_dead_lettered",
            )
        },
    }


def _nothing(now: float) -> None:
    """No outage in a fleet run."""


def _ticks(rows: Any, apps: List[Tuple[str, Any]], start: float, end: float, period: float):
    """(time, the services that read then): every period for a story, the file's times for a replay."""
    if rows is not None:
        by_device = dict(apps)
        for at, names in rows.times():
            if at > end:
                return
            yield at, [(name, by_device[name]) for name in names]
        return
    i = 0
    while True:
        at = start + i * period
        if at >= end - 1e-9:
            return
        yield at, apps
        i += 1


def _tick(due: List[Tuple[str, Any]], story: Story, elapsed: float) -> int:
    count = 0
    for device, app in due:
        if story.alive(device, elapsed):
            app.tick()
            count += 1
    return count


def _outcome(outcome: Outcome, calls: Calls, console: Console, clock: Clock) -> None:
    calls.outcome(outcome, clock.time())
    if outcome.kind == "retry":
        return
    corr = outcome.action.correlation_id
    number = calls.numbers.get(corr, "?")
    text = outcome.action.fields.get("short_description") or outcome.action.fields.get(
        "work_notes", ""
    )
    console.line(number, "{:<9} {}".format(outcome.kind, text[:150]))


def _groups(site: Any, calls: Calls) -> List[Dict[str, Any]]:
    members = site.members_by_group()
    out = []
    for corr in sorted(calls.per_group, key=lambda c: calls.actions[c][0][0]):
        out.append(
            {
                "correlation_id": corr,
                "number": calls.numbers.get(corr),
                "members": members.get(corr, []),
                "actions": [kind for _, kind in calls.actions[corr] if kind != "retry"],
                "servicenow_calls": calls.per_group[corr],
            }
        )
    return out


def _print_groups(summary: Dict[str, Any], console: Console) -> None:
    for group in summary["groups"]:
        console.line(
            group["number"] or "?",
            "{}: {} ({} devices); {} ServiceNow calls; {}".format(
                group["correlation_id"],
                ", ".join(group["actions"]),
                len(group["members"]),
                group["servicenow_calls"],
                "resolved" if group.get("state") == "6" else "state {}".format(group.get("state")),
            ),
        )
