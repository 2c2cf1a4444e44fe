"""Where readings are judged: limits, hysteresis and debounce turn samples into episode events.

Pure logic, no I/O. :meth:`Judge.snapshot` and :meth:`Judge.restore` let the
sensor service keep open episodes in its state file, so a restarted sensor
function continues an episode instead of opening a second incident.

Per metric and bound (Home Assistant's threshold semantics, Prometheus's
``for:``):

* a breach starts counting when a value is beyond ``limit ± hysteresis``
  (above ``upper + h``, below ``lower - h``) and fires once it has held for
  ``debounce_samples`` consecutive samples and ``debounce_seconds``;
* a recovery counts values back inside ``limit ∓ h`` and fires after the same
  debounce; a value inside the band changes nothing but resets the count;
* a missing reading (``None``) is ignored: it neither opens nor closes.

Events: ``breach`` (opened, once per episode), ``update`` (still breaching, at
most once per ``renotify_seconds``), ``recovered``.

:meth:`Judge.reconfigure` changes limits, debounce and renotify between two
readings (a shadow or configuration update): open episodes stay open with
their id, so the next readings either continue them or recover them by the
new band, after the usual debounce; nothing opens twice.
"""

from __future__ import annotations

import logging

from .config import MetricLimits
from .record import Record
from .schema import ANOMALY_SCHEMA
from .sensors.base import UNITS, Reading

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional

log = logging.getLogger(__name__)

MAX_DEVICE_IN_ID = 40  # keeps episode ids under 90 characters


class EpisodeEvent(Record):
    """One change of an episode: what :meth:`Judge.observe` returns."""

    event: str  # "breach" | "update" | "recovered"
    episode_id: str
    seq: int
    device: str
    metric: str
    bound: str  # "upper" | "lower"
    limit: float
    value: float
    peak: float
    started_at: float
    ts: float

    @property
    def title(self) -> str:
        what = "above" if self.bound == "upper" else "below"
        if self.event == "recovered":
            return f"{self.metric.capitalize()} back within limit"
        return f"{self.metric.capitalize()} {what} limit"

    def to_message(self) -> Dict[str, Any]:
        """The ``edge-agent/anomaly/1`` message for this event."""
        message: Dict[str, Any] = {"schema": ANOMALY_SCHEMA}
        for name in self._fields:  # every field, in order, as dataclasses.asdict gave them
            message[name] = getattr(self, name)
        message["unit"] = UNITS[self.metric]
        message["title"] = self.title
        return message


class _MetricState:
    """What the judge remembers about one metric. Only episodes are persisted."""

    __slots__ = (
        "pending_bound",
        "pending_count",
        "pending_since",
        "pending_peak",
        "episode_id",
        "bound",
        "seq",
        "started_at",
        "peak",
        "last_notified",
        "recover_count",
        "recover_since",
        "last_limit",
    )

    def __init__(
        self,
        episode_id: Optional[str] = None,
        bound: Optional[str] = None,
        seq: int = 0,
        started_at: float = 0.0,
        peak: float = 0.0,
        last_notified: float = 0.0,
    ) -> None:
        # pending breach
        self.pending_bound: Optional[str] = None
        self.pending_count = 0
        self.pending_since = 0.0
        self.pending_peak = 0.0
        # open episode
        self.episode_id = episode_id
        self.bound = bound
        self.seq = seq
        self.started_at = started_at
        self.peak = peak
        self.last_notified = last_notified
        # pending recovery
        self.recover_count = 0
        self.recover_since = 0.0
        # the episode's limit, for its events once that side has no limit any more
        self.last_limit: Optional[float] = None

    def persistent(self) -> Dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "bound": self.bound,
            "seq": self.seq,
            "started_at": self.started_at,
            "peak": self.peak,
            "last_notified": self.last_notified,
        }


