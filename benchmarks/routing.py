"""Routing throughput of the local core emulation: ``LocalCore.publish`` in messages per second.

The default topology with no-op handlers registered for both functions. A
reading (sensor → readings topic) reaches ``cloud`` only; an episode event
(sensor → anomaly topic) reaches the anomaly function and ``cloud``. Each
publish serialises the message once, matches the subscription table, and
decodes a copy per target (the handler's own copy, and the one kept in the
cloud history), as the emulation does.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, ContextManager, Dict

from agent.greengrass.local import LocalCore
from agent.schema import READING_SCHEMA
from agent.topology import (
    ANOMALY_FUNCTION_ID,
    DEFAULT_ANOMALY_TOPIC,
    DEFAULT_READINGS_TOPIC,
    SENSOR_FUNCTION_ID,
    default_topology,
)

from .common import DEVICE_ID, START, anomaly_message


def _noop(event: Any, context: Any) -> None:
    return None


def _rate(core: LocalCore, topic: str, message: Dict[str, Any], count: int) -> Dict[str, Any]:
    publish = core.publish
    for _ in range(min(1000, count)):  # warm-up
        publish(SENSOR_FUNCTION_ID, topic, message)
    t0 = time.perf_counter_ns()
    for _ in range(count):
        reached = publish(SENSOR_FUNCTION_ID, topic, message)
    elapsed = time.perf_counter_ns() - t0
    return {
        "messages": count,
        "targets": reached,
        "per_second": round(count / (elapsed / 1e9)),
        "us_per_message": round(elapsed / count / 1e3, 2),
    }


def measure(
    count: int = 100_000, region: Callable[[], ContextManager[Any]] = contextlib.nullcontext
) -> Dict[str, Any]:
    core = LocalCore(default_topology())
    core.register(SENSOR_FUNCTION_ID, _noop)
    core.register(ANOMALY_FUNCTION_ID, _noop)
    reading = {
        "schema": READING_SCHEMA,
        "device": DEVICE_ID,
        "seq": 1,
        "ts": START,
        "temperature": 22.41,
        "humidity": 40.12,
        "pressure": 1013.02,
    }
    with region():
        return {
            "readings": _rate(core, DEFAULT_READINGS_TOPIC, reading, count),
            "anomaly": _rate(core, DEFAULT_ANOMALY_TOPIC, anomaly_message(1), count),
        }
