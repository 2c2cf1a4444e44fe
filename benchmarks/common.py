"""Shared pieces of the benchmarks: statistics, machine facts, and the wired-up pipeline."""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

from agent.clock import VirtualClock
from agent.greengrass.local import LocalCore
from agent.schema import ANOMALY_SCHEMA
from agent.sensors.base import Reading, Sensor
from agent.topology import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID, default_topology

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNOW_USER = "edge-agent-bench"
DEVICE_ID = "bench-pi"
START = 1_790_000_000.0  # virtual epoch of every benchmark clock


# -- statistics ---------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating between ranks as numpy's default does."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float], digits: int = 2) -> Dict[str, float]:
    """median, p90, p99, mean, min, max and n of ``values`` (in their own unit)."""
    return {
        "n": len(values),
        "median": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "mean": round(sum(values) / len(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def ns_to_us(values: Iterable[int]) -> List[float]:
    return [v / 1e3 for v in values]


def ns_to_ms(values: Iterable[int]) -> List[float]:
    return [v / 1e6 for v in values]


# -- the machine ------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def filesystem_of(path: str) -> str:
    """``type (device)`` of the mount holding ``path``, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            for line in handle:
                device, mount, fstype = line.split()[:3]
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best[0]):
                    best = (mount, fstype, device)
    except OSError:
        pass
    return f"{best[1]} ({best[2]})"


def machine_info(state_dir: str) -> Dict[str, Any]:
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        revision = ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "git_revision": revision or None,
        "state_dir_filesystem": filesystem_of(state_dir),
    }


# -- test doubles that live only here ------------------------------------------------
class ScriptedSensor(Sensor):
    """A sensor whose temperature is set by the benchmark: ``hot`` reads 38 °C, else 22 °C.

    The breach-to-incident benchmark drives episodes with it, one breach at a
    chosen tick, instead of waiting for a fake-sensor story to come round.
    """

    name = "scripted"

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(clock)
        self.hot = False

    def read(self) -> Reading:
        return Reading(self.clock.time(), 38.0 if self.hot else 22.0, 40.0, 1013.0)


class WallWaitClock(VirtualClock):
    """Virtual timestamps, but ``wait`` really blocks (on the event or for the seconds).

    The anomaly function's delivery worker waits on the clock; with a plain
    :class:`VirtualClock` it would spin. Timestamps stay virtual so episode ids
    (whole seconds of the first breaching sample) are distinct however fast the
    episodes run.
    """

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))


def function_environment(function_id: str, **extra: str) -> Dict[str, str]:
    """The function's variables from the default topology, plus ``extra``."""
    env = dict(default_topology().function(function_id).environment)
    env.update(extra)
    return env


def secret_json(password: str) -> str:
    return json.dumps({"username": SNOW_USER, "password": password})


def new_password() -> str:
    return secrets.token_urlsafe(16)


def anomaly_message(
    episode: int, event: str = "breach", seq: int = 0, device: str = DEVICE_ID
) -> Dict[str, Any]:
    """A valid ``edge-agent/anomaly/1`` message for episode number ``episode``."""
    started = START + 600.0 * episode
    ts = started + (10.0 if event == "breach" else 70.0)
    return {
        "schema": ANOMALY_SCHEMA,
        "event": event,
        "episode_id": f"{device}:temperature:upper:{int(started)}",
        "seq": seq,
        "device": device,
        "metric": "temperature",
        "bound": "upper",
        "unit": "°C",
        "limit": 30.0,
        "value": 38.0 if event == "breach" else 22.0,
        "peak": 38.2,
        "started_at": started,
        "ts": ts,
        "title": "Temperature above limit"
        if event == "breach"
        else "Temperature back within limit",
    }


@dataclass
class Pipeline:
    """Both functions created through their entry modules, wired to one local core."""

    core: LocalCore
    sensor_app: Any
    anomaly_app: Any
    clock: VirtualClock

    def close(self) -> None:
        self.anomaly_app.stop()
        self.anomaly_app.outbox.close()


def build_pipeline(
    state_dir: str,
    snow_url: str,
    password: str,
    clock: VirtualClock,
    sensor: Optional[Sensor] = None,
) -> Pipeline:
    """The default group on a :class:`LocalCore`, as ``edge-agent simulate`` wires it."""
    from functions import anomaly_function, sensor_function

    topology = default_topology()
    core = LocalCore(topology)
    core.add_secret(topology.secrets[0].secret_name, secret_json(password))
    common = {"stateDir": state_dir, "deviceId": DEVICE_ID}
    sensor_app = None
    if sensor is not None:
        sensor_app = sensor_function.create_app(
            environ=function_environment(SENSOR_FUNCTION_ID, **common),
            runtime=core.runtime_for(SENSOR_FUNCTION_ID),
            sensor=sensor,
            clock=clock,
        )
        core.register(SENSOR_FUNCTION_ID, sensor_function.function_handler)
    # The request-rate cap (snowMaxRequestsPerSecond, 5/s by default) is switched
    # off: these benchmarks measure what the agent costs, not the pace it keeps.
    anomaly_app = anomaly_function.create_app(
        environ=function_environment(
            ANOMALY_FUNCTION_ID, snowUrl=snow_url, snowMaxRequestsPerSecond="0", **common
        ),
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=clock,
    )
    core.register(ANOMALY_FUNCTION_ID, anomaly_app.function_handler)
    return Pipeline(core, sensor_app, anomaly_app, clock)


STANDIN_MODES = ("process", "thread")


def start_standin(password: str, mode: str = "thread") -> Any:
    """The local ServiceNow stand-in: ``.url`` and ``.stop()``, in a process or a thread."""
    if mode == "process":
        # Its own process: a ServiceNow instance does not share the agent's
        # interpreter, so its request handling should not take the agent's GIL.
        from devtools.servicenow_standin import StandInProcess

        return StandInProcess(users={SNOW_USER: password})
    if mode != "thread":
        raise ValueError(f"stand-in mode must be one of {STANDIN_MODES}, got {mode!r}")
    from devtools.servicenow_standin import ServiceNowStandIn

    return ServiceNowStandIn(users={SNOW_USER: password}).start()
