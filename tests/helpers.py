"""Small builders shared by tests."""

from __future__ import annotations

import importlib
import sys
import time
from types import ModuleType
from typing import Any, Callable, Dict

from agent.schema import ANOMALY_SCHEMA


def anomaly(
    event: str = "breach",
    seq: int = 0,
    episode: str = "pi-test:humidity:upper:1790000000",
    value: float = 63.0,
    peak: float = 64.0,
    ts: float = 1_790_000_100.0,
    metric: str = "humidity",
    limit: float = 50.0,
    **extra: Any,
) -> Dict[str, Any]:
    message = {
        "schema": ANOMALY_SCHEMA,
        "event": event,
        "episode_id": episode,
        "seq": seq,
        "device": episode.split(":")[0],
        "metric": metric,
        "bound": "upper",
        "unit": {"humidity": "%RH", "temperature": "°C", "pressure": "hPa"}.get(metric, "?"),
        "limit": limit,
        "value": value,
        "peak": peak,
        "started_at": 1_790_000_000.0,
        "ts": ts,
        "title": "{} above limit".format(metric.capitalize()),
    }
    message.update(extra)
    return message


def fresh_import(name: str) -> ModuleType:
    """Import ``name`` anew (a V1 function module starts its work at load)."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Wait for what a test expects to happen (a condition, a message, a file): poll
    ``condition`` until it is true, at most ``timeout`` s; return whether it came.

    The one waiting helper of the tests. To show that something did *not* happen,
    first wait for a later event that proves it would have by then (a later reading
    processed, a later request answered), then assert.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
