"""What a group's incident says: its fields at open, its work notes. Pure text, no I/O.

Every device-supplied string is cleaned (:mod:`agent.servicenow.text`); units come
from the metric, never from a device.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, Iterable, List, Optional, Tuple

from ..clock import PLAUSIBLE_WALL_TIME
from ..config import AnomalySettings
from ..sensors.base import UNITS
from ..servicenow.incidents import routing_fields
from ..servicenow.text import clean_name
from .group import Group


def open_fields(
    group: Group,
    site: str,
    settings: AnomalySettings,
    previous: Optional[Tuple[str, Optional[str]]],
) -> Dict[str, str]:
    """The incident's fields: which site, what, how many devices, the worst, and who."""
    unit = UNITS[group.metric]
    direction = "above" if group.bound == "upper" else "below"
    breaching = group.breaching()
    peak, worst = group.peak()
    limit = group.members[worst]["limit"]
    site_name = clean_name(site)
    short = "{} {} limit at site {}: {} device{} (peak {:g} {} on {})".format(
        group.metric.capitalize(),
        direction,
        site_name,
        len(breaching) or len(group.members),
        "" if len(breaching) == 1 else "s",
        peak,
        unit,
        clean_name(worst),
    )
    lines = [
        "The edge agents of site {} detected a {} breach on {} device{}.".format(
            site_name, group.metric, len(group.members), "" if len(group.members) == 1 else "s"
        ),
        "Metric: {}".format(group.metric),
        "Limit: {:g} {} ({} limit)".format(limit, unit, group.bound),
        "Peak so far: {:g} {} on {}".format(peak, unit, clean_name(worst)),
        "First breach: {}".format(iso(_first([m["started_at"] for m in group.members.values()]))),
        "Devices in breach: {}".format(_names(breaching) or "none"),
    ]
    recovered = sorted(set(group.members) - set(breaching))
    if recovered:
        lines.append("Devices already recovered: {}".format(_names(recovered)))
    for device in sorted(group.members):
        member = group.members[device]
        lines.append(
            "  {}: {:g} {} (peak {:g})".format(
                clean_name(device), member["value"], unit, member["peak"]
            )
        )
    if previous is not None:
        corr, number = previous
        lines.append(
            "Follows the previous incident of this group: {}{}".format(
                number + " " if number else "", "(correlation id {})".format(corr)
            )
        )
    lines.append("Group: {}".format(clean_name(group.group_id)))
    fields = {
        "short_description": short[:160],
        "description": "\n".join(lines),
        "category": settings.category,
        "impact": str(settings.impact.get(group.metric, 3)),
        "urgency": str(_urgency(peak, limit, group.bound, settings)),
        "correlation_id": group.correlation_id,
        "correlation_display": "edge-agent",
    }
    fields.update(routing_fields(settings))
    return fields


def change_note(group: Group, now: float) -> str:
    """The interval's work note: who joined, recovered or worsened, and the peak now."""
    peak, worst = group.peak()
    parts = ["Site update at {}:".format(iso(now))]
    for change in ("joined", "worsened", "recovered"):
        if group.changes[change]:
            parts.append(
                "{} {}: {}.".format(
                    len(group.changes[change]), change, _names(group.changes[change])
                )
            )
    breaching = group.breaching()
    parts.append(
        "{} device{} in breach; peak {:g} {} on {}.".format(
            len(breaching),
            "" if len(breaching) == 1 else "s",
            peak,
            UNITS[group.metric],
            clean_name(worst),
        )
    )
    return " ".join(parts)


def resolve_note(group: Group, now: float) -> str:
    """The last note: every member is back within the limit; who was in the group."""
    peak, worst = group.peak()
    minutes = (now - group.first_at) / 60.0
    parts = ["All devices back within limit at {}.".format(iso(now))]
    if group.changes["joined"] or group.changes["worsened"]:
        for change in ("joined", "worsened"):
            if group.changes[change]:
                parts.append(
                    "{} since the last note: {}.".format(
                        change.capitalize(), _names(group.changes[change])
                    )
                )
    parts.append(
        "Devices in this group ({}): {}. Peak {:g} {} on {}; lasted {:.1f} min.".format(
            len(group.members),
            _names(group.members),
            peak,
            UNITS[group.metric],
            clean_name(worst),
            minutes,
        )
    )
    return " ".join(parts)


def iso(ts: float) -> str:
    """A device's wall time for people: never a 1970 date from a clock not set yet."""
    if ts < PLAUSIBLE_WALL_TIME:
        return "not known (the device's clock was not set yet)"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _first(starts: List[float]) -> float:
    """The earliest start that a set clock gave, else any (it then reads as not known)."""
    plausible = [ts for ts in starts if ts >= PLAUSIBLE_WALL_TIME]
    return min(plausible or starts)


def _names(devices: Iterable[str]) -> str:
    return ", ".join(clean_name(d) for d in sorted(devices))


def _urgency(peak: float, limit: float, bound: str, settings: AnomalySettings) -> int:
    over = max(0.0, peak - limit) if bound == "upper" else max(0.0, limit - peak)
    percent = 100.0 * over / (abs(limit) or 1.0)
    low, high = settings.urgency_bands
    return 1 if percent >= high else 2 if percent >= low else 3