class Judge:
    """Judges readings of one device against its limits, one metric at a time."""

    def __init__(
        self,
        device_id: str,
        limits: Iterable[MetricLimits],
        debounce_samples: int = 3,
        debounce_seconds: float = 0.0,
        renotify_seconds: float = 1800.0,
    ) -> None:
        self.device_id = device_id
        self.limits = {lim.metric: lim for lim in limits if lim.watched}
        self.debounce_samples = max(1, int(debounce_samples))
        self.debounce_seconds = max(0.0, float(debounce_seconds))
        self.renotify_seconds = float(renotify_seconds)
        self._states: Dict[str, _MetricState] = {m: _MetricState() for m in self.limits}

    # -- judging -----------------------------------------------------------
    def observe(self, reading: Reading) -> List[EpisodeEvent]:
        """Judge one reading; return the episode events it causes (usually none)."""
        events: List[EpisodeEvent] = []
        for metric, limits in self.limits.items():
            value = reading.value(metric)
            if value is None:
                continue
            event = self._observe_metric(self._states[metric], limits, value, reading.ts)
            if event is not None:
                events.append(event)
        return events

    def reconfigure(
        self,
        limits: Iterable[MetricLimits],
        debounce_samples: int,
        debounce_seconds: float,
        renotify_seconds: float,
    ) -> None:
        """Judge the next readings by new limits, debounce and renotify interval.

        Open episodes keep their id, start and peak: one inside the new band
        recovers after the debounce, one still beyond it goes on (no second
        breach). A metric whose limits are gone keeps being judged while its
        episode is open, with no bound, so it recovers.
        Counts under way (a breach or recovery not yet debounced) carry on.
        """
        new = {lim.metric: lim for lim in limits if lim.watched}
        for metric, state in self._states.items():
            if state.episode_id is None:
                continue
            old = self.limits[metric]
            if state.last_limit is None:
                state.last_limit = old.upper if state.bound == "upper" else old.lower
            if metric not in new:
                new[metric] = MetricLimits(metric, None, None, old.hysteresis)
        self.limits = new
        self._states = {m: self._states.get(m) or _MetricState() for m in new}
        self.debounce_samples = max(1, int(debounce_samples))
        self.debounce_seconds = max(0.0, float(debounce_seconds))
        self.renotify_seconds = float(renotify_seconds)

    def open_episodes(self) -> Dict[str, str]:
        """metric → episode id, for every metric currently in an episode."""
        return {m: s.episode_id for m, s in self._states.items() if s.episode_id}

    def _observe_metric(
        self, state: _MetricState, limits: MetricLimits, value: float, ts: float
    ) -> Optional[EpisodeEvent]:
        if state.episode_id is None:
            return self._watch_for_breach(state, limits, value, ts)
        return self._watch_episode(state, limits, value, ts)

    def _watch_for_breach(
        self, state: _MetricState, limits: MetricLimits, value: float, ts: float
    ) -> Optional[EpisodeEvent]:
        bound = _beyond(limits, value)
        if bound is None:
            state.pending_bound, state.pending_count = None, 0
            return None
        if bound != state.pending_bound:
            state.pending_bound, state.pending_count = bound, 0
            state.pending_since, state.pending_peak = ts, value
        state.pending_count += 1
        state.pending_peak = _more_extreme(bound, state.pending_peak, value)
        if not self._debounced(state.pending_count, state.pending_since, ts):
            return None
        # The episode starts at the first sample of the run that confirmed it,
        # so the id is the same whenever and wherever it is computed.
        state.episode_id = "{}:{}:{}:{}".format(
            _short_device(self.device_id), limits.metric, bound, int(state.pending_since)
        )
        state.bound, state.seq = bound, 0
        state.started_at, state.peak = state.pending_since, state.pending_peak
        state.last_notified = ts
        state.pending_bound, state.pending_count = None, 0
        state.recover_count = 0
        return self._event(state, limits, "breach", value, ts)

    def _watch_episode(
        self, state: _MetricState, limits: MetricLimits, value: float, ts: float
    ) -> Optional[EpisodeEvent]:
        bound = state.bound or "upper"
        state.peak = _more_extreme(bound, state.peak, value)
        if _back_inside(limits, bound, value):
            if state.recover_count == 0:
                state.recover_since = ts
            state.recover_count += 1
            if self._debounced(state.recover_count, state.recover_since, ts):
                event = self._event(state, limits, "recovered", value, ts)
                # A metric whose limits were removed stays, unwatched (it can open
                # nothing), until the next reconfigure drops it.
                self._states[limits.metric] = _MetricState()
                return event
            return None
        state.recover_count = 0
        if self.renotify_seconds > 0 and ts - state.last_notified >= self.renotify_seconds:
            state.last_notified = ts
            return self._event(state, limits, "update", value, ts)
        return None

    def _debounced(self, count: int, since: float, ts: float) -> bool:
        return count >= self.debounce_samples and ts - since >= self.debounce_seconds

    def _event(
        self, state: _MetricState, limits: MetricLimits, kind: str, value: float, ts: float
    ) -> EpisodeEvent:
        if kind != "breach":
            state.seq += 1
        bound = state.bound or "upper"
        limit = limits.upper if bound == "upper" else limits.lower
        if limit is None:
            limit = state.last_limit
        return EpisodeEvent(
            event=kind,
            episode_id=state.episode_id or "",
            seq=state.seq,
            device=self.device_id,
            metric=limits.metric,
            bound=bound,
            limit=float(limit if limit is not None else 0.0),
            value=round(value, 3),
            peak=round(state.peak, 3),
            started_at=state.started_at,
            ts=ts,
        )

    # -- persistence ---------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        """Open episodes, for the state file: enough to continue them after a restart."""
        return {m: s.persistent() for m, s in self._states.items() if s.episode_id is not None}

    def restore(self, episodes: Dict[str, Any]) -> None:
        """Continue the episodes of a :meth:`snapshot`; malformed entries are logged and skipped."""
        for metric, saved in episodes.items():
            if metric not in self._states or not isinstance(saved, dict):
                continue
            try:
                state = _MetricState(
                    episode_id=str(saved["episode_id"]),
                    bound=str(saved["bound"]),
                    seq=int(saved["seq"]),
                    started_at=float(saved["started_at"]),
                    peak=float(saved["peak"]),
                    last_notified=float(saved["last_notified"]),
                )
            except (KeyError, TypeError, ValueError):
                log.error("ignoring a malformed saved episode for %s", metric)
                continue
            self._states[metric] = state
            log.info("continuing episode %s after restart", state.episode_id)


def _short_device(device: str) -> str:
    """The device part of an episode id, short enough for ServiceNow's correlation_id.

    IoT thing names may be 128 characters; a long one keeps its start and gets
    a hash of the whole, so ids stay unique and stable.
    """
    if len(device) <= MAX_DEVICE_IN_ID:
        return device
    import hashlib  # only for long device ids: it loads OpenSSL (~3 MB RSS)

    digest = hashlib.sha1(device.encode("utf-8")).hexdigest()[:8]
    return device[: MAX_DEVICE_IN_ID - 9] + "~" + digest


def _beyond(limits: MetricLimits, value: float) -> Optional[str]:
    if limits.upper is not None and value > limits.upper + limits.hysteresis:
        return "upper"
    if limits.lower is not None and value < limits.lower - limits.hysteresis:
        return "lower"
    return None


def _back_inside(limits: MetricLimits, bound: str, value: float) -> bool:
    if bound == "upper":
        return limits.upper is None or value < limits.upper - limits.hysteresis
    return limits.lower is None or value > limits.lower + limits.hysteresis


def _more_extreme(bound: str, a: float, b: float) -> float:
    return max(a, b) if bound == "upper" else min(a, b)
