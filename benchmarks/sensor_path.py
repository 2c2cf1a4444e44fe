"""The sensor path per reading, timed in a hot loop: the device path, the seed, the emulation.

* **device path**: ``functions.sensor_function.create_app()`` as a V1 core
  builds it (``MY_FUNCTION_ARN`` set: ``GreengrassV1Runtime`` with the
  installed greengrasssdk over the core IPC stand-in; ``SenseHatSensor`` over
  the chip stand-in), one ``SensorService.tick()`` per reading;
* **seed**: one pass of the seed sensor function's loop (read, the 5 s sleep
  made virtual, judge, publish) on the same stand-ins;
* **emulation**: the laptop path (fake sensor with Gaussian noise, ``LocalCore``
  encode, route and decoded copy), for comparison with earlier figures.

*normal*: every reading within limits. *held*: the chip reads 38 °C throughout,
so after the warm-up an episode is open and every reading is beyond the limit
(the project sends an update at its natural rate, one per 30 virtual minutes;
the seed publishes every reading twice, to the readings and anomaly topics).
A virtual clock moves one period between readings, outside the timed region.
"""

from __future__ import annotations

import contextlib
import gc
import tempfile
import time
from typing import Any, Callable, ContextManager, Dict

from agent.clock import VirtualClock
from agent.topology import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID, default_topology

from . import device
from .common import DEVICE_ID, START, function_environment, ns_to_us, summarize
from .device import HOT, NORMAL, SEED_LIMITS


def time_ticks(
    step: Callable[[], Any],
    advance: Callable[[], Any],
    ticks: int,
    warmup: int,
    region: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
) -> Dict[str, Any]:
    """Latency of each ``step()`` (perf_counter_ns), then CPU per step of a block of them."""
    for _ in range(warmup):
        advance()
        step()
    samples = [0] * ticks
    perf = time.perf_counter_ns
    for i in range(ticks):
        advance()
        t0 = perf()
        step()
        samples[i] = perf() - t0
    # A second pass timed as one block, so per-step timer calls do not inflate the CPU figure.
    gc.collect()
    with region():
        cpu0, wall0 = time.thread_time_ns(), perf()
        for _ in range(ticks):
            advance()
            step()
        cpu_ns = time.thread_time_ns() - cpu0
        wall_ns = perf() - wall0
    return {
        "ticks": ticks,
        "latency_us": summarize(ns_to_us(samples)),
        "cpu_per_tick_us": round(cpu_ns / ticks / 1e3, 2),
        "wall_per_tick_us": round(wall_ns / ticks / 1e3, 2),
    }


def measure_device(
    ticks: int, held: bool = False, warmup: int = 500, region: Any = contextlib.nullcontext
) -> Dict[str, Any]:
    """The project's sensor function on the V1 device path."""
    with tempfile.TemporaryDirectory(prefix="bench-device-") as state_dir:
        clock = VirtualClock(start=START)
        core = device.v1_core("sensor")
        chip = device.new_chip(HOT if held else NORMAL)
        env = device.function_env("sensor", stateDir=state_dir, deviceId=DEVICE_ID)
        app = device.project_sensor(core, chip, env, clock)
        if type(app.runtime).__name__ != "GreengrassV1Runtime" or app.sensor.name != "sensehat":
            raise RuntimeError("the sensor function did not take the V1 device path")
        period = app.settings.period
        before = dict(app.counts)
        result = time_ticks(app.tick, lambda: clock.advance(period), ticks, warmup, region)
        if held and not (app.judge.snapshot() and app.counts["breach"] == 1):
            raise RuntimeError("no episode was held open")
        result["events"] = {
            k: app.counts[k] - before.get(k, 0) for k in ("breach", "update", "recovered")
        }
        result["published"] = sum(len(v) for v in core.published.values())
    result["path"] = "device"
    result["reading"] = "held" if held else "normal"
    return result


def measure_seed(
    ticks: int, held: bool = False, warmup: int = 500, region: Any = contextlib.nullcontext
) -> Dict[str, Any]:
    """One pass of the seed's sensor loop on the same stand-ins; its 5 s sleep is virtual."""
    clock = VirtualClock(start=START)
    core = device.v1_core("seed-sensor")
    chip = device.new_chip(HOT if held else NORMAL)
    seed = device.seed_sensor(core, chip, device.function_env("seed-sensor", **SEED_LIMITS))
    seed.sleep = clock.advance  # virtual: the blog's time.sleep(5) between read and publish
    result = time_ticks(seed.read_and_publish, lambda: None, ticks, warmup, region)
    anomalies = len(core.published.get(seed.ANOMALY_TOPIC, []))
    if held and anomalies != warmup + 2 * ticks:
        raise RuntimeError(f"the seed published {anomalies} anomalies, expected one per reading")
    result.update(path="seed", reading="held" if held else "normal", anomalies=anomalies)
    return result


def measure_emulation(ticks: int, warmup: int = 500) -> Dict[str, Any]:
    """The laptop path: fake sensor (scenario ``steady``, seed 1) and the ``LocalCore``."""
    from agent.greengrass.local import LocalCore
    from agent.sensors import open_sensor
    from functions import sensor_function

    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as state_dir:
        clock = VirtualClock(start=START)
        core = LocalCore(default_topology())
        core.register(SENSOR_FUNCTION_ID, sensor_function.function_handler)
        core.register(ANOMALY_FUNCTION_ID, lambda event, context: None)
        app = sensor_function.create_app(
            environ=function_environment(
                SENSOR_FUNCTION_ID, stateDir=state_dir, deviceId=DEVICE_ID
            ),
            runtime=core.runtime_for(SENSOR_FUNCTION_ID),
            sensor=open_sensor("fake", clock=clock, scenario="steady", seed=1),
            clock=clock,
        )
        period = app.settings.period
        result = time_ticks(app.tick, lambda: clock.advance(period), ticks, warmup)
    result.update(path="emulation", reading="normal")
    return result


def measure(ticks: int = 20_000) -> Dict[str, Any]:
    return {
        "device": {
            "normal": measure_device(ticks),
            "held": measure_device(ticks, held=True),
        },
        "seed": {
            "normal": measure_seed(ticks),
            "held": measure_seed(ticks, held=True),
        },
        "emulation": measure_emulation(ticks),
    }
