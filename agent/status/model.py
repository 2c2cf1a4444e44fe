"""What the status function knows from the messages it receives. Pure: no I/O, no clock, no lock.

Fed with the readings (``edge-agent/reading/1``), the episode events
(``edge-agent/anomaly/1``) and the functions' health reports
(``edge-agent/health/1``). Every field of a message is checked before it is
kept: a malformed message is counted and dropped, never shown. Memory is
bounded: readings live in a ring of fixed size (four arrays of doubles),
episodes and event keys in bounded ordered maps.
"""

from __future__ import annotations

import collections
import math
from array import array
from typing import Any, Dict, Iterator, List, Mapping, Optional, OrderedDict, Tuple

from ..errors import MessageError
from ..schema import ANOMALY_SCHEMA, METRIC_RANGES, METRICS, READING_SCHEMA, validate_anomaly
from . import HEALTH_SCHEMA
from .site_view import clean_site

DEFAULT_HISTORY = 8640  # readings kept: 12 hours at the default 5 s period (~280 KB)
MAX_EPISODES = 300
MAX_EVENT_KEYS = 4000
MAX_TEXT = 200
FUNCTIONS = ("sensor", "anomaly", "mqtt-bridge")
_NAN = float("nan")


class ReadingRing:
    """The newest ``capacity`` readings, oldest first, as columns; ``None`` for a missing value."""

    def __init__(self, capacity: int = DEFAULT_HISTORY) -> None:
        self.capacity = max(1, int(capacity))
        self._columns = tuple(array("d", bytes(8 * self.capacity)) for _ in range(4))
        self._start = 0
        self._size = 0
        self.total = 0  # readings ever appended: a cursor for Server-Sent Events

    def __len__(self) -> int:
        return self._size

    @property
    def last_ts(self) -> Optional[float]:
        if not self._size:
            return None
        return self._columns[0][(self._start + self._size - 1) % self.capacity]

    def append(self, ts: float, values: Tuple[Optional[float], ...]) -> None:
        index = (self._start + self._size) % self.capacity
        if self._size == self.capacity:
            self._start = (self._start + 1) % self.capacity
        else:
            self._size += 1
        self._columns[0][index] = ts
        for column, value in zip(self._columns[1:], values):
            column[index] = _NAN if value is None else value
        self.total += 1

    def arrays(
        self, since: Optional[float] = None, after_total: Optional[int] = None
    ) -> Tuple[array[float], ...]:
        """Compact copies of the columns (ts and the metrics, NaN for missing) for readings
        newer than ``since`` (a timestamp) or than the first ``after_total`` ever appended."""
        count = self._size
        if after_total is not None:
            count = min(count, max(0, self.total - after_total))
        if since is not None:
            newer = 0
            while newer < count and self._at(0, self._size - 1 - newer) > since:
                newer += 1
            count = newer
        start = (self._start + self._size - count) % self.capacity
        end = start + count
        if end <= self.capacity:
            return tuple(column[start:end] for column in self._columns)
        return tuple(column[start:] + column[: end - self.capacity] for column in self._columns)

    def columns(
        self, since: Optional[float] = None, after_total: Optional[int] = None
    ) -> Dict[str, List[Any]]:
        """``{"ts": [...], "temperature": [...], ...}`` as lists, ``None`` for a missing value."""
        arrays = self.arrays(since, after_total)
        out: Dict[str, List[Any]] = {"ts": list(arrays[0])}
        for metric, column in zip(METRICS, arrays[1:]):
            out[metric] = [_none_if_nan(v) for v in column]
        return out

    def _at(self, column: int, offset: int) -> float:
        return self._columns[column][(self._start + offset) % self.capacity]


def columns_json(
    arrays: Tuple[array[float], ...], extra: Optional[Mapping[str, Any]] = None
) -> bytes:
    """The JSON object ``{**extra, "ts": [...], "temperature": [...], ...}`` of :meth:`arrays`."""
    return b"".join(columns_json_parts(arrays, extra))


def columns_json_parts(
    arrays: Tuple[array[float], ...], extra: Optional[Mapping[str, Any]] = None
) -> Iterator[bytes]:
    """:func:`columns_json` a block of numbers at a time: a full ring as Python lists and
    one big ``json.dumps`` would cost megabytes of peak memory on the device."""
    import json

    head = json.dumps(dict(extra or {}), separators=(",", ":"))[:-1]
    yield head.encode("utf-8")
    for index, (name, column) in enumerate(zip(("ts",) + METRICS, arrays)):
        separator = "," if index or len(head) > 1 else ""
        yield '{}"{}":['.format(separator, name).encode("ascii")
        for i in range(0, len(column), 512):
            block = ",".join(_json_number(v) for v in column[i : i + 512])
            yield (block if i == 0 else "," + block).encode("ascii")
        yield b"]"
    yield b"}"


