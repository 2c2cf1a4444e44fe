"""Grouping episodes on a site's gateway: one incident per site event. Pure logic, no I/O.

Episode events from many devices go into groups by labels (``groupBy``, by
default ``site,metric,direction``), as Alertmanager groups alerts:

* the first breach of a group waits ``groupWaitSeconds`` for the others before
  its incident opens (listing every device that breached by then);
* while it is open, at most one work note per ``groupIntervalSeconds`` lists the
  devices that joined, recovered or worsened since the last one, and the peak;
* when its last device recovers, the incident is resolved (a note listing every
  member); a breach after that starts a new group, whose incident names the
  previous one.

The :class:`Grouper` turns events and the passing of time into outbox
:class:`~agent.servicenow.incidents.Action` s and tells which rows of its state
changed (:meth:`Grouper.take_changes`), so the caller can write both in one
transaction: a crash never separates a decision from the state it came from.
Keys of actions count per group, so the same state always makes the same keys.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..config import AnomalySettings
from ..servicenow.incidents import Action
from . import group_text
from .group import Group, Member


class Grouper:
    """The groups of one site; see the module doc."""

    def __init__(
        self,
        site: str,
        group_by: Tuple[str, ...],
        wait: float,
        interval: float,
        settings: AnomalySettings,
        incident_number: Optional[Callable[[str], Optional[str]]] = None,
        unique: Optional[Callable[[], str]] = None,
    ) -> None:
        self.site = site
        self.group_by = group_by
        self.wait = wait
        self.interval = interval
        self.settings = settings
        # The number of a known incident by correlation id, to name a previous group's.
        self.incident_number = incident_number or (lambda corr: None)
        # A group's id ends in a random part, as an episode's does: ids from the gateway's
        # wall clock alone repeat (groups started in one second, a clock set back, a gateway
        # rebooted before NTP), and a repeated id finds the older group's incident.
        self._unique = unique or _random_hex
        self.groups: Dict[str, Group] = {}
        self.previous: Dict[str, str] = {}  # group key → its last resolved group's correlation id
        # The last event taken per device, metric and bound, kept after its group ends:
        # a repeated or older event (a redelivery, a restart) changes nothing.
        self.seen: Dict[str, Dict[str, Any]] = {}
        # The members of the last groups that ended, for a summary (memory only, bounded).
        self.finished: Dict[str, List[str]] = {}
        self._changes: Dict[str, Optional[str]] = {}

    # -- events ----------------------------------------------------------------------
    def on_event(self, event: Mapping[str, Any], now: float) -> List[Action]:
        """The actions one validated episode event makes; none for a repeat or a stale event."""
        key, labels = self._key(event)
        device = event["device"]
        seen_name = "{}|{}|{}".format(device, event["metric"], event["bound"])
        seen = self.seen.get(seen_name)
        if seen is not None and _stale(seen, event):
            return []
        ended = list(seen.get("ended", [])) if seen is not None else []
        if seen is not None and seen["episode_id"] != event["episode_id"]:
            ended = (ended + [seen["episode_id"]])[-ENDED_KEPT:]
        self.seen[seen_name] = seen = {k: event[k] for k in ("episode_id", "seq", "started_at")}
        seen["ended"] = ended
        self._changes["seen/" + seen_name] = json.dumps(seen)
        group = self.groups.get(key)
        member = group.members.get(device) if group is not None else None
        kind = event["event"]
        if group is None:
            group = self._start(key, labels, event, now)
        joining = member is None or member["state"] != "breach"
        worse = member is not None and _further(group.bound, event["peak"], member["peak"])
        group.members[device] = _member(event, "recovered" if kind == "recovered" else "breach")
        self._dirty_member(group, device)
        if kind != "recovered":
            if joining:
                _note_change(group, "joined", device)
            elif worse:
                _note_change(group, "worsened", device)
        elif member is None or member["state"] == "breach":
            _note_change(group, "recovered", device)
        actions: List[Action] = []
        if group.opened_at is None and (now >= group.first_at + self.wait or not group.breaching()):
            actions.append(self._open(group, now))
        if not group.breaching():
            actions.append(self._resolve(group, now))
        else:
            self._dirty_header(group)
        return actions

    def due(self, now: float) -> List[Action]:
        """Actions the passing of time makes: incidents whose wait is over, notes whose
        interval has passed."""
        actions: List[Action] = []
        for group in sorted(self.groups.values(), key=lambda g: g.first_at):
            if group.opened_at is None and now >= group.first_at + self.wait:
                actions.append(self._open(group, now))
                self._dirty_header(group)
            due_at = group._note_due_at(self.interval)
            if due_at is not None and now >= due_at:
                actions.append(self._note(group, now))
                self._dirty_header(group)
        return actions

    def next_due_at(self) -> Optional[float]:
        """When :meth:`due` will next have something to do; ``None`` if nothing waits."""
        times: List[float] = []
        for group in self.groups.values():
            if group.opened_at is None:
                times.append(group.first_at + self.wait)
            due_at = group._note_due_at(self.interval)
            if due_at is not None:
                times.append(due_at)
        return min(times) if times else None

    # -- decisions -------------------------------------------------------------------------
    def _start(
        self, key: str, labels: Dict[str, str], event: Mapping[str, Any], now: float
    ) -> Group:
        parts = [labels[label] for label in self.group_by]
        group_id = ":".join(parts + ["{:d}-{}".format(int(now), self._unique())])
        group = Group(key, group_id, event["metric"], event["bound"], now)
        group.previous = self.previous.get(key)
        self.groups[key] = group
        return group

    def _open(self, group: Group, now: float) -> Action:
        group.opened_at = group.last_note_at = now
        group.changes = {"joined": [], "recovered": [], "worsened": []}
        previous = None
        if group.previous is not None:
            previous = (group.previous, self.incident_number(group.previous))
        fields = group_text.open_fields(group, self.site, self.settings, previous)
        return self._action(group, "open", fields, None)

    def _note(self, group: Group, now: float) -> Action:
        text = group_text.change_note(group, now)
        group.last_note_at = now
        group.changes = {"joined": [], "recovered": [], "worsened": []}
        fallback = group_text.open_fields(group, self.site, self.settings, None)
        return self._action(group, "note", {"work_notes": text}, fallback)

    def _resolve(self, group: Group, now: float) -> Action:
        note = group_text.resolve_note(group, now)
        fallback = group_text.open_fields(group, self.site, self.settings, None)
        del self.groups[group.key]
        _remember(self.finished, group.correlation_id, sorted(group.members))
        self.previous[group.key] = group.correlation_id
        self._changes["previous/" + group.key] = group.correlation_id
        self._changes["group/" + group.key] = None
        for device in group.members:
            self._changes[_member_name(group.key, device)] = None
        if self.settings.recovery_action == "resolve":
            fields = {
                "state": "6",
                "close_code": self.settings.close_code,
                "close_notes": self.settings.close_notes,
                "work_notes": note,
            }
            return self._action(group, "resolve", fields, fallback)
        return self._action(group, "note", {"work_notes": note}, fallback)

    def _action(
        self,
        group: Group,
        kind: str,
        fields: Dict[str, str],
        fallback: Optional[Dict[str, str]],
    ) -> Action:
        key = "{}#{}:{}".format(group.correlation_id, group.seq, kind)
        group.seq += 1
        return Action(kind, key, group.correlation_id, fields, fallback)

    def _key(self, event: Mapping[str, Any]) -> Tuple[str, Dict[str, str]]:
        labels = {
            "site": self.site,
            "metric": event["metric"],
            "direction": "above" if event["bound"] == "upper" else "below",
            "device": event["device"],
        }
        return "|".join(labels[label] for label in self.group_by), labels

    # -- state, for the outbox ---------------------------------------------------------------
    def _dirty_header(self, group: Group) -> None:
        if group.key in self.groups:
            self._changes["group/" + group.key] = json.dumps(group.header())

    def _dirty_member(self, group: Group, device: str) -> None:
        name = _member_name(group.key, device)
        self._changes[name] = json.dumps(group.members[device])
        self._dirty_header(group)

    def take_changes(self) -> Dict[str, Optional[str]]:
        """State rows changed since the last call: name → JSON, or ``None`` to delete."""
        changes, self._changes = self._changes, {}
        return changes

    def load(self, rows: Mapping[str, str]) -> None:
        """Take back the state rows written before (a restart)."""
        members: List[Tuple[str, str, Member]] = []
        for name, value in rows.items():
            kind, _, rest = name.partition("/")
            if kind == "group":
                group = Group.from_header(json.loads(value))
                self.groups[group.key] = group
            elif kind == "previous":
                self.previous[rest] = value
            elif kind == "seen":
                self.seen[rest] = json.loads(value)
            elif kind == "member":
                key, _, device = rest.partition(SEP)
                members.append((key, device, json.loads(value)))
        for key, device, member in members:
            if key in self.groups:
                self.groups[key].members[device] = member


# Between a group's key and a device in a row name: devices cannot hold a control character.
SEP = "\x1f"


def _member_name(key: str, device: str) -> str:
    return "member/" + key + SEP + device


FINISHED_KEPT = 100


def _remember(finished: Dict[str, List[str]], corr: str, members: List[str]) -> None:
    finished[corr] = members
    while len(finished) > FINISHED_KEPT:
        del finished[next(iter(finished))]


def _member(event: Mapping[str, Any], state: str) -> Member:
    return {
        "episode": event["episode_id"],
        "seq": event["seq"],
        "state": state,
        "value": event["value"],
        "peak": event["peak"],
        "limit": event["limit"],
        "started_at": event["started_at"],
        "ts": event["ts"],
    }


# Episodes of one device, metric and bound that a later one replaced, kept to refuse their
# late events; a Pi opens a few a day at most.
ENDED_KEPT = 16


def _stale(seen: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """A repeat, or an event of an episode this device has already moved past.

    Never by comparing wall times: a Pi without a real-time clock restarts near 1970 until
    NTP sets it, so a newer episode may carry an older ``started_at``."""
    if seen["episode_id"] == event["episode_id"]:
        return bool(event["seq"] <= seen["seq"])
    return event["episode_id"] in seen.get("ended", [])


def _further(bound: str, peak: float, before: float) -> bool:
    return peak > before if bound == "upper" else peak < before


def _note_change(group: Group, change: str, device: str) -> None:
    for names in group.changes.values():
        if device in names:
            names.remove(device)  # only its latest change counts
    group.changes[change].append(device)


def _random_hex() -> str:
    return os.urandom(4).hex()
