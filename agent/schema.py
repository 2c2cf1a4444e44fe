"""Message payloads on the IoT topics: a documented, versioned schema.

Readings (``readingsTopic``)::

    {"schema": "edge-agent/reading/1", "device": "pi-kitchen", "seq": 42,
     "ts": 1790000000.0, "temperature": 23.41, "humidity": 48.2, "pressure": 1012.9}

A metric the sensor could not read is ``null``.

Episode events (``anomalyTopic``), one per change of an episode, never one per sample::

    {"schema": "edge-agent/anomaly/1", "event": "breach" | "update" | "recovered",
     "episode_id": "pi-kitchen:humidity:upper:1790000000", "seq": 0,
     "device": "pi-kitchen", "metric": "humidity", "bound": "upper" | "lower",
     "unit": "%RH", "limit": 50.0, "value": 63.0, "peak": 64.1,
     "started_at": 1790000000.0, "ts": 1790000015.0, "duration": 15.0,
     "title": "Humidity above limit"}

``started_at`` and ``ts`` are the device's wall-clock times, which NTP may step
in either direction between two events: they are for people to read, never
compared. ``duration`` (seconds since the episode started, measured on the
device's monotonic clock) is how long it has lasted. ``clock_unsynced`` /
``start_clock_unsynced`` (present only when true) say the wall clock was not
synchronised when ``ts`` / ``started_at`` were read; a reading says the same
with its own ``clock_unsynced``.

``seq`` counts the events of one episode (0 for the breach), so a consumer can
drop a repeated event, and one older than an event it has already seen. Text
fields must be valid Unicode without C0 control characters; the anomaly
function removes markup and other control, format and bidi characters before
any of it reaches ServiceNow, and takes the unit from the metric, not ``unit``. Within a major version fields are only ever added;
consumers ignore fields they do not know.
"""

from __future__ import annotations

import collections.abc  # Mapping for isinstance: typing is not loaded at run time
import json
import math

from .errors import MessageError

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping, Optional, Tuple

READING_SCHEMA = "edge-agent/reading/1"
ANOMALY_SCHEMA = "edge-agent/anomaly/1"
EVENTS = ("breach", "update", "recovered")
BOUNDS = ("upper", "lower")
METRICS = ("temperature", "humidity", "pressure")  # a reading's fields, in this order
METRIC_RANGES = {
    # What the Sense HAT's chips can physically report, with margin; a value
    # outside is garbage, not an anomaly.
    "temperature": (-60.0, 150.0),
    "humidity": (0.0, 100.0),
    "pressure": (200.0, 1300.0),
}
MAX_MESSAGE_BYTES = 8192
_MAX_TEXT = 200


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def encode(message: Mapping[str, Any]) -> bytes:
    # One encoder for every message: json.dumps with options builds a new one per call.
    return _ENCODER.encode(message).encode("utf-8")


def decode(payload: Any) -> Dict[str, Any]:
    """Turn what a core hands a handler (dict, bytes or str) into a dict, or raise MessageError."""
    if isinstance(payload, collections.abc.Mapping):
        if len(encode_lenient(payload)) > MAX_MESSAGE_BYTES:
            raise MessageError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
        return dict(payload)
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_MESSAGE_BYTES:
            raise MessageError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError("message is not UTF-8")
    if isinstance(payload, str):
        if len(payload.encode("utf-8", "replace")) > MAX_MESSAGE_BYTES:
            raise MessageError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            value = json.loads(payload)
        except ValueError as exc:
            raise MessageError(f"message is not JSON: {exc.args[0][:80]}")
        if not isinstance(value, dict):
            raise MessageError(f"message must be a JSON object, got {type(value).__name__}")
        return value
    raise MessageError(f"message must be a JSON object, got {type(payload).__name__}")


