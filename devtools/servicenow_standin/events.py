"""Event Management's inbound endpoint, ``POST /api/global/em/jsonv2``, and the alerts it derives.

Strict where ServiceNow's "event field requirements" are: a body
``{"records": [...]}``; every record names its ``source`` and ``node`` and has
a ``severity`` of 0 (clear) to 5 (OK); every value is a string;
``message_key`` at most 1024 characters; ``time_of_event`` as
``yyyy-MM-dd HH:mm:ss`` (GMT); ``additional_info`` a string holding a JSON
object whose values are all strings. A batch with one bad record is refused
whole (400), naming the record and the field. The answer carries no sys_id:
``{"result": {"Default Bulk Endpoint": "N events were inserted"}}``.

Alerts, as the default rules derive them: one per ``message_key`` while open;
severity 1 to 4 opens it or updates its severity, 5 (OK) opens none, 0 (clear)
opens none and closes the open one. A re-sent event is one more event on the
same alert, never a second alert.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, Dict, List, Optional

from .responses import Response, bad_request

LOG = logging.getLogger("edge_agent.standin")

EVENT_PATH = "/api/global/em/jsonv2"
MESSAGE_KEY_MAX = 1024
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
_FIELDS = frozenset(
    {
        "source",
        "event_class",
        "node",
        "type",
        "resource",
        "metric_name",
        "severity",
        "message_key",
        "description",
        "time_of_event",
        "additional_info",
        "resolution_state",
        "ci_type",
    }
)


class EventEndpoint:
    """Events received and the alerts derived from them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: List[Dict[str, str]] = []
        self._alerts: Dict[str, Dict[str, Any]] = {}  # by number
        self._open: Dict[str, str] = {}  # message_key -> open alert number
        self._next = 10001

    def alerts(self) -> List[Dict[str, Any]]:
        """Every alert, oldest first: number, message_key, node, resource, severity,
        state (Open, Closed), events (how many events it got)."""
        with self._lock:
            return [dict(a) for a in self._alerts.values()]

    def post(self, body: bytes) -> Response:
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return bad_request("Exception while reading request", "The payload is not valid JSON.")
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, list) or not records:
            return bad_request("Invalid request", 'The body must be {"records": [event, ...]}')
        for index, record in enumerate(records):
            problem = record_problem(record)
            if problem:
                return bad_request("Invalid event", "records[{}]: {}".format(index, problem))
        with self._lock:
            for record in records:
                self._derive(dict(record))
        count = len(records)
        return 200, {"result": {"Default Bulk Endpoint": f"{count} events were inserted"}}, {}

    def _derive(self, event: Dict[str, str]) -> None:
        self.events.append(event)
        severity = int(event["severity"])
        key = event.get("message_key") or "{}__{}__{}__{}__{}".format(
            event["source"],
            event["node"],
            event.get("type", ""),
            event.get("resource", ""),
            event.get("metric_name", ""),
        )
        number = self._open.get(key)
        if severity == 0:
            if number is not None:
                self._alerts[number]["state"] = "Closed"
                self._alerts[number]["events"] += 1
                del self._open[key]
                LOG.info("alert %s closed by a clear event", number)
            return
        if number is not None:
            alert = self._alerts[number]
            alert["severity"] = str(severity)
            alert["events"] += 1
            return
        if severity == 5:
            return  # OK: nothing to alert on
        number = "Alert{:07d}".format(self._next)
        self._next += 1
        self._alerts[number] = {
            "number": number,
            "message_key": key,
            "node": event["node"],
            "resource": event.get("resource", ""),
            "metric_name": event.get("metric_name", ""),
            "severity": str(severity),
            "state": "Open",
            "events": 1,
        }
        self._open[key] = number
        LOG.info("alert %s opened (severity %s) for %s", number, severity, event["node"])


def record_problem(record: Any) -> Optional[str]:
    """What is wrong with one event record, or ``None``."""
    if not isinstance(record, dict):
        return "an event must be a JSON object"
    for name, value in record.items():
        if name in _FIELDS and not isinstance(value, str):
            return "{} must be a string, got {}".format(name, type(value).__name__)
    for name in ("source", "node", "severity"):
        if not str(record.get(name) or "").strip():
            return "{} is required".format(name)
    if record["severity"] not in ("0", "1", "2", "3", "4", "5"):
        return "severity must be 0 (clear) to 5 (OK), got {!r}".format(record["severity"])
    if len(record.get("message_key") or "") > MESSAGE_KEY_MAX:
        return "message_key is longer than {} characters".format(MESSAGE_KEY_MAX)
    when = record.get("time_of_event")
    if when is not None and not _TIME.match(when):
        return "time_of_event must be yyyy-MM-dd HH:mm:ss (GMT), got {!r}".format(when[:40])
    info = record.get("additional_info")
    if info is not None:
        try:
            parsed = json.loads(info)
        except ValueError:
            return "additional_info must hold a JSON object"
        if not isinstance(parsed, dict):
            return "additional_info must hold a JSON object"
        for key, value in parsed.items():
            if not isinstance(value, str):
                return "additional_info.{} must be a string".format(key)
    return None
