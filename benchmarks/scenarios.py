"""ServiceNow calls and secret fetches per scenario, the project beside the seed.

Each fake-sensor scenario plays on the chip stand-in, in virtual time, for its
own length at the default period of 5 s, through both designs' functions on
the device path (:mod:`benchmarks.pipelines`) against one server:

* project: a tick every 5 virtual seconds, ``pump()`` after each (the worker's
  job, in virtual time), the outbox drained at the end;
* seed: its loop with the 5 s sleep moving the virtual clock; every breaching
  sample is one POST, made inside the anomaly function's handler.

``humid-spell`` is the case the project is measured on: humidity above 50 %RH for about ten
minutes, 120-odd samples.
"""

from __future__ import annotations

import tempfile
from typing import Any, Dict, Sequence

from agent.clock import VirtualClock
from agent.sensors.fake import get_scenario

from . import device
from .common import START
from .pipelines import ProjectPipeline, SeedPipeline
from .servers import Server

SCENARIOS = ("humid-spell", "heat-spike", "ramp", "flapping", "steady", "noisy")
PERIOD_S = 5.0


def _project(server: Server, scenario: str, samples: int, seed: int) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-scenario-{scenario}-") as state_dir:
        clock = VirtualClock(start=START)
        pipe = ProjectPipeline(state_dir, server, clock)
        pipe.chip.source = device.ScenarioSource(scenario, clock, seed)
        anomaly = pipe.anomaly
        try:
            for _ in range(samples):
                clock.advance(PERIOD_S)
                pipe.sensor.tick()
                anomaly.pump()
            for _ in range(100):  # drain: what is due now, then what waits for a retry
                due = anomaly.next_attempt_at()
                if due is None:
                    break
                clock.advance(max(0.0, due - clock.time()))
                anomaly.pump()
            summary = anomaly.summary()
            counts = pipe.sensor.counts
        finally:
            pipe.close()
    calls = summary["servicenow_calls"]
    return {
        "samples": samples,
        "episodes": counts["breach"],
        "updates": counts["update"],
        "incidents_opened": summary["incidents_opened"],
        "incidents_resolved": summary["incidents_resolved"],
        "GET": calls.get("GET", 0),
        "POST": calls.get("POST", 0),
        "PATCH": calls.get("PATCH", 0),
        "calls": sum(calls.get(k, 0) for k in ("GET", "POST", "PATCH", "TOKEN")),
        "secret_fetches": pipe.secret_fetches,
        "pending": summary["actions_pending"],
    }


def _seed(server: Server, scenario: str, samples: int, seed: int) -> Dict[str, Any]:
    clock = VirtualClock(start=START)
    pipe = SeedPipeline(server, sleep=clock.advance)
    pipe.chip.source = device.ScenarioSource(scenario, clock, seed)
    for _ in range(samples):
        pipe.sample()
    statuses = pipe.log.statuses()
    return {
        "samples": samples,
        "breaching_samples": len(pipe.sensor_core.published.get(pipe.sensor.ANOMALY_TOPIC, [])),
        "incidents_opened": statuses.count(201),
        "POST": pipe.posts,
        "calls": pipe.posts,
        "secret_fetches": pipe.secret_fetches,
        "failed_posts": sum(1 for s in statuses if s != 201),
    }


def measure(server: Server, scenarios: Sequence[str] = SCENARIOS, seed: int = 1) -> Dict[str, Any]:
    results: Dict[str, Any] = {"server": server.name, "period_s": PERIOD_S}
    for scenario in scenarios:
        samples = int(get_scenario(scenario).duration // PERIOD_S)
        results[scenario] = {
            "project": _project(server, scenario, samples, seed),
            "seed": _seed(server, scenario, samples, seed),
        }
    return results
