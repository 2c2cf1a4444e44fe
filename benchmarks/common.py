"""Shared pieces of the benchmarks: statistics, machine facts, messages, the stand-in."""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterable, List, Sequence

from agent.clock import VirtualClock
from agent.schema import ANOMALY_SCHEMA
from agent.topology import default_topology

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
    """The function's variables as a deployment of the default topology gives them (with the
    subjects the group routes from it), plus ``extra``."""
    env = default_topology().deployed_environment(function_id)
    env.update(extra)
    return env


def secret_json(password: str) -> str:
    return json.dumps({"username": SNOW_USER, "password": password})


def new_password() -> str:
    return secrets.token_urlsafe(16)


def unique_device_id() -> str:
    """A device id no earlier run used, so every run's episodes are new incidents
    (a server keeps what earlier runs created; an outside server keeps it for good)."""
    return f"{DEVICE_ID}-{secrets.token_hex(4)}"


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