def _json_number(value: float) -> str:
    return "null" if math.isnan(value) else repr(value)


class StatusModel:
    """Readings, episodes, event counts and the latest health report of each function."""

    def __init__(self, history: int = DEFAULT_HISTORY) -> None:
        self.readings = ReadingRing(history)
        self.device: Optional[str] = None
        self.invalid: Dict[str, int] = {m: 0 for m in METRICS}
        self.episodes: Dict[str, Dict[str, Any]] = collections.OrderedDict()
        self.event_counts: Dict[Tuple[str, str, str], int] = {}
        self._event_keys: OrderedDict[Tuple[str, int, str], None] = collections.OrderedDict()
        self.health: Dict[str, Dict[str, Any]] = {}
        self.restarts: Dict[str, int] = {}
        self.dropped: Dict[str, int] = {"malformed": 0, "out_of_order": 0, "repeated": 0}
        self.version = 0  # bumped on every change the page should see

    # -- messages ---------------------------------------------------------------------
    def handle(self, message: Mapping[str, Any]) -> str:
        """Take one message; return its kind (``reading``, ``anomaly``, ``health``) or
        ``dropped`` when it was malformed, repeated or out of order."""
        schema = message.get("schema")
        try:
            if schema == READING_SCHEMA:
                return self._reading(message)
            if schema == ANOMALY_SCHEMA:
                return self._anomaly(validate_anomaly(message))
            if schema == HEALTH_SCHEMA:
                return self._health(message)
        except (MessageError, TypeError, ValueError):
            pass
        self.dropped["malformed"] += 1
        return "dropped"

    def _reading(self, message: Mapping[str, Any]) -> str:
        ts = _number(message.get("ts"), 0.0, 1e11)
        device = _text(message.get("device"))
        if ts is None or device is None:
            raise ValueError("reading without ts or device")
        last = self.readings.last_ts
        if last is not None and ts <= last:
            self.dropped["out_of_order"] += 1  # a repeat, or a clock set back: not charted
            return "dropped"
        values = []
        for metric in METRICS:
            low, high = METRIC_RANGES[metric]
            value = _number(message.get(metric), low, high)
            if value is None:
                self.invalid[metric] += 1
            values.append(value)
        self.readings.append(ts, tuple(values))
        self.device = device
        self.version += 1
        return "reading"

    def _anomaly(self, event: Dict[str, Any]) -> str:
        key = (event["episode_id"], event["seq"], event["event"])
        if key in self._event_keys:
            self.dropped["repeated"] += 1  # resent after a restart: counted once
            return "dropped"
        self._event_keys[key] = None
        if len(self._event_keys) > MAX_EVENT_KEYS:
            self._event_keys.popitem(last=False)
        counted = (event["event"], event["metric"], event["bound"])
        self.event_counts[counted] = self.event_counts.get(counted, 0) + 1
        episode = self.episodes.get(event["episode_id"])
        if episode is None:
            episode = self.episodes[event["episode_id"]] = {
                "id": event["episode_id"],
                "device": event["device"],
                "metric": event["metric"],
                "bound": event["bound"],
                "unit": event["unit"],
                "started_at": event["started_at"],
                "breach_at": None,
                "recovered_at": None,
                "events": 0,
            }
            self._trim_episodes()
        if event["event"] == "breach":
            episode["breach_at"] = event["ts"]
        elif event["event"] == "recovered":
            episode["recovered_at"] = event["ts"]
        episode.update(
            limit=event["limit"],
            value=event["value"],
            peak=event["peak"],
            title=event["title"],
            last_event=event["event"],
            last_event_at=event["ts"],
            events=episode["events"] + 1,
        )
        self.device = self.device or event["device"]
        self.version += 1
        return "anomaly"

    def _trim_episodes(self) -> None:
        while len(self.episodes) > MAX_EPISODES:
            closed = next((k for k, e in self.episodes.items() if e["recovered_at"]), None)
            self.episodes.pop(closed if closed is not None else next(iter(self.episodes)))

    def _health(self, message: Mapping[str, Any]) -> str:
        function = message.get("function")
        if function not in FUNCTIONS:
            raise ValueError("health report of an unknown function")
        started = _number(message.get("started_at"), 0.0, 1e11)
        ts = _number(message.get("ts"), 0.0, 1e11)
        if started is None or ts is None:
            raise ValueError("health report without times")
        previous = self.health.get(function)
        if previous is not None:
            if previous["started_at"] == started and ts < previous["ts"]:
                self.dropped["out_of_order"] += 1
                return "dropped"
            if previous["started_at"] != started:
                self.restarts[function] = self.restarts.get(function, 0) + 1
        self.health[function] = clean_health(message, started, ts)
        self.version += 1
        return "health"

    # -- questions --------------------------------------------------------------------
    def limits(self) -> Dict[str, Dict[str, Optional[float]]]:
        """The limits the sensor reported judging against (empty until its first report)."""
        return dict((self.health.get("sensor") or {}).get("limits") or {})

    def period(self) -> Optional[float]:
        return (self.health.get("sensor") or {}).get("period")


