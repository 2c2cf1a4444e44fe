"""CPU share of the sensor loop, measured in real time from the process's own CPU time.

Each run is a spawned child (see :mod:`benchmarks.children`) that loads the
sensor function as a V1 core does and lets its loop run at its own rate: the
project's (``period`` = 1/rate, loop started at module load) or the seed's
(``get_sensor_data`` with its sleep set to 1/rate; at 0.2 Hz the blog's own
5 s). After a warm-up the child reads ``time.process_time_ns()`` (user + system
CPU of every thread) and the count of readings published, sleeps through the
window, and reads both again. Reported: CPU per reading (µs) and the share of
one core (CPU time ÷ wall time of the window). Nothing is derived from a hot
loop: thread wake-ups, timers and cold caches are all inside.

The runs go in parallel (each uses well under 1 % of a core); *held* runs read
38 °C throughout, so an episode is open and every reading is beyond the limit.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Tuple

from . import children, device
from .common import DEVICE_ID
from .device import HOT, NORMAL, SEED_LIMITS

READINGS_TOPIC = "IoTBlog/sensorData"

_MEASURE = """
time.sleep({warmup})
_c0, _n0, _w0 = time.process_time_ns(), _core.published[{topic!r}], time.monotonic_ns()
time.sleep({window})
_c1, _n1, _w1 = time.process_time_ns(), _core.published[{topic!r}], time.monotonic_ns()
_extra = {{"cpu_ns": _c1 - _c0, "readings": _n1 - _n0, "wall_ns": _w1 - _w0,
          "published": dict(_core.published)}}
"""

PROJECT_CHILD = (
    children.PREAMBLE
    + """
import functions.sensor_function as _function
if _function.app is None:
    raise SystemExit("the sensor function did not start; see its log above")
"""
)

SEED_CHILD = """
import threading
import benchmarks.seed.sensor_lambda as _function
_function.SAMPLE_DELAY_S = {delay!r}
threading.Thread(target=_function.get_sensor_data, daemon=True).start()
"""

# (name, who, rate in Hz, held); 0.2 Hz is the default period of 5 s.
RUNS: Tuple[Tuple[str, str, float, bool], ...] = (
    ("project 12.5 Hz", "project", 12.5, False),
    ("project 12.5 Hz held", "project", 12.5, True),
    ("project 1 Hz", "project", 1.0, False),
    ("project 0.2 Hz", "project", 0.2, False),
    ("project 200 Hz", "project", 200.0, False),
    ("seed 12.5 Hz", "seed", 12.5, False),
    ("seed 12.5 Hz held", "seed", 12.5, True),
    ("seed 0.2 Hz", "seed", 0.2, False),
    ("seed 200 Hz", "seed", 200.0, False),
)


def _run(who: str, rate: float, held: bool, window: float, warmup: float) -> Dict[str, Any]:
    chip = ",".join(str(v) for v in (HOT if held else NORMAL))
    measure = _MEASURE.format(warmup=warmup, window=window, topic=READINGS_TOPIC)
    with tempfile.TemporaryDirectory(prefix="bench-realtime-") as state_dir:
        if who == "project":
            env = device.function_env(
                "sensor", stateDir=state_dir, deviceId=DEVICE_ID, period=repr(1.0 / rate)
            )
            code = PROJECT_CHILD + measure
        else:
            env = device.function_env("seed-sensor", **SEED_LIMITS)
            code = children.PREAMBLE + SEED_CHILD.format(delay=1.0 / rate) + measure
        env["EDGE_BENCH_CHIP"] = chip
        run = children.spawn(code, children.child_env(env), timeout=warmup + window + 60)
    extra = run["extra"]
    readings = extra["readings"]
    wall_s = extra["wall_ns"] / 1e9
    return {
        "who": who,
        "rate_hz": rate,
        "reading": "held" if held else "normal",
        "window_s": round(wall_s, 2),
        "readings": readings,
        "measured_rate_hz": round(readings / wall_s, 3),
        "cpu_ms": round(extra["cpu_ns"] / 1e6, 3),
        "cpu_per_reading_us": round(extra["cpu_ns"] / readings / 1e3, 1) if readings else None,
        "cpu_share_percent": round(extra["cpu_ns"] / extra["wall_ns"] * 100.0, 4),
        "published": extra["published"],
    }


def measure(window: float = 60.0, warmup: float = 2.0) -> Dict[str, Any]:
    """Every run of :data:`RUNS`, in parallel, for ``window`` seconds after ``warmup``."""
    results: Dict[str, Any] = {"window_s": window, "warmup_s": warmup}
    with ThreadPoolExecutor(max_workers=len(RUNS)) as pool:
        futures: List[Tuple[str, Any]] = [
            (name, pool.submit(_run, who, rate, held, window, warmup))
            for name, who, rate, held in RUNS
        ]
        for name, future in futures:
            results[name] = future.result()
    return results
