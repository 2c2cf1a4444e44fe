"""What the status service costs: the sensor path with it on and off, its memory, its CPU.

* **sensor path, status on vs off**: ``SensorService.tick()`` as in
  ``benchmarks/sensor_path.py`` (fake sensor, scenario ``steady``, the local
  core, virtual clock), once with the default group and once with the status
  function in it, its real handler registered the way ``simulate --serve``
  registers it (delivered from a queue on its own thread). Rounds alternate
  off/on so a shared machine's drift hits both; per-tick latency (each tick
  timed alone) and CPU per reading (``thread_time`` of a block) are reported
  with the on/off ratio.
* **status function peak RSS**: a fresh process started as a core starts a
  pinned function (``functions.status_function.create_app()``, serving), fed
  a full ring of readings (8,640: 12 h at 5 s), episode events and health
  reports, then asked for ``/``, ``/api/state?readings=all``, ``/metrics`` and
  ``/healthz`` over a raw socket (a client library would add its own imports).
  Its ``VmHWM`` is the whole process; the bare interpreter's is reported beside
  it. Run under this interpreter and, when it is installed, under Python 3.8,
  the V1 core's runtime.
* **status function CPU per message**: ``handle()`` of a reading, timed as a block.
"""

from __future__ import annotations

import ast
import gc
import glob
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from agent.clock import VirtualClock
from agent.sensors import open_sensor
from agent.topology import (
    ANOMALY_FUNCTION_ID,
    SENSOR_FUNCTION_ID,
    STATUS_FUNCTION_ID,
    default_topology,
)

from .common import DEVICE_ID, REPO_ROOT, START, function_environment, percentile

ROUNDS = 6

RSS_CHILD = r"""
import socket, sys
from functions import status_function
app = status_function.create_app(environ={"statusPort": "0", "stateDir": sys.argv[1]})
app.start()
t0 = 1790000000.0
for i in range(8640):
    app.handle({"schema": "edge-agent/reading/1", "device": "bench-pi", "seq": i,
                "ts": t0 + 5 * i, "temperature": 22.5, "humidity": 45.0, "pressure": 1013.0})
for n in range(50):
    for seq, event in enumerate(("breach", "update", "recovered")):
        app.handle({"schema": "edge-agent/anomaly/1", "event": event,
                    "episode_id": "bench-pi:humidity:upper:%d" % (t0 + n), "seq": seq,
                    "device": "bench-pi", "metric": "humidity", "bound": "upper", "unit": "%RH",
                    "limit": 50.0, "value": 60.0, "peak": 61.0, "started_at": t0 + n,
                    "ts": t0 + n + 10 * seq, "title": "Humidity above limit"})
for function in ("sensor", "anomaly"):
    app.handle({"schema": "edge-agent/health/1", "function": function, "device": "bench-pi",
                "started_at": t0, "ts": t0 + 15, "seq": 1, "final": False,
                "counters": {"readings": 8640}, "period": 5.0,
                "limits": {"humidity": {"upper": 50.0, "lower": None, "hysteresis": 1.0}}})
sizes = {}
for path in ("/", "/api/state?readings=all", "/metrics", "/healthz"):
    with socket.create_connection(("127.0.0.1", app.server.port)) as sock:
        sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    sizes[path] = len(data)
with open("/proc/self/status") as status:
    hwm = [l.split()[1] for l in status if l.startswith("VmHWM:")][0]
app.stop()
print(repr({"vm_hwm_kb": int(hwm), "sizes": sizes, "modules": len(sys.modules)}))
"""

RUN_CHILD = r"""
import sys
from agent.standalone.run import main
args = ["--sensor", "fake", "--set", "period=0.002", "--max-ticks", "1500", "--state-dir", sys.argv[1]]
if sys.argv[2] == "on":
    args += ["--status", "127.0.0.1:0"]
code = main(args)
with open("/proc/self/status") as status:
    hwm = [l.split()[1] for l in status if l.startswith("VmHWM:")][0]
print(repr({"vm_hwm_kb": int(hwm), "code": code}))
"""

