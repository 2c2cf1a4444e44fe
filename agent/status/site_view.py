"""A site gateway's part of the status page: what its health report says of the site, checked.

The gateway's anomaly function reports its site (``site`` in its health report,
:meth:`agent.site.gateway.SiteGateway.snapshot`): devices by state, the open
groups with their members, and each device's last reading as a row
``[device, state, ts, temperature, humidity, pressure]``. :func:`clean_site`
keeps only well-formed fields (the page shows nothing unchecked);
:func:`site_document` is the document's ``site`` section.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from ..schema import METRIC_RANGES, METRICS

STATES = ("normal", "in breach", "silent")
MAX_TEXT = 200
MAX_DEVICES = 5000


def clean_site(value: Any) -> Optional[Dict[str, Any]]:
    """The ``site`` of a health report, every field checked; ``None`` if it is not one."""
    if not isinstance(value, dict) or not _text(value.get("name")):
        return None
    raw_states = value.get("by_state")
    by_state: Dict[str, Any] = raw_states if isinstance(raw_states, dict) else {}
    devices: List[List[Any]] = []
    for row in (value.get("devices") or [])[:MAX_DEVICES]:
        if not isinstance(row, list) or len(row) != 6:
            continue
        device, state, ts = row[0], row[1], _number(row[2], 0.0, 1e11)
        if not _text(device) or state not in STATES:
            continue
        values = [_number(v, *METRIC_RANGES[m]) for v, m in zip(row[3:], METRICS)]
        devices.append([device, state, ts] + values)
    groups = []
    for group in (value.get("groups") or [])[:100]:
        if not isinstance(group, dict) or not _text(group.get("correlation_id")):
            continue
        members = [m for m in (group.get("members") or [])[:MAX_DEVICES] if _text(m)]
        groups.append(
            {
                "correlation_id": group["correlation_id"],
                "kind": group.get("kind") if _text(group.get("kind")) else "?",
                "opened": group.get("opened") is True,
                "members": members,
            }
        )
    return {
        "name": value["name"],
        "by_state": {s: _count(by_state.get(s)) for s in STATES},
        "devices": devices,
        "groups": groups,
    }


def site_document(site: Optional[Dict[str, Any]], now: float) -> Optional[Dict[str, Any]]:
    """The document's ``site``: devices by state, open groups, each device's last reading."""
    if site is None:
        return None
    return {
        "name": site["name"],
        "devices_by_state": dict(site["by_state"]),
        "groups": site["groups"],
        "devices": [
            {
                "device": device,
                "state": state,
                "last_reading_at": ts,
                "last_reading_age_seconds": None if ts is None else round(max(0.0, now - ts), 3),
                "reading": dict(zip(METRICS, values)),
            }
            for device, state, ts, *values in site["devices"]
        ],
    }


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _number(value: Any, low: float, high: float) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and low <= value <= high else None
