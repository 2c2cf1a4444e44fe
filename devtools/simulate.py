"""``edge-agent simulate``: the whole pipeline on a laptop, with the device's own function code.

Both functions are created through their entry modules (``functions/``), wired
to the local core emulation, which routes by the group's topology; the sensor
is the fake (or a replayed CSV) and ServiceNow is the local stand-in unless a
URL is given. With ``fast=True`` everything, retries included, runs in
virtual time.

Everything that can be checked is checked before anything starts
(:func:`devtools.simulation_checks.prepare`); a bad option, variable, secret
file, replay file or state folder raises :class:`agent.errors.ConfigError`
(exit code 2) and nothing has run. A replay runs on the file's own clock: the
console shows its timestamps and the run lasts its span. What the console
shows comes from the services' observers (:mod:`devtools.console`); the loops
are in :mod:`devtools.simulation_loop`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

from agent.clock import Clock, VirtualClock
from agent.credentials import Credentials
from agent.schema import METRICS
from agent.sensors import open_sensor
from agent.sensors.base import Sensor
from agent.standalone.exit_codes import (
    SENSOR_FAILED,
    exit_code_for,
    meaning,
    sensor_failures,
)
from agent.standalone.group import LocalGroup
from agent.standalone.mqtt_bridge.options import BridgeOptions
from agent.standalone.status import status_topology
from agent.topology import STATUS_SWITCH, default_topology
from devtools.console import Console, LogTimes, WarningsToConsole
from devtools.simulation_changes import change_switch, config_line
from devtools.simulation_checks import Plan, parse_outages, prepare
from devtools.simulation_loop import (
    ShiftedClock,
    clock_text,
    outage_switch,
    progress_text,
    round_start,
    run_real,
    run_virtual,
    tick_times,
)
from devtools.simulation_options import SimulationOptions
from devtools.summary_fields import SUMMARY_SCHEMA

__all__ = ["SimulationOptions", "parse_outages", "prepare", "run"]

log = logging.getLogger("edge_agent.simulate")

DEV_USER = "edge-agent-dev"


def run(
    options: SimulationOptions,
    out: Optional[TextIO] = None,
    on_finished: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> Dict[str, Any]:
    """Run one simulation and return its summary (``exit_code`` included).

    Raises :class:`ConfigError` before anything starts when an option, a
    variable, the secret file, the replay file or the state folder is bad.
    Ctrl-C stops the run early: the summary says ``interrupted``. The summary
    is also handed to ``on_finished`` as soon as the run ends: with ``serve``
    and ``fast`` the status page then serves on until Ctrl-C or SIGTERM.
    """
    plan = prepare(options)
    if options.fast:
        clock: Clock = VirtualClock(
            start=plan.start if plan.start is not None else round_start(time.time())
        )
    elif plan.start is not None:
        clock = ShiftedClock(plan.start - time.time())  # real pace, the file's time
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
    log_times = LogTimes(clock).__enter__()
    summary: Dict[str, Any] = {}
    try:
        summary = _run(options, plan, clock, sensor, console, on_finished)
        return summary
    finally:
        log_times.__exit__()
        agent_log.removeHandler(warnings)
        sensor.close()
        # A failed run leaves its temporary folder for a look; it was named at the start.
        if summary.get("state_dir_removed"):
            shutil.rmtree(plan.state_dir, ignore_errors=True)


def _run(
    options: SimulationOptions,
    plan: Plan,
    clock: Clock,
    sensor: Sensor,
    console: Console,
    on_finished: Optional[Callable[[Dict[str, Any]], None]] = None,
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
    start = clock.time()
    started_wall = time.monotonic()
    try:
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
        environ_status = None
        if options.serve:
            topology, environ_status = status_topology(
                topology, options.serve, {"stateDir": state_dir}, options.environment
            )
            environ_sensor[STATUS_SWITCH] = environ_anomaly[STATUS_SWITCH] = "on"
        bridge = _bridge_options(options)
        if bridge is not None:
            console.line("mqtt", "bridging 'cloud' to {}".format(options.mqtt_url))
        # Entered after the console's warning handler is in place: a broker that refuses at
        # once is shown. Its shadows in the state folder, as a core keeps them: a run again
        # resumes them.
        group = LocalGroup(
            environ_sensor,
            environ_anomaly,
            clock,
            topology=topology,
            sensor=sensor,
            secret_file=options.secret_file,
            secret_value=secret_value,
            shadow_path=os.path.join(state_dir, "local-shadows.json"),
            bridge=bridge,
            environ_status=environ_status,
            fast=options.fast,
            line=console.line,
        )
        with group:
            drained, interrupted = _drive(options, plan, clock, group, standin, console, start)
            still_open = _open_episodes(group)  # before stop() closes the outbox
            if options.fast:
                # Virtual time ran ahead of the real clock: what the outbox keeps is made
                # real time again, so a run again (--fast or not) finds it due on time.
                group.anomaly.outbox.rebase_after_clock_step(time.time())
            group.stop()
            summary = _summary(options, plan, clock, group, console, start, started_wall)
            summary.update(drained=drained, interrupted=interrupted, open_episodes=still_open)
            if standin is not None:
                summary["incidents_in_standin"] = len(standin.incidents())
                summary["alerts_in_standin"] = _alert_lines(standin.alerts(), console)
                standin.stop()
                standin = None
            summary["exit_code"] = exit_code_for(summary)
            summary["state_dir_removed"] = plan.temporary_state and not _kept_for(summary)
            _done_lines(summary, console, plan.temporary_state)
            if group.status is not None:
                group.status.after_run(
                    summary, on_finished, options.fast and not interrupted, console.line
                )
            elif on_finished is not None:
                on_finished(summary)
    finally:
        if standin is not None:
            standin.stop()
    return summary


def _drive(
    options: SimulationOptions,
    plan: Plan,
    clock: Clock,
    group: LocalGroup,
    standin: Any,
    console: Console,
    start: float,
) -> Tuple[bool, bool]:
    """The run itself: readings and deliveries at their times; (drained, interrupted)."""
    sensor_app, anomaly_app = group.sensor, group.anomaly
    sensor_app.on_reading.append(console.reading)
    sensor_app.on_event.append(console.event)
    if sensor_app.live_config is not None:
        sensor_app.live_config.on_change.append(config_line(console.line))
    anomaly_app.deliverer.on_outcome.append(console.outcome)
    set_down = outage_switch(standin, options.outages, start, console)
    if options.changes and sensor_app.live_config is not None:
        bring_in = change_switch(
            group.core, sensor_app.live_config.thing, options.changes, start, console.line
        )
        set_down = _both(set_down, bring_in)
    # The period may change during the run (--at SECONDS:period=...).
    ticks = tick_times(
        sensor_app.sensor,
        start,
        plan.duration,
        lambda: sensor_app.settings.period,
        bool(options.replay),
    )
    end = start + plan.duration

    def progress() -> str:
        return progress_text(clock.time() - start, plan.duration, sensor_app, options.fast)

    try:
        _start_line(options, plan, console, sensor_app.sensor)
        if isinstance(clock, VirtualClock):  # --fast
            drained = run_virtual(
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
            group.start()
            drained = run_real(
                clock, sensor_app, anomaly_app, ticks, end, set_down, console, progress
            )
    except KeyboardInterrupt:
        console.line("stopped", "interrupted (Ctrl-C)")
        return False, True
    return drained, False


def _summary(
    options: SimulationOptions,
    plan: Plan,
    clock: Clock,
    group: LocalGroup,
    console: Console,
    start: float,
    started_wall: float,
) -> Dict[str, Any]:
    """The run's summary, from the stopped group's counts (its fields: summary_fields.py)."""
    sensor_app = group.sensor
    live_counts = sensor_app.live_config.counts if sensor_app.live_config is not None else {}
    live_counts = {k: live_counts.get(k, 0) for k in ("applied", "rejected")}
    summary: Dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,  # its fields: devtools/summary_fields.py
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
        "publish_errors": sensor_app.counts["publish_errors"],
        "outages": console.outage_list(),
        "sensor": console.fault_counts(sensor_app.counts["sensor_errors"]),
        "messages_to_cloud": group.core.stats["to_cloud"],
        "config_changes_applied": live_counts["applied"],
        "config_changes_rejected": live_counts["rejected"],
        "drained": False,
        "interrupted": False,
        "state_dir": plan.state_dir,
    }
    if options.replay:
        summary["replay"] = sensor_app.sensor.stats.as_dict()  # type: ignore[attr-defined]
    summary.update(group.anomaly_summary)
    if group.mqtt is not None:
        summary["mqtt"] = group.mqtt.summary()
        console.line(
            "mqtt",
            "{published} published, {rejected} rejected, {dropped} dropped, {lost} lost "
            "(to {broker})".format(**summary["mqtt"]),
        )
    return summary


def _bridge_options(options: SimulationOptions) -> Optional[BridgeOptions]:
    """The MQTT bridge's options for ``--mqtt``, or None."""
    if not options.mqtt_url:
        return None
    tls = {k: v for k, v in options.mqtt_tls.items() if v}
    return BridgeOptions(options.mqtt_url, close_timeout=options.mqtt_close_timeout, **tls)


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


