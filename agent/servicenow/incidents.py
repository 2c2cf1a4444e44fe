"""Incident decisions: what an episode event means for ServiceNow. Pure logic, no I/O.

One episode is one incident, keyed by ``correlation_id``:

* ``breach``    → ``open``: find the incident by correlation id, else create it;
* ``update``    → ``note``: append a work note (the service throttles these);
* ``recovered`` → ``resolve`` (state 6 with close code and notes), or a ``note``
  when the site prefers to close incidents by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Mapping, Optional

from ..clock import PLAUSIBLE_WALL_TIME
from ..config import AnomalySettings
from ..sensors.base import UNITS
from .query_safe import query_safe
from .text import clean_name

CORRELATION_PREFIX = "edge-agent:"
CORRELATION_MAX = 100  # ServiceNow's correlation_id column
RESOLVED_STATES = ("6", "7", "8")  # resolved, closed, canceled


@dataclass(frozen=True)
class Action:
    """One thing to do in ServiceNow, as stored in the outbox."""

    kind: str  # "open" | "note" | "resolve" | "event" (snowSink=event: fields is the event)
    key: str  # unique per event: repeated messages enqueue once
    correlation_id: str
    fields: Dict[str, str]
    # What to create if a note or resolve finds no incident (its breach never
    # arrived): the episode is still recorded, then updated.
    open_fields: Optional[Dict[str, str]] = None


def correlation_id(episode_id: str) -> str:
    """The incident's key in ServiceNow: inert in an encoded query, at most 100 characters
    (the column's size), the episode id itself whenever that is safe (see ``query_safe``)."""
    return CORRELATION_PREFIX + query_safe(episode_id, CORRELATION_MAX - len(CORRELATION_PREFIX))


def safe_correlation_id(value: str) -> str:
    """``value`` as :func:`correlation_id` makes it today; unchanged if it already is.

    Actions queued by an older version may hold a raw one (``edge-agent:lab^pi:...``).
    """
    if value.startswith(CORRELATION_PREFIX):
        return correlation_id(value[len(CORRELATION_PREFIX) :])
    return query_safe(value, CORRELATION_MAX)


def action_for(event: Mapping[str, Any], settings: AnomalySettings) -> Action:
    """The action for a validated ``edge-agent/anomaly/1`` event."""
    corr = correlation_id(event["episode_id"])
    key = "{}#{}:{}".format(corr, event["seq"], event["event"])
    kind = event["event"]
    if settings.sink == "event":
        from .events import episode_event  # only an event sink pays for it

        if kind == "breach":
            text = open_fields(event, settings)["short_description"]
        elif kind == "update":
            text = update_note(event)
        else:
            text = recovery_note(event)
        return Action("event", key, corr, episode_event(event, settings, corr, text))
    if kind == "breach":
        return Action("open", key, corr, open_fields(event, settings))
    fallback = open_fields(event, settings)
    if kind == "update":
        return Action("note", key, corr, {"work_notes": update_note(event)}, fallback)
    if settings.recovery_action == "resolve":
        return Action(
            "resolve",
            key,
            corr,
            {
                "state": "6",
                "close_code": settings.close_code,
                "close_notes": settings.close_notes,
                "work_notes": recovery_note(event),
            },
            fallback,
        )
    return Action("note", key, corr, {"work_notes": recovery_note(event)}, fallback)


def excess(event: Mapping[str, Any]) -> float:
    """How far past its limit the episode went (at its peak), in the metric's unit."""
    peak: float = event["peak"]
    limit: float = event["limit"]
    if event["bound"] == "upper":
        return max(0.0, peak - limit)
    return max(0.0, limit - peak)


def urgency(event: Mapping[str, Any], settings: AnomalySettings) -> int:
    """3, 2 or 1 as the excess crosses the configured percentages of the limit."""
    limit = abs(event["limit"]) or 1.0
    percent = 100.0 * excess(event) / limit
    low, high = settings.urgency_bands
    if percent >= high:
        return 1
    if percent >= low:
        return 2
    return 3


def unit_of(event: Mapping[str, Any]) -> str:
    """The metric's own unit: never the device-supplied ``unit`` text."""
    return UNITS[event["metric"]]


def open_fields(event: Mapping[str, Any], settings: AnomalySettings) -> Dict[str, str]:
    # Every device-supplied string is cleaned (see .text); metric and bound are
    # schema choices, numbers are formatted here.
    unit = unit_of(event)
    device = clean_name(event["device"])
    over = excess(event)
    direction = "above" if event["bound"] == "upper" else "below"
    short = (
        "{metric} {direction} limit on {device}: {value:g} {unit} (limit {limit:g} {unit})".format(
            metric=event["metric"].capitalize(),
            direction=direction,
            device=device,
            value=event["value"],
            unit=unit,
            limit=event["limit"],
        )
    )
    description = "\n".join(
        [
            "The edge agent on device {} detected a {} breach.".format(device, event["metric"]),
            "Metric: {}".format(event["metric"]),
            "Limit: {:g} {} ({} limit)".format(event["limit"], unit, event["bound"]),
            "Reading: {:g} {}".format(event["value"], unit),
            "Peak so far: {:g} {}, {:.2f} {} {} the limit".format(
                event["peak"], unit, over, unit, direction
            ),
            "Episode started: {}".format(
                _wall(event["started_at"], event.get("start_clock_unsynced") is True)
            ),
            "Device: {}".format(device),
            "Episode: {}".format(clean_name(event["episode_id"])),
        ]
    )
    fields = {
        "short_description": short[:160],
        "description": description,
        "category": settings.category,
        "impact": str(settings.impact.get(event["metric"], 3)),
        "urgency": str(urgency(event, settings)),
        "correlation_id": correlation_id(event["episode_id"]),
        "correlation_display": "edge-agent",
    }
    fields.update(routing_fields(settings))
    return fields


def routing_fields(settings: AnomalySettings) -> Dict[str, str]:
    """The optional fields that route an incident (group, caller, service, channel): only
    those set, so an instance's own defaults apply to the rest."""
    named = (
        ("assignment_group", settings.assignment_group),
        ("caller_id", settings.caller_id),
        ("business_service", settings.business_service),
        ("contact_type", settings.contact_type),
    )
    return {field: value for field, value in named if value}


def update_note(event: Mapping[str, Any]) -> str:
    return "Still breaching {}: {} is {:g} {} (limit {:g}, peak {:g}).".format(
        _when(event),
        event["metric"],
        event["value"],
        unit_of(event),
        event["limit"],
        event["peak"],
    )


def duration(event: Mapping[str, Any]) -> float:
    """How long the episode has lasted, in seconds: measured on the device's monotonic
    clock; from the wall times (never below 0) only for a sender too old to say."""
    measured = event.get("duration")
    if measured is not None:
        return float(measured)
    lasted: float = event["ts"] - event["started_at"]
    return max(0.0, lasted)


def recovery_note(event: Mapping[str, Any]) -> str:
    minutes = duration(event) / 60.0
    return (
        "Back within limit {}: {} is {:g} {} (limit {:g}); peak {:g} {}; lasted {:.1f} min.".format(
            _when(event),
            event["metric"],
            event["value"],
            unit_of(event),
            event["limit"],
            event["peak"],
            unit_of(event),
            minutes,
        )
    )


NOT_SET = "the device's clock was not set yet"


def _wall(ts: float, unsynced: bool) -> str:
    """A device's wall time for people: never a 1970 date from a clock not set yet."""
    if ts < PLAUSIBLE_WALL_TIME:
        return "not known ({})".format(NOT_SET)
    if unsynced:
        return "{} by the device's clock, which was not synchronised".format(_iso(ts))
    return _iso(ts)


def _when(event: Mapping[str, Any]) -> str:
    """When an event happened: "at <time>", or how long into the episode when the
    device's clock had not been set."""
    if event["ts"] < PLAUSIBLE_WALL_TIME:
        return "after {:.1f} min ({})".format(duration(event) / 60.0, NOT_SET)
    return "at " + _wall(event["ts"], event.get("clock_unsynced") is True)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
