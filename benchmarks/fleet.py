"""A site of many Pis: what one site event costs in ServiceNow calls, and what the gateway costs.

* **ServiceNow calls per site event** at N = 1, 50, 200, 1000 Pis: ``simulate
  --fleet N --scenario site-humid-spell --fast`` (in process, the stand-in in a
  thread), every call counted by the gateway's client, divided by the incidents
  the run opened (one site event: 1). The seed's design opens one incident per
  breaching reading: its figure is those readings × 2 calls (a secret fetch and a
  POST), counted in the same run.
* **gateway CPU per incoming reading and peak RSS at N = 1000, period 5 s**: a
  fresh process runs the anomaly function as a site gateway (``site`` set, 1,000
  devices in ``siteDevices``) on a virtual clock and is handed 20 minutes of the
  site's readings (240,000, as JSON from the core) with a humid spell's episode
  events; CPU is ``thread_time`` of the handler calls ÷ readings, RSS the
  process's ``VmHWM``.
* **fleet simulation wall time per simulated hour**: ``edge-agent simulate --fleet
  1000 --fast`` as a child process, wall and CPU time scaled to an hour of site
  time (``quick``: 10 minutes of it).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict

from .common import REPO_ROOT

GATEWAY_CHILD = r"""
import json, sys, time
from agent.clock import VirtualClock
from agent.greengrass.local import LocalCore
from functions import anomaly_function
n, minutes, state_dir, snow = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
devices = ["pi-%04d" % i for i in range(n)]
clock = VirtualClock(start=1790000000.0)
core = LocalCore()
core.add_secret("greengrass-snow-creds", json.dumps({"username": "u", "password": "p"}))
app = anomaly_function.create_app(
    environ={"snowUrl": snow, "stateDir": state_dir, "site": "bench",
             "siteDevices": ",".join(devices), "period": "5"},
    runtime=core.runtime_for("anomaly"), clock=clock)
cpu = 0.0
readings = 0
t0 = clock.time()
for step in range(int(minutes * 12)):
    now = clock.time()
    for i, device in enumerate(devices):
        humid = 60.0 if 60 <= step < 180 and i % 10 != 9 else 40.0
        payload = json.dumps({"schema": "edge-agent/reading/1", "device": device, "seq": step,
                              "ts": now, "temperature": 22.0, "humidity": humid,
                              "pressure": 1012.0})
        message = json.loads(payload)  # as the core hands it over
        events = []
        if i % 10 != 9 and step in (63, 183):
            kind = "breach" if step == 63 else "recovered"
            events.append({"schema": "edge-agent/anomaly/1", "event": kind,
                           "episode_id": "%s:humidity:upper:%d" % (device, t0 + 300),
                           "seq": 0 if kind == "breach" else 1, "device": device,
                           "metric": "humidity", "bound": "upper", "unit": "%RH",
                           "limit": 50.0, "value": humid, "peak": 60.0,
                           "started_at": t0 + 300, "ts": now, "title": "Humidity above limit"})
        start = time.thread_time()
        app.handle(message, "IoTBlog/readings")
        for event in events:
            app.handle(event, "IoTBlog/anomaly")
        cpu += time.thread_time() - start
        readings += 1
    clock.advance(5)
    app.maintain()
with open("/proc/self/status") as status:
    hwm = [l.split()[1] for l in status if l.startswith("VmHWM:")][0]
print(json.dumps({"readings": readings, "cpu_per_reading_us": 1e6 * cpu / readings,
                  "peak_rss_kb": int(hwm), "open_groups": len(app.site.grouper.groups)}))
"""


def calls_per_event(devices: int, secret_file: str, snow_url: str) -> Dict[str, Any]:
    from devtools.fleet import FleetOptions, run_fleet

    summary = run_fleet(
        FleetOptions(
            devices,
            "site-humid-spell",
            duration=1500.0,
            fast=True,
            snow_url=snow_url,
            secret_file=secret_file,
            site="bench-{}".format(devices),  # one stand-in serves every size: its own incidents
        )
    )
    events = max(1, len(summary["groups"]))
    return {
        "devices": devices,
        "site_events": len(summary["groups"]),
        "servicenow_calls": summary["servicenow_calls"],
        "calls_per_site_event": summary["servicenow_calls"] / events,
        "breaching_readings": summary.get("breaching_readings"),
        "seed_calls": 2 * (summary.get("breaching_readings") or 0),
    }


def gateway(devices: int, minutes: float, snow_url: str) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as state:
        done = subprocess.run(
            [sys.executable, "-c", GATEWAY_CHILD, str(devices), str(minutes), state, snow_url],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
            env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        )
    if done.returncode != 0:
        raise RuntimeError("gateway benchmark child failed: " + done.stderr[-2000:])
    result: Dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(devices=devices, minutes=minutes)
    return result


def simulate_hour(devices: int, minutes: float) -> Dict[str, Any]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "devtools.cli", "simulate", "--fleet", str(devices), "--fast"]
        + ["--duration", str(60 * minutes), "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError("simulate --fleet failed: " + done.stderr[-2000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    scale = 60.0 / minutes
    return {
        "devices": devices,
        "simulated_minutes": minutes,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "wall_seconds_per_simulated_hour": round(wall * scale, 1),
        "cpu_seconds_per_simulated_hour": round(cpu * scale, 1),
        "readings": json.loads(done.stdout)["readings"],
    }


def measure(server: Any, quick: bool) -> Dict[str, Any]:
    sizes = (1, 50, 200) if quick else (1, 50, 200, 1000)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as secret:
        secret.write(server.secret)
    try:
        calls = {str(n): calls_per_event(n, secret.name, server.url) for n in sizes}
    finally:
        os.unlink(secret.name)
    return {
        "calls": calls,
        "gateway": gateway(1000, 5.0 if quick else 20.0, server.url),
        "simulate": simulate_hour(1000, 10.0 if quick else 60.0),
    }