def _start_line(options: SimulationOptions, plan: Plan, console: Console, sensor: Any) -> None:
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
                clock_text(plan.duration),
                "the file's span" if options.duration is None else "--duration",
                pace,
            ),
        )
    else:
        console.line(
            "start",
            "scenario {} for {} at {:g}s per reading{}".format(
                options.scenario, clock_text(plan.duration), plan.period, pace
            ),
        )


def _both(first: Callable[[float], None], second: Callable[[float], None]) -> Callable:
    def both(now: float) -> None:
        first(now)
        second(now)

    return both


def _utc(ts: Optional[float]) -> str:
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _kept_for(summary: Dict[str, Any]) -> bool:
    """A temporary state folder is kept when it still holds actions or an open episode (its
    incident is resolved only by a run that knows it), so nothing is lost."""
    return bool(
        summary.get("actions_pending")
        or summary.get("actions_dead_lettered")
        or summary.get("open_episodes")
    )


def _open_episodes(group: LocalGroup) -> List[Dict[str, Any]]:
    """The episodes still open when the run ends, with their incident's number if known."""
    from agent.servicenow.incidents import correlation_id

    found = []
    for metric, episode_id in sorted(group.sensor.judge.open_episodes().items()):
        try:
            incident = group.anomaly.outbox.incident(correlation_id(episode_id))
        except Exception:  # the outbox is unreadable: the episode is still said
            incident = None
        found.append(
            {
                "episode_id": episode_id,
                "metric": metric,
                "incident": incident.number if incident is not None else None,
            }
        )
    return found