BASELINE_CHILD = r"""
with open("/proc/self/status") as status:
    hwm = [l.split()[1] for l in status if l.startswith("VmHWM:")][0]
print(repr({"vm_hwm_kb": int(hwm)}))
"""


def _group(state_dir: str, with_status: bool) -> Any:
    from agent.greengrass.local import LocalCore
    from functions import sensor_function, status_function

    clock = VirtualClock(start=START)
    environment = {STATUS_FUNCTION_ID: {"statusPort": "0"}} if with_status else {}
    core = LocalCore(default_topology(environment=environment))
    core.register(SENSOR_FUNCTION_ID, sensor_function.function_handler)
    core.register(ANOMALY_FUNCTION_ID, lambda event, context: None)
    status = None
    if with_status:
        status = status_function.create_app(
            environ={"statusPort": "0", "stateDir": state_dir}, clock=clock
        )
        core.register(STATUS_FUNCTION_ID, status.function_handler, queued=True)
    app = sensor_function.create_app(
        environ=function_environment(SENSOR_FUNCTION_ID, stateDir=state_dir, deviceId=DEVICE_ID),
        runtime=core.runtime_for(SENSOR_FUNCTION_ID),
        sensor=open_sensor("fake", clock=clock, scenario="steady", seed=1),
        clock=clock,
    )
    return app, clock, core, status


def _round(ticks: int, with_status: bool, held: bool = False) -> Dict[str, float]:
    """One round of ticks. ``held``: the status function's thread waits (on its handler
    lock, as a busy pinned function's invocations wait) until the timing is done: on a
    core it is another process, so its own work (below, ``handle``) never shares the
    sensor's interpreter; in this one-process emulation it would share its GIL."""
    with tempfile.TemporaryDirectory(prefix="bench-status-path-") as state_dir:
        app, clock, core, status = _group(state_dir, with_status)
        period = app.settings.period
        for _ in range(300):
            clock.advance(period)
            app.tick()
        core.wait_idle(STATUS_FUNCTION_ID)
        lock = core._locks[STATUS_FUNCTION_ID] if held else None
        if lock is not None:
            lock.acquire()
        samples = [0] * ticks
        perf = time.perf_counter_ns
        for i in range(ticks):
            clock.advance(period)
            t0 = perf()
            app.tick()
            samples[i] = perf() - t0
        if lock is None:
            core.wait_idle(STATUS_FUNCTION_ID)
        gc.collect()
        cpu0 = time.thread_time_ns()
        for _ in range(ticks):
            clock.advance(period)
            app.tick()
        cpu_ns = time.thread_time_ns() - cpu0
        if lock is not None:
            lock.release()
        core.wait_idle(STATUS_FUNCTION_ID, timeout=60.0)
        if status is not None:
            assert status.model.readings.total > 0, "the status function received nothing"
            status.stop()
    return {
        "median_us": percentile([s / 1e3 for s in samples], 50),
        "cpu_us": cpu_ns / ticks / 1e3,
    }


