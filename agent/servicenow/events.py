"""Event Management events for episodes (``snowSink=event``). Pure logic, no I/O.

Events go to ``POST /api/global/em/jsonv2`` as ``{"records": [...]}``; each
follows ServiceNow's "event field requirements": every value a string,
``severity`` 1 critical … 5 OK and 0 clear, ``message_key`` (the dedup key)
at most 1024 characters, ``time_of_event`` as ``yyyy-MM-dd HH:mm:ss`` in GMT,
``additional_info`` a string holding a JSON object whose values are strings.

An episode is one ``message_key`` (its correlation id): the breach and each
throttled update send its severity (from the metric's impact: 1 → 1 critical,
2 → 2 major, 3 → 3 minor), the recovery a clear (0), which closes the alert
ServiceNow derived. A re-sent event is harmless: same key, same alert.
"""

from __future__ import annotations

import json
import time

from ..clock import PLAUSIBLE_WALL_TIME
from ..sensors.base import UNITS
from .text import clean_name

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping

    from ..config import AnomalySettings

SOURCE = "edge-agent"
EVENT_TYPE = "Environment"
MESSAGE_KEY_MAX = 1024
CLEAR = "0"


def gmt(ts: float) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in GMT, as ``time_of_event`` must be."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def event_record(
    node: str,
    resource: str,
    metric_name: str,
    severity: str,
    message_key: str,
    when: float,
    description: str,
    info: Mapping[str, Any],
) -> Dict[str, str]:
    """One event as Event Management takes it: every value a string. A ``when`` from a
    clock not set yet (a Pi before NTP) is left out, and the instance stamps the event
    when it takes it, rather than file it in 1970."""
    record = {
        "source": SOURCE,
        "node": node,
        "type": EVENT_TYPE,
        "resource": resource,
        "metric_name": metric_name,
        "severity": severity,
        "message_key": message_key[:MESSAGE_KEY_MAX],
        "time_of_event": gmt(when),
        "description": description[:4000],
        "additional_info": json.dumps({str(k): str(v) for k, v in info.items()}, sort_keys=True),
    }
    if when < PLAUSIBLE_WALL_TIME:
        del record["time_of_event"]
    return record


def severity_for(metric: str, settings: AnomalySettings) -> str:
    """The event's severity from the metric's impact: 1 → 1 critical, 2 → 2 major, 3 → 3 minor."""
    return str(settings.impact.get(metric, 3))


def episode_event(
    event: Mapping[str, Any], settings: AnomalySettings, message_key: str, description: str
) -> Dict[str, str]:
    """The event for an ``edge-agent/anomaly/1`` message: its severity, or a clear on recovery."""
    metric = event["metric"]
    unit = UNITS[metric]
    severity = CLEAR if event["event"] == "recovered" else severity_for(metric, settings)
    info = {
        "limit": "{:g} {}".format(event["limit"], unit),
        "bound": event["bound"],
        "peak": "{:g} {}".format(event["peak"], unit),
        "reading": "{:g} {}".format(event["value"], unit),
        "episode_started": (
            gmt(event["started_at"])
            if event["started_at"] >= PLAUSIBLE_WALL_TIME
            else "not known (the device's clock was not set yet)"
        ),
        "episode": clean_name(event["episode_id"]),
        "event": event["event"],
    }
    return event_record(
        node=clean_name(event["device"]),
        resource=metric,
        metric_name="{} ({})".format(metric, unit),
        severity=severity,
        message_key=message_key,
        when=event["ts"],
        description=description,
        info=info,
    )