def clean_health(message: Mapping[str, Any], started: float, ts: float) -> Dict[str, Any]:
    """Only the fields the status function uses, each checked: nothing else is kept or shown."""
    out: Dict[str, Any] = {
        "function": message["function"],
        "device": _text(message.get("device")),
        "pid": _count(message.get("pid")),
        "started_at": started,
        "ts": ts,
        "final": message.get("final") is True,
        "counters": _counters(message.get("counters")),
    }
    period = _number(message.get("period"), 0.0, 86400.0)
    if period:
        out["period"] = period
    limits = message.get("limits")
    if isinstance(limits, Mapping):
        out["limits"] = {
            metric: {
                side: _number(spec.get(side), -1e6, 1e6)
                for side in ("upper", "lower", "hysteresis")
            }
            for metric, spec in limits.items()
            if metric in METRICS and isinstance(spec, Mapping)
        }
    gauges = message.get("gauges")
    if isinstance(gauges, Mapping):
        out["gauges"] = _counters(gauges)
    snow = message.get("servicenow")
    if isinstance(snow, Mapping):
        out["servicenow"] = _clean_servicenow(snow)
    creds = message.get("credentials")
    if isinstance(creds, Mapping):
        out["credentials"] = {
            "secret_id": _text(creds.get("secret_id")),
            "fetches": _count(creds.get("fetches")),
            "cached": creds.get("cached") is True,
            "kind": creds.get("kind") if creds.get("kind") in ("basic", "oauth") else None,
        }
    paused = _number(message.get("paused_until"), 0.0, 1e11)
    if paused:
        out["paused_until"] = paused
    site = clean_site(message.get("site"))
    if site is not None:
        out["site"] = site
    return out


def _clean_servicenow(snow: Mapping[str, Any]) -> Dict[str, Any]:
    url = _text(snow.get("url"))
    raw_latency = snow.get("latency")
    latency = raw_latency if isinstance(raw_latency, Mapping) else {}
    buckets = [b for b in latency.get("buckets") or () if _number(b, 0.0, 1e6) is not None]
    cumulative = [c for c in latency.get("cumulative") or () if _count(c) is not None]
    error = snow.get("last_error") if isinstance(snow.get("last_error"), Mapping) else None
    return {
        "url": url if url and url.startswith(("https://", "http://")) else None,
        "requests": _counters(snow.get("requests")),
        "calls": _counters(snow.get("calls")),
        "latency": {
            "buckets": buckets if len(cumulative) == len(buckets) + 1 else [],
            "cumulative": cumulative if len(cumulative) == len(buckets) + 1 else [],
            "sum": _number(latency.get("sum"), 0.0, 1e12) or 0.0,
            "count": _count(latency.get("count")) or 0,
        },
        "last_success_at": _number(snow.get("last_success_at"), 0.0, 1e11),
        "sink": snow.get("sink") if snow.get("sink") in ("incident", "event") else None,
        "ci_missing": _text(snow.get("ci_missing")),
        "rate_limit": _rate_limit(snow.get("rate_limit")),
        "last_error": None
        if error is None
        else {
            "at": _number(error.get("at"), 0.0, 1e11),
            "method": _text(error.get("method")),
            "code": _text(error.get("code")),
            "cause": _text(error.get("cause")),
        },
    }


def _rate_limit(value: Any) -> Optional[Dict[str, Any]]:
    """ServiceNow's announced budget: limit, remaining (as the agent counts it), reset, rule."""
    if not isinstance(value, Mapping):
        return None
    return {
        "limit": _count(value.get("limit")),
        "remaining": _count(value.get("remaining")),
        "reset": _number(value.get("reset"), 0.0, 1e11),
        "rule": _text(value.get("rule")),
    }


def _counters(value: Any) -> Dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {
        str(k)[:MAX_TEXT]: v
        for k, v in list(value.items())[:200]
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0
    }


def _number(value: Any, low: float, high: float) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and low <= value <= high else None


def _count(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _text(value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        return None
    return value


def _none_if_nan(value: float) -> Optional[float]:
    return None if math.isnan(value) else value