def sensor_path(ticks: int = 20_000, rounds: int = ROUNDS) -> Dict[str, Any]:
    """Alternating rounds: off, on (the status function's work held until after the
    timing, as on a core where it is another process), and on with its thread running
    in the same interpreter (the one-process ``run``/``simulate``); medians of the rounds."""
    per_round = max(1000, ticks // rounds)
    results: Dict[str, List[Dict[str, float]]] = {"off": [], "on": [], "on_same_process": []}
    for _ in range(rounds):
        results["off"].append(_round(per_round, False))
        results["on"].append(_round(per_round, True, held=True))
        results["on_same_process"].append(_round(per_round, True))
    out: Dict[str, Any] = {"ticks_per_round": per_round, "rounds": rounds}
    for key in ("median_us", "cpu_us"):
        off = percentile([r[key] for r in results["off"]], 50)
        figures: Dict[str, float] = {"off": round(off, 2)}
        for side in ("on", "on_same_process"):
            on = percentile([r[key] for r in results[side]], 50)
            figures[side] = round(on, 2)
            suffix = "" if side == "on" else "_same_process"
            figures["overhead_percent" + suffix] = round(100.0 * (on / off - 1.0), 1)
        out[key] = figures
    return out


def handle_cost(messages: int = 20_000) -> Dict[str, Any]:
    """CPU of the status function per reading it takes (decode and model update)."""
    from agent.status.service import StatusService
    from agent.status.settings import StatusSettings

    service = StatusService(StatusSettings.from_mapping({"stateDir": "/nonexistent"}))
    payloads = [
        {
            "schema": "edge-agent/reading/1",
            "device": DEVICE_ID,
            "seq": i,
            "ts": START + 5 * i,
            "temperature": 22.5,
            "humidity": 45.0,
            "pressure": 1013.0,
        }
        for i in range(messages)
    ]
    cpu0 = time.thread_time_ns()
    for message in payloads:
        service.handle(message)
    return {"cpu_us_per_reading": round((time.thread_time_ns() - cpu0) / messages / 1e3, 2)}


def _child(python: str, code: str, *args: str) -> Dict[str, Any]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EDGE_AGENT_", "AWS_", "PYTHON", "SVCUID")) and k != "MY_FUNCTION_ARN"
    }
    env.update(PYTHONPATH=REPO_ROOT, EDGE_AGENT_RUNTIME="local")
    with tempfile.TemporaryDirectory(prefix="bench-status-") as state_dir:
        done = subprocess.run(
            [python, "-c", code, state_dir, *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    if done.returncode != 0:
        raise RuntimeError("status RSS child failed: " + done.stderr[-2000:])
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def python38() -> Optional[str]:
    """A Python 3.8 (the V1 core's runtime) if pyenv or the system has one."""
    candidates = glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8"))
    candidates += ["/usr/bin/python3.8"]
    return next((c for c in sorted(candidates) if os.access(c, os.X_OK)), None)


def memory(repeats: int = 3) -> Dict[str, Any]:
    """Peak RSS of the status function's process, and of a bare interpreter, per Python."""
    out: Dict[str, Any] = {}
    pythons = {"this": sys.executable}
    py38 = python38()
    if py38:
        pythons["3.8"] = py38
    for label, python in pythons.items():
        runs = [_child(python, RSS_CHILD) for _ in range(repeats)]
        bare = [_child(python, BASELINE_CHILD) for _ in range(repeats)]
        peak = max(r["vm_hwm_kb"] for r in runs) / 1024.0
        base = max(r["vm_hwm_kb"] for r in bare) / 1024.0
        out[label] = {
            "python": python,
            "peak_rss_mb": round(peak, 1),
            "interpreter_rss_mb": round(base, 1),
            "above_interpreter_mb": round(peak - base, 1),
            "answer_bytes": runs[-1]["sizes"],
            "module_count": runs[-1]["modules"],
        }
    return out


def run_mode(repeats: int = 3) -> Dict[str, Any]:
    """``edge-agent run`` (one process for the group) with and without ``--status``: what
    the status function adds to that process's peak RSS."""
    peaks: Dict[str, float] = {}
    for side in ("off", "on"):
        runs = [_child(sys.executable, RUN_CHILD, side) for _ in range(repeats)]
        peaks[side] = max(r["vm_hwm_kb"] for r in runs) / 1024.0
    return {
        "peak_rss_mb_off": round(peaks["off"], 1),
        "peak_rss_mb_on": round(peaks["on"], 1),
        "added_mb": round(peaks["on"] - peaks["off"], 1),
    }


def measure(ticks: int = 20_000, repeats: int = 3) -> Dict[str, Any]:
    repeats = max(1, min(repeats, 3))
    return {
        "sensor_path": sensor_path(ticks),
        "handle": handle_cost(),
        "memory": memory(repeats),
        "run_mode": run_mode(repeats),
    }
