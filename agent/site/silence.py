"""Silence is an event: a site gateway notices devices that stop reporting. Pure logic, no I/O.

The gateway knows its devices from the deployment (``siteDevices``) or from
their first reading, and each one's reading period (the gap between readings
with consecutive ``seq``, else ``period``). A device with no reading for
``silentAfterSeconds`` (default: 3 periods + 30 s) joins the site's silent group
(``site`` + ``silent``): one incident "no readings from …" however many go
silent together (a switch failure), waiting ``groupWaitSeconds`` for the others
and noting changes at most once per ``groupIntervalSeconds``, as other groups.
It is resolved when every silent device reports again; a group whose devices all
report again before its wait is over opens nothing.

Time is the gateway's own clock at arrival, never a device's ``ts`` (a device's
clock may be wrong). After a restart every device is given a full
``silentAfterSeconds`` from the start: a gateway that was down never makes its
devices look silent. Readings cost a dictionary update; the search for silent
devices runs at most every ``CHECK_EVERY`` seconds.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Mapping, Optional

from ..config import AnomalySettings
from ..servicenow.incidents import Action
from ..servicenow.text import clean_name
from .group import Group
from .group_text import iso
from .grouping import _remember

CHECK_EVERY = 5.0
SILENT_GRACE = 30.0  # added to 3 periods: a reading late by a network hiccup is not silence
PERIODS = 3


class DeviceSeen:
    """What the gateway knows of one device: when it last heard from it, and its period."""

    __slots__ = ("device", "last_at", "last_ts", "seq", "period", "learned", "reading", "silent")

    def __init__(self, device: str, period: float, now: float) -> None:
        self.device = device
        self.last_at = now  # gateway time: the last reading's arrival, or the gateway's start
        self.last_ts: Optional[float] = None
        self.seq: Optional[int] = None
        self.period = period
        self.learned = False  # period seen in its own readings, not the configured one
        self.reading: Optional[Dict[str, Any]] = None
        self.silent = False


class SilenceWatch:
    def __init__(
        self,
        site: str,
        settings: AnomalySettings,
        period: float,
        silent_after: Optional[float],
        known: Iterable[str],
        now: float,
    ) -> None:
        self.site = site
        self.settings = settings
        self.default_period = period
        self.silent_after = silent_after
        self.wait = settings.group_wait
        self.interval = settings.group_interval
        self.devices: Dict[str, DeviceSeen] = {d: DeviceSeen(d, period, now) for d in known}
        self.group: Optional[Group] = None
        self.previous: Optional[str] = None
        self.finished: Dict[str, List[str]] = {}  # members of the last silent groups (bounded)
        self._next_check = now + CHECK_EVERY
        # False once the site is known to stop on purpose (the end of a simulation).
        self.watching = True
        self._changes: Dict[str, Optional[str]] = {}

    def after(self, seen: DeviceSeen) -> float:
        """How long ``seen`` may stay quiet before it is silent."""
        if self.silent_after is not None:
            return self.silent_after
        return PERIODS * seen.period + SILENT_GRACE

    # -- readings ----------------------------------------------------------------------
    def reading(self, message: Mapping[str, Any], now: float) -> List[Action]:
        """Take one reading (``device``, ``seq``, ``ts`` checked by the caller)."""
        device = message["device"]
        seen = self.devices.get(device)
        if seen is None:
            seen = self.devices[device] = DeviceSeen(device, self.default_period, now)
            self._changes["device/" + device] = json.dumps({"period": seen.period})
        seq, ts = message["seq"], message["ts"]
        if seen.seq is not None and seen.last_ts is not None and seq == seen.seq + 1:
            gap = ts - seen.last_ts
            if gap > 0:
                # Smoothed: one late reading does not halve the watch.
                seen.period = 0.8 * seen.period + 0.2 * gap if seen.learned else gap
                seen.learned = True
        seen.last_at, seen.last_ts, seen.seq = now, ts, seq
        seen.reading = dict(message)  # its ts and metrics, for the status page
        if not seen.silent:
            return []
        seen.silent = False
        group = self.group
        if group is None or device not in group.members:
            return []
        group.members[device]["state"] = "back"
        _change(group, "recovered", device)
        if any(m["state"] == "silent" for m in group.members.values()):
            self._dirty()
            return []
        if group.opened_at is None:
            # Every device spoke again before the group's wait was over: a blip no
            # longer than silentAfterSeconds + groupWaitSeconds, not worth an incident.
            self.group = None
            self._changes["silence/group"] = None
            return []
        return [self._resolve(group, now)]

    # -- time --------------------------------------------------------------------------
    def due(self, now: float) -> List[Action]:
        actions: List[Action] = []
        if self.watching and now >= self._next_check:
            self._next_check = now + CHECK_EVERY
            self._find_silent(now)
        group = self.group
        if group is None:
            return actions
        if group.opened_at is None and now >= group.first_at + self.wait:
            actions.append(self._open(group, now))
            self._dirty()
        elif (
            group.opened_at is not None
            and any(group.changes.values())
            and now >= (group.last_note_at or group.opened_at) + self.interval
        ):
            actions.append(self._note(group, now))
            self._dirty()
        return actions

    def next_due_at(self) -> Optional[float]:
        """When the silent group's wait or interval ends; the search for silent devices is
        not counted: it runs whenever ``due`` is called (the delivery worker calls it every
        few seconds), at most every ``CHECK_EVERY`` s, and only while ``watching``."""
        group = self.group
        if group is None:
            return None
        if group.opened_at is None:
            return group.first_at + self.wait
        if any(group.changes.values()):
            return (group.last_note_at or group.opened_at) + self.interval
        return None

    def _find_silent(self, now: float) -> None:
        for seen in self.devices.values():
            if seen.silent or now - seen.last_at < self.after(seen):
                continue
            seen.silent = True
            group = self.group
            if group is None:
                group_id = "{}:silent:{:d}".format(self.site, int(now))
                group = self.group = Group("silent", group_id, "silent", "", now)
                group.previous = self.previous
            group.members[seen.device] = {
                "state": "silent",
                "since_at": seen.last_at,  # the gateway's time: a device's clock may be wrong
                "reported": seen.seq is not None,
            }
            _change(group, "joined", seen.device)
            self._dirty()

    # -- decisions ---------------------------------------------------------------------------
    def _open(self, group: Group, now: float) -> Action:
        group.opened_at = group.last_note_at = now
        group.changes = {"joined": [], "recovered": [], "worsened": []}
        silent = _silent(group)
        short = "No readings from {} device{} at site {}{}".format(
            len(silent),
            "" if len(silent) == 1 else "s",
            clean_name(self.site),
            " ({})".format(clean_name(silent[0])) if len(silent) == 1 else "",
        )
        lines = ["The site gateway of {} has no readings from:".format(clean_name(self.site))]
        for device in silent:
            lines.append(
                "  {}: no readings since {}".format(clean_name(device), _since(group, device))
            )
        if group.previous:
            lines.append(
                "Follows the previous silence of this site (correlation id {})".format(
                    group.previous
                )
            )
        lines.append("Group: {}".format(clean_name(group.group_id)))
        fields = {
            "short_description": short[:160],
            "description": "\n".join(lines),
            "category": self.settings.category,
            "impact": "2",
            "urgency": "2",
            "correlation_id": group.correlation_id,
            "correlation_display": "edge-agent",
        }
        if self.settings.assignment_group:
            fields["assignment_group"] = self.settings.assignment_group
        if self.settings.caller_id:
            fields["caller_id"] = self.settings.caller_id
        if self.settings.business_service:
            fields["business_service"] = self.settings.business_service
        if self.settings.contact_type:
            fields["contact_type"] = self.settings.contact_type
        return _action(group, "open", fields, None)

    def _note(self, group: Group, now: float) -> Action:
        parts = ["Site update at {}:".format(iso(now))]
        if group.changes["joined"]:
            parts.append(
                "{} more silent: {}.".format(
                    len(group.changes["joined"]),
                    ", ".join(
                        "{} (since {})".format(clean_name(d), _since(group, d))
                        for d in sorted(group.changes["joined"])
                    ),
                )
            )
        if group.changes["recovered"]:
            parts.append(
                "{} reporting again: {}.".format(
                    len(group.changes["recovered"]), _names(group.changes["recovered"])
                )
            )
        parts.append("{} still silent.".format(len(_silent(group))))
        group.last_note_at = now
        group.changes = {"joined": [], "recovered": [], "worsened": []}
        return _action(group, "note", {"work_notes": " ".join(parts)}, None)

    def _resolve(self, group: Group, now: float) -> Action:
        note = "Every device reports again at {}. Devices that were silent ({}): {}.".format(
            iso(now), len(group.members), _names(group.members)
        )
        self.group = None
        self.previous = group.correlation_id
        _remember(self.finished, group.correlation_id, sorted(group.members))
        self._changes["silence/group"] = None
        self._changes["silence/previous"] = group.correlation_id
        if self.settings.recovery_action == "resolve":
            fields = {
                "state": "6",
                "close_code": self.settings.close_code,
                "close_notes": self.settings.close_notes,
                "work_notes": note,
            }
            return _action(group, "resolve", fields, None)
        return _action(group, "note", {"work_notes": note}, None)

    # -- state -----------------------------------------------------------------------------------
    def _dirty(self) -> None:
        if self.group is not None:
            state = dict(self.group.header(), members=self.group.members)
            self._changes["silence/group"] = json.dumps(state)

    def take_changes(self) -> Dict[str, Optional[str]]:
        changes, self._changes = self._changes, {}
        return changes

    def load(self, rows: Mapping[str, str], now: float) -> None:
        """Take back what was written before a restart; every device starts a new watch."""
        for name in rows:
            if name.startswith("device/"):
                device = name[len("device/") :]
                self.devices.setdefault(device, DeviceSeen(device, self.default_period, now))
        if "silence/previous" in rows:
            self.previous = rows["silence/previous"]
        if "silence/group" in rows:
            data = json.loads(rows["silence/group"])
            group = Group.from_header(data)
            group.members = data["members"]
            self.group = group
            for device, member in group.members.items():
                seen = self.devices.setdefault(device, DeviceSeen(device, self.default_period, now))
                seen.silent = member["state"] == "silent"


def _silent(group: Group) -> List[str]:
    return sorted(d for d, m in group.members.items() if m["state"] == "silent")


def _since(group: Group, device: str) -> str:
    member = group.members[device]
    if not member["reported"]:
        return "the gateway's start at {} (none received)".format(iso(member["since_at"]))
    return iso(member["since_at"])


def _names(devices: Iterable[str]) -> str:
    return ", ".join(clean_name(d) for d in sorted(devices))


def _change(group: Group, change: str, device: str) -> None:
    for names in group.changes.values():
        if device in names:
            names.remove(device)
    group.changes[change].append(device)


def _action(
    group: Group, kind: str, fields: Dict[str, str], fallback: Optional[Dict[str, str]]
) -> Action:
    key = "{}#{}:{}".format(group.correlation_id, group.seq, kind)
    group.seq += 1
    return Action(kind, key, group.correlation_id, fields, fallback)
