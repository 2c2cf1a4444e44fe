"""A site gateway's grouping at work: events and time in, actions and state to the outbox.

The anomaly service hands every validated episode event here when ``site`` is
set. The :class:`~.grouping.Grouper` decides; this writes its actions and the
state rows they came from in one synced transaction
(:meth:`~agent.servicenow.outbox.Outbox.enqueue_with_state`), through the
service's ``queue`` so a full disk holds them in order as it holds any action.
State rows a failed write could not take are written with the next write that
succeeds. At start the groups are read back from the outbox: a restart neither
forgets a group nor opens its incident twice. Readings go to the
:class:`~.silence.SilenceWatch`, which notices the devices that stop reporting.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional

from ..clock import Clock
from ..config import AnomalySettings
from ..servicenow.incidents import Action
from ..servicenow.outbox import Outbox
from .grouping import Grouper
from .silence import SilenceWatch

log = logging.getLogger(__name__)

# queue(actions, state rows) → whether they reached the outbox (False: held in memory).
STATES = ("normal", "in breach", "silent")
REPORTED_DEVICES = 1500  # a health report stays well under a V1 core's 128 KB per message
Queue = Callable[[List[Action], Dict[str, Optional[str]]], bool]


class SiteGateway:
    def __init__(
        self, settings: AnomalySettings, outbox: Outbox, clock: Clock, queue: Queue
    ) -> None:
        assert settings.site is not None
        self.site = settings.site
        self.clock = clock
        self._queue = queue
        self._unsaved: Dict[str, Optional[str]] = {}
        self.grouper = Grouper(
            settings.site,
            settings.group_by,
            settings.group_wait,
            settings.group_interval,
            settings,
            incident_number=lambda corr: _number(outbox, corr),
        )
        self.silence = SilenceWatch(
            settings.site,
            settings,
            settings.period,
            settings.silent_after,
            settings.site_devices,
            clock.time(),
        )
        rows = outbox.site_state()
        self.grouper.load(rows)
        self.silence.load(rows, clock.time())
        if self.grouper.groups:
            log.info(
                "site %s: %d open groups read back from the outbox",
                settings.site,
                len(self.grouper.groups),
            )

    def handle(self, event: Mapping[str, Any]) -> bool:
        """Group one validated episode event; ``False`` if it was a repeat or stale."""
        now = self.clock.time()
        actions = self.grouper.on_event(event, now)
        changes = self.grouper.take_changes()
        if not actions and not changes:
            return False
        self._unsaved.update(changes)
        actions.extend(self.grouper.due(now))
        self._write(actions)
        return True

    def reading(self, message: Mapping[str, Any]) -> None:
        """Take one validated reading: the device is alive (and back, if it was silent)."""
        actions = self.silence.reading(message, self.clock.time())
        changes = self.silence.take_changes()
        if actions or changes:
            self._unsaved.update(changes)
            self._write(actions)

    def tick(self) -> int:
        """Open incidents whose wait is over, send notes whose interval has passed;
        write state a failed write left behind. Returns how many actions were made."""
        now = self.clock.time()
        due_at = self.grouper.next_due_at()
        actions = self.grouper.due(now) if due_at is not None and now >= due_at else []
        actions.extend(self.silence.due(now))
        if actions or self._unsaved:
            self._write(actions)
        return len(actions)

    def stop_watching(self) -> None:
        """The site stops reporting on purpose (a simulation's end): no silence from now on."""
        self.silence.watching = False

    def members_by_group(self) -> Dict[str, List[str]]:
        """Correlation id → member devices, of open groups and the last ones that ended."""
        out = dict(self.grouper.finished)
        out.update(self.silence.finished)
        for group in self.grouper.groups.values():
            out[group.correlation_id] = sorted(group.members)
        if self.silence.group is not None:
            out[self.silence.group.correlation_id] = sorted(self.silence.group.members)
        return out

    def device_states(self) -> Dict[str, str]:
        """Each known device's state: ``silent``, ``in breach`` or ``normal``."""
        states = {device: "normal" for device in self.silence.devices}
        for group in self.grouper.groups.values():
            for device in group.breaching():
                states[device] = "in breach"
        for device, seen in self.silence.devices.items():
            if seen.silent:
                states[device] = "silent"
        return states

    def snapshot(self) -> Dict[str, Any]:
        """The site for a health report (the status page, ``/metrics``): devices by state,
        open groups with their members, and each device's last reading, compactly
        (``[device, state, last reading's ts, temperature, humidity, pressure]``; at most
        ``REPORTED_DEVICES`` of them, the silent and breaching first)."""
        states = self.device_states()
        by_state = {state: 0 for state in STATES}
        for state in states.values():
            by_state[state] += 1
        rank = {"silent": 0, "in breach": 1, "normal": 2}
        rows: List[List[Any]] = []
        for device in sorted(states, key=lambda d: (rank[states[d]], d))[:REPORTED_DEVICES]:
            seen = self.silence.devices.get(device)
            reading = seen.reading if seen is not None else None
            rows.append(
                [device, states[device]]
                + (
                    [None] * 4
                    if reading is None
                    else [reading.get(k) for k in ("ts", "temperature", "humidity", "pressure")]
                )
            )
        groups = [
            {
                "correlation_id": g.correlation_id,
                "kind": "{} {}".format(g.metric, "above" if g.bound == "upper" else "below"),
                "opened": g.opened_at is not None,
                "members": g.breaching(),
            }
            for g in sorted(self.grouper.groups.values(), key=lambda g: g.first_at)
        ]
        silent = self.silence.group
        if silent is not None:
            groups.append(
                {
                    "correlation_id": silent.correlation_id,
                    "kind": "silent",
                    "opened": silent.opened_at is not None,
                    "members": sorted(
                        d for d, m in silent.members.items() if m["state"] == "silent"
                    ),
                }
            )
        return {"name": self.site, "by_state": by_state, "devices": rows, "groups": groups}

    def next_due_at(self) -> Optional[float]:
        times = [
            t for t in (self.grouper.next_due_at(), self.silence.next_due_at()) if t is not None
        ]
        return min(times) if times else None

    def _write(self, actions: List[Action]) -> None:
        self._unsaved.update(self.grouper.take_changes())
        self._unsaved.update(self.silence.take_changes())
        for action in actions:
            log.info("site group %s: queued %s", action.correlation_id, action.kind)
        if self._queue(actions, self._unsaved):
            self._unsaved = {}


def _number(outbox: Outbox, corr: str) -> Optional[str]:
    try:
        incident = outbox.incident(corr)
    except Exception:  # the name is a courtesy: never fail an event over it
        return None
    return incident.number if incident is not None else None
