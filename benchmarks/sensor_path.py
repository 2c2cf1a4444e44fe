"""The sensor path per reading: ``SensorService.tick()`` on the fake sensor and the local core.

One tick reads the fake sensor, publishes the reading (serialised and routed
through the default subscription table to ``cloud``), judges it and publishes
any episode events. A :class:`VirtualClock` moves a period between ticks, so
nothing sleeps; the clock's move is outside the timed region.
"""

from __future__ import annotations

import contextlib
import gc
import tempfile
import time
from typing import Any, Callable, ContextManager, Dict

from agent.clock import VirtualClock
from agent.sensors import open_sensor
from agent.topology import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID, default_topology

from .common import DEVICE_ID, START, function_environment, ns_to_us, summarize

RATES_HZ = (1.0, 12.5)  # the loop's usual rate, and the HTS221's fastest output rate


def _service(state_dir: str, scenario: str) -> Any:
    from agent.greengrass.local import LocalCore
    from functions import sensor_function

    clock = VirtualClock(start=START)
    core = LocalCore(default_topology())
    core.register(SENSOR_FUNCTION_ID, sensor_function.function_handler)
    core.register(ANOMALY_FUNCTION_ID, lambda event, context: None)
    sensor = open_sensor("fake", clock=clock, scenario=scenario, seed=1)
    app = sensor_function.create_app(
        environ=function_environment(SENSOR_FUNCTION_ID, stateDir=state_dir, deviceId=DEVICE_ID),
        runtime=core.runtime_for(SENSOR_FUNCTION_ID),
        sensor=sensor,
        clock=clock,
    )
    return app, clock, core


def measure(
    ticks: int = 20_000,
    warmup: int = 500,
    scenario: str = "steady",
    region: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
) -> Dict[str, Any]:
    """Latency distribution of one tick (perf_counter_ns) and CPU per tick (thread_time)."""
    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as state_dir:
        app, clock, core = _service(state_dir, scenario)
        period = app.settings.period
        for _ in range(warmup):
            clock.advance(period)
            app.tick()

        # Pass 1: each tick timed on its own, for the distribution.
        samples = [0] * ticks
        perf = time.perf_counter_ns
        for i in range(ticks):
            clock.advance(period)
            t0 = perf()
            app.tick()
            samples[i] = perf() - t0

        # Pass 2: CPU time of the same number of ticks, timed as a block (no
        # per-tick timer calls), so the CPU share is not inflated by measuring.
        gc.collect()
        with region():
            cpu0, wall0 = time.thread_time_ns(), perf()
            for _ in range(ticks):
                clock.advance(period)
                app.tick()
            cpu_ns = time.thread_time_ns() - cpu0
            wall_ns = perf() - wall0

    cpu_per_tick_us = cpu_ns / ticks / 1e3
    latency = summarize(ns_to_us(samples))
    return {
        "scenario": scenario,
        "ticks": ticks,
        "latency_us": latency,
        "cpu_per_tick_us": round(cpu_per_tick_us, 2),
        "wall_per_tick_us": round(wall_ns / ticks / 1e3, 2),
        # per-tick CPU seconds x ticks per second = fraction of one core, in percent
        "cpu_share_percent": {
            f"{rate:g}Hz": round(cpu_per_tick_us * 1e-6 * rate * 100.0, 4) for rate in RATES_HZ
        },
        "events": {k: app.counts[k] for k in ("breach", "update", "recovered")},
        "messages_to_cloud": core.stats["to_cloud"],
    }