def _alert_lines(alerts: List[Dict[str, Any]], console: Console) -> int:
    """The Event Management alerts the stand-in derived from the events (snowSink=event)."""
    for alert in alerts:
        console.line(
            "servicenow",
            "stand-in alert {}: {} on {}, severity {}, {} ({} event{})".format(
                alert["number"],
                alert["resource"],
                alert["node"],
                alert["severity"],
                alert["state"].lower(),
                alert["events"],
                "" if alert["events"] == 1 else "s",
            ),
        )
    return len(alerts)


def _done_lines(summary: Dict[str, Any], console: Console, temporary: bool) -> None:
    from agent.standalone.words import counted

    if summary.get("events_sent") or summary.get("events_cleared"):
        delivered = "{} sent, {} cleared".format(
            counted(summary["events_sent"], "event"), summary["events_cleared"]
        )
    else:
        delivered = "{} opened, {} updated, {} resolved".format(
            counted(summary["incidents_opened"], "incident"),
            summary["incidents_updated"],
            summary["incidents_resolved"],
        )
    console.line(
        "done",
        "{}, {}; {}; {} left in the outbox, {} dead-lettered".format(
            counted(summary["readings_published"], "reading"),
            counted(summary["episodes"]["breach"], "breach"),
            delivered,
            counted(summary["actions_pending"], "action"),
            summary["actions_dead_lettered"],
        ),
    )
    if summary["outages"]:
        count = len(summary["outages"])
        console.line(
            "outage",
            "ServiceNow: {} {}, {} retries in all: {}".format(
                count,
                "outage" if count == 1 else "outages",
                summary["retries"],
                console.outage_text(),
            ),
        )
    faults = summary["sensor"]
    if faults["errors"] or faults["invalid_values"] or faults["unchanged_streaks"]:
        console.line(
            "sensor",
            "{}, {}, {}".format(
                counted(faults["errors"], "read error"),
                counted(faults["invalid_values"], "invalid value"),
                counted(
                    faults["unchanged_streaks"],
                    "stretch of identical readings",
                    "stretches of identical readings",
                ),
            ),
        )
    folder = summary["state_dir"]
    for episode in summary.get("open_episodes") or ():
        console.line(
            "open",
            "{} stays open ({}, {}): run again with --state-dir {} to resolve it once the "
            "readings are back within limits".format(
                episode["incident"] or "its incident (not opened yet)",
                episode["metric"],
                episode["episode_id"],
                folder,
            ),
        )
    if temporary:
        if summary["state_dir_removed"]:
            console.line("state", "removed the temporary folder {}".format(summary["state_dir"]))
        else:
            holds = []
            if summary.get("actions_pending") or summary.get("actions_dead_lettered"):
                holds.append("incident actions")
            if summary.get("open_episodes"):
                holds.append("open episodes")
            console.line("state", "kept {}: it still holds {}".format(folder, " and ".join(holds)))
            if summary["actions_dead_lettered"]:
                console.line(
                    "state",
                    f"fix what ServiceNow refused, then: edge-agent outbox --state-dir {folder} "
                    "--requeue-dead",
                )
            if summary.get("actions_pending") or summary.get("actions_dead_lettered"):
                console.line(
                    "state", f"deliver them with: edge-agent simulate --state-dir {folder} ..."
                )
    console.line("exit", exit_text(summary))


def exit_text(summary: Dict[str, Any]) -> str:
    """The last console line: the exit code, what it means, and the sensor's failures counted
    (a run whose readings were all delivered but whose sensor failed is not a clean run)."""
    code = summary["exit_code"]
    faults = summary["sensor"]
    failed = "{} of {} sensor reads failed, {} {} invalid".format(
        faults["errors"],
        summary["samples"],
        faults["invalid_values"],
        "value" if faults["invalid_values"] == 1 else "values",
    )
    if code == SENSOR_FAILED:
        return "{} ({}; everything read was delivered)".format(code, failed)
    if sensor_failures(summary) or faults["invalid_values"]:
        return "{} ({}; also {})".format(code, meaning(code), failed)
    return "{} ({})".format(code, meaning(code))