def encode_lenient(message: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(message, default=str).encode("utf-8")
    except (TypeError, ValueError, RecursionError):
        raise MessageError("message cannot be serialised as JSON")


def validate_anomaly(message: Mapping[str, Any]) -> Dict[str, Any]:
    """Check an episode event against ``edge-agent/anomaly/1``; return a clean copy.

    Raises :class:`MessageError` with a reason a person can act on.
    """
    if message.get("schema") != ANOMALY_SCHEMA:
        raise MessageError(
            "schema must be {!r}, got {!r}".format(ANOMALY_SCHEMA, _short(message.get("schema")))
        )
    out: Dict[str, Any] = {"schema": ANOMALY_SCHEMA}
    out["event"] = _choice(message, "event", EVENTS)
    out["bound"] = _choice(message, "bound", BOUNDS)
    out["metric"] = _choice(message, "metric", tuple(METRIC_RANGES))
    out["device"] = _text(message, "device")
    out["episode_id"] = _text(message, "episode_id", limit=89)
    out["title"] = _text(message, "title")
    out["unit"] = _text(message, "unit", limit=16)
    seq = message.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 10**9:
        raise MessageError(f"seq must be a whole number from 0, got {_short(seq)}")
    out["seq"] = seq
    low, high = METRIC_RANGES[out["metric"]]
    for key in ("limit", "value", "peak"):
        out[key] = _number(message, key, low, high)
    for key in ("ts", "started_at"):
        out[key] = _number(message, key, 0.0, 1e11)
    # No check that started_at <= ts: both are wall times, and NTP steps the wall clock
    # back as well as forward; events are ordered by seq. The duration is measured on
    # the monotonic clock (absent from older senders).
    if message.get("duration") is not None:
        out["duration"] = _number(message, "duration", 0.0, 1e10)
    for flag in ("clock_unsynced", "start_clock_unsynced"):
        if message.get(flag) is True:
            out[flag] = True
    return out


def validate_reading(message: Mapping[str, Any]) -> Dict[str, Any]:
    """Check a reading against ``edge-agent/reading/1`` as far as a site gateway reads it:
    who, which, when, and the metrics (a number in range, or ``null``)."""
    fast = _plain_reading(message)
    if fast is not None:
        return fast
    if message.get("schema") != READING_SCHEMA:
        raise MessageError(
            "schema must be {!r}, got {!r}".format(READING_SCHEMA, _short(message.get("schema")))
        )
    out: Dict[str, Any] = {"schema": READING_SCHEMA, "device": _text(message, "device")}
    seq = message.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise MessageError(f"seq must be a whole number from 0, got {_short(seq)}")
    out["seq"] = seq
    out["ts"] = _number(message, "ts", 0.0, 1e11)
    for metric in METRICS:
        if message.get(metric) is None:
            out[metric] = None
        else:
            low, high = METRIC_RANGES[metric]
            out[metric] = _number(message, metric, low, high)
    return out


def _plain_reading(message: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The common reading, checked in a few type tests (a gateway takes hundreds a second);
    ``None`` when anything is unusual, for the full check to accept or explain."""
    device = message.get("device")
    seq = message.get("seq")
    ts = message.get("ts")
    if (
        message.get("schema") != READING_SCHEMA
        or type(device) is not str
        or not 0 < len(device) <= _MAX_TEXT
        or not device.isprintable()  # no control character, no lone surrogate
        or device.isspace()
        or type(seq) is not int
        or seq < 0
        or type(ts) is not float
        or not 0.0 <= ts <= 1e11
    ):
        return None
    out = {"schema": READING_SCHEMA, "device": device, "seq": seq, "ts": ts}
    for metric in METRICS:
        value = message.get(metric)
        if value is not None:
            if type(value) is not float:
                return None
            low, high = METRIC_RANGES[metric]
            if not low <= value <= high:  # also False for NaN
                return None
        out[metric] = value
    return out


def _short(value: Any) -> Any:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _choice(message: Mapping[str, Any], key: str, choices: Tuple[str, ...]) -> str:
    value = message.get(key)
    if not isinstance(value, str) or value not in choices:
        raise MessageError(
            "{} must be one of {}, got {}".format(key, ", ".join(choices), _short(value))
        )
    return value


def _text(message: Mapping[str, Any], key: str, limit: int = _MAX_TEXT) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise MessageError(
            f"{key} must be a non-empty string of at most {limit} characters, got {_short(value)}"
        )
    if any(ord(c) < 32 for c in value):
        raise MessageError(f"{key} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud800" in JSON): not text, and unstorable.
        raise MessageError(f"{key} is not valid Unicode (it contains a lone surrogate)")
    return value


def _number(message: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = message.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MessageError(f"{key} must be a number, got {_short(value)}")
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise MessageError(f"{key} must be between {low} and {high}, got {value}")
    return value
