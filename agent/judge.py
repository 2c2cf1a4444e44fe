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

Time: debounce, renotify and an episode's ``duration`` are measured on the
monotonic time :meth:`Judge.observe` is given (``now``), never by comparing the
readings' wall times, which step when NTP corrects the clock (back as well as
forward). ``started_at`` and ``ts`` are the wall times, for people to read;
``clock_unsynced`` / ``start_clock_unsynced`` say the wall clock was not synchronised
when they were read (a Pi without a real-time clock boots at 1970, or at
fake-hwclock's last saved time, until NTP sets it).

An episode id is ``device:metric:bound:<start, whole seconds>-<8 random hex>``:
the random part keeps it unique whatever the clock says, so episodes of Pis
that reboot before NTP has set the clock (every boot near 1970-01-01 00:00)
never share an id, and none is dropped as a repeat.

:meth:`Judge.reconfigure` changes limits, debounce and renotify between two
readings (a shadow or configuration update): open episodes stay open with
their id, so the next readings either continue them or recover them by the
new band, after the usual debounce; nothing opens twice.
"""

from __future__ import annotations

import logging
import os

from .config import MetricLimits
from .record import Record
from .schema import ANOMALY_SCHEMA
from .sensors.base import UNITS, Reading

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional

log = logging.getLogger(__name__)

MAX_DEVICE_IN_ID = 40  # keeps episode ids under 90 characters
MAX_PLAUSIBLE_DOWNTIME = 30 * 24 * 3600.0  # a longer gap between saves is a clock step


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
    duration: float  # seconds since the episode started, on the monotonic clock
    clock_unsynced: bool  # ts was read while the wall clock was not synchronised
    start_clock_unsynced: bool  # the same for started_at

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
        for flag in ("clock_unsynced", "start_clock_unsynced"):
            if not message[flag]:
                del message[flag]  # said only when true: what older consumers saw stays as it was
        message["unit"] = UNITS[self.metric]
        message["title"] = self.title
        return message


class _MetricState:
    """What the judge remembers about one metric. Only episodes are persisted."""

    __slots__ = (
        "pending_bound",
        "pending_count",
        "pending_since",
        "pending_since_wall",
        "pending_unsynced",
        "pending_peak",
        "episode_id",
        "bound",
        "seq",
        "started_at",
        "started",
        "started_unsynced",
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
        started: float = 0.0,
        started_unsynced: bool = False,
    ) -> None:
        # pending breach (since: monotonic; since_wall: the wall time, to report)
        self.pending_bound: Optional[str] = None
        self.pending_count = 0
        self.pending_since = 0.0
        self.pending_since_wall = 0.0
        self.pending_unsynced = False
        self.pending_peak = 0.0
        # open episode: started_at is the wall time, started / last_notified monotonic
        self.episode_id = episode_id
        self.bound = bound
        self.seq = seq
        self.started_at = started_at
        self.started = started
        self.started_unsynced = started_unsynced
        self.peak = peak
        self.last_notified = last_notified
        # pending recovery
        self.recover_count = 0
        self.recover_since = 0.0
        # the episode's limit, for its events once that side has no limit any more
        self.last_limit: Optional[float] = None

    def persistent(self, now: float, wall: float) -> Dict[str, Any]:
        # Monotonic times mean nothing after a reboot: kept as ages at ``saved_at``.
        return {
            "episode_id": self.episode_id,
            "bound": self.bound,
            "seq": self.seq,
            "started_at": self.started_at,
            "peak": self.peak,
            "last_notified": wall - (now - self.last_notified),
            "age": max(0.0, now - self.started),
            "since_notified": max(0.0, now - self.last_notified),
            "saved_at": wall,
            "started_unsynced": self.started_unsynced,
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
        unique: Optional[Callable[[], str]] = None,
    ) -> None:
        self.device_id = device_id
        # The random part of episode ids (a seam for tests that need them fixed).
        self._unique = unique or _random_hex
        self.limits = {lim.metric: lim for lim in limits if lim.watched}
        self.debounce_samples = max(1, int(debounce_samples))
        self.debounce_seconds = max(0.0, float(debounce_seconds))
        self.renotify_seconds = float(renotify_seconds)
        self._states: Dict[str, _MetricState] = {m: _MetricState() for m in self.limits}
        self._last_now = 0.0  # the time of the last reading judged
        self._clock_unsynced = False  # whether the wall clock was not synchronised then

    # -- judging -----------------------------------------------------------
    def observe(
        self, reading: Reading, now: Optional[float] = None, clock_unsynced: bool = False
    ) -> List[EpisodeEvent]:
        """Judge one reading taken at monotonic time ``now`` (default: its wall time, for
        a clock that never steps), ``clock_unsynced`` if the wall clock was not synchronised
        then; return the episode events it causes (usually none)."""
        events: List[EpisodeEvent] = []
        mono = reading.ts if now is None else now
        self._last_now = mono
        self._clock_unsynced = clock_unsynced
        ts, states = reading.ts, self._states
        for metric, limits in self.limits.items():
            value = getattr(reading, metric)
            if value is None:
                continue
            state = states[metric]
            if state.episode_id is None:
                event = self._watch_for_breach(state, limits, value, mono, ts)
            else:
                event = self._watch_episode(state, limits, value, mono, ts)
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

    def episode_prefix(self) -> str:
        """How this device's episode ids begin (``device:``)."""
        return _short_device(self.device_id) + ":"

    def open_episodes(self) -> Dict[str, str]:
        """metric → episode id, for every metric currently in an episode."""
        return {m: s.episode_id for m, s in self._states.items() if s.episode_id}

    def _watch_for_breach(
        self, state: _MetricState, limits: MetricLimits, value: float, now: float, ts: float
    ) -> Optional[EpisodeEvent]:
        bound = _beyond(limits, value)
        if bound is None:
            state.pending_bound, state.pending_count = None, 0
            return None
        if bound != state.pending_bound:
            state.pending_bound, state.pending_count = bound, 0
            state.pending_since, state.pending_peak = now, value
            state.pending_since_wall = ts
            state.pending_unsynced = self._clock_unsynced
        state.pending_count += 1
        state.pending_peak = _more_extreme(bound, state.pending_peak, value)
        if not self._debounced(state.pending_count, state.pending_since, now):
            return None
        # The episode starts at the first sample of the run that confirmed it.
        state.episode_id = "{}:{}:{}:{}-{}".format(
            _short_device(self.device_id),
            limits.metric,
            bound,
            int(state.pending_since_wall),
            self._unique(),
        )
        state.started_unsynced = state.pending_unsynced
        state.bound, state.seq = bound, 0
        state.started_at, state.peak = state.pending_since_wall, state.pending_peak
        state.started = state.pending_since
        state.last_notified = now
        state.pending_bound, state.pending_count = None, 0
        state.recover_count = 0
        return self._event(state, limits, "breach", value, now, ts)

    def _watch_episode(
        self, state: _MetricState, limits: MetricLimits, value: float, now: float, ts: float
    ) -> Optional[EpisodeEvent]:
        bound = state.bound or "upper"
        state.peak = _more_extreme(bound, state.peak, value)
        if _back_inside(limits, bound, value):
            if state.recover_count == 0:
                state.recover_since = now
            state.recover_count += 1
            if self._debounced(state.recover_count, state.recover_since, now):
                event = self._event(state, limits, "recovered", value, now, ts)
                # A metric whose limits were removed stays, unwatched (it can open
                # nothing), until the next reconfigure drops it.
                self._states[limits.metric] = _MetricState()
                return event
            return None
        state.recover_count = 0
        if self.renotify_seconds > 0 and now - state.last_notified >= self.renotify_seconds:
            state.last_notified = now
            return self._event(state, limits, "update", value, now, ts)
        return None

    def _debounced(self, count: int, since: float, now: float) -> bool:
        return count >= self.debounce_samples and now - since >= self.debounce_seconds

    def _event(
        self,
        state: _MetricState,
        limits: MetricLimits,
        kind: str,
        value: float,
        now: float,
        ts: float,
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
            duration=round(max(0.0, now - state.started), 3),
            clock_unsynced=self._clock_unsynced,
            start_clock_unsynced=state.started_unsynced,
        )

    # -- persistence ---------------------------------------------------------
    def snapshot(self, now: Optional[float] = None, wall: Optional[float] = None) -> Dict[str, Any]:
        """Open episodes, for the state file: enough to continue them after a restart.

        ``now`` (monotonic) and ``wall`` are the times of the snapshot; by default both
        are the judge's own time (a clock that never steps, as in :meth:`observe`)."""
        mono = self._last_now if now is None else now
        at = mono if wall is None else wall
        return {
            m: s.persistent(mono, at) for m, s in self._states.items() if s.episode_id is not None
        }

    def restore(
        self, episodes: Dict[str, Any], now: Optional[float] = None, wall: Optional[float] = None
    ) -> None:
        """Continue the episodes of a :meth:`snapshot` from monotonic time ``now`` and wall
        time ``wall``; malformed entries are logged and skipped.

        The time the process was down is the wall clock's since the snapshot, when that
        is plausible (not negative, under a month): a clock stepped in between adds
        nothing, and the episode's age counts only the time it was watched."""
        for metric, saved in episodes.items():
            if metric not in self._states or not isinstance(saved, dict):
                continue
            try:
                started_at = float(saved["started_at"])
                last_notified = float(saved["last_notified"])
                saved_at = float(saved.get("saved_at", last_notified))
                age = float(saved.get("age", max(0.0, saved_at - started_at)))
                since = float(saved.get("since_notified", max(0.0, saved_at - last_notified)))
                mono = saved_at if now is None else now
                at = saved_at if wall is None else wall
                down = at - saved_at if 0.0 <= at - saved_at < MAX_PLAUSIBLE_DOWNTIME else 0.0
                state = _MetricState(
                    episode_id=str(saved["episode_id"]),
                    bound=str(saved["bound"]),
                    seq=int(saved["seq"]),
                    started_at=started_at,
                    peak=float(saved["peak"]),
                    last_notified=mono - since - down,
                    started=mono - age - down,
                    started_unsynced=saved.get("started_unsynced") is True,
                )
            except (KeyError, TypeError, ValueError):
                log.error("ignoring a malformed saved episode for %s", metric)
                continue
            self._states[metric] = state
            log.info("continuing episode %s after restart", state.episode_id)


def _random_hex() -> str:
    return os.urandom(4).hex()


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
