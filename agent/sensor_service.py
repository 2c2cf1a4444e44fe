"""The sensor function's work: read, publish the reading, judge, publish episode events.

Reading and publishing happen in the same tick, with no sleep between them, and
the loop keeps a fixed cadence on the sensor's clock (so ``simulate --fast``
runs it in virtual time). A failed read or publish is logged and the loop goes
on; episode events that could not be published are kept and sent first on the
next tick.

Its ``stateDir`` is checked writable and locked at start (a second sensor
process for the same device is refused, naming the PID). A state file that
cannot be written (a full disk) changes nothing in memory: held events stay
held and the state is written again on the next tick until it succeeds.

New settings (a shadow or configuration change, ``agent.live_config``) wait in
a pending slot set from any thread and are swapped in at the start of the
next tick, before its reading: one attribute test per tick when none waits.
"""

from __future__ import annotations

import collections
import logging
import os
import threading

from .clock import Clock, StopSignal
from .config import SensorSettings
from .errors import SensorError
from .greengrass.base import Runtime
from .judge import EpisodeEvent, Judge
from .schema import READING_SCHEMA
from .sensors.base import Reading, Sensor
from .state_dir import lock_state, prepare_state_dir
from .state_file import read_json_recovering, try_write_json

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

    from .live_config import LiveConfig

log = logging.getLogger(__name__)

MAX_HELD_EVENTS = 1000
STATE_VERSION = 1
SAVE_ERROR_LOG_INTERVAL = 60.0
MAX_NAME_BYTES = 100  # of a device id in a file name


class SensorService:
    def __init__(
        self,
        sensor: Sensor,
        runtime: Runtime,
        settings: SensorSettings,
        judge: Optional[Judge] = None,
        clock: Optional[Clock] = None,
    ) -> None:
        self.sensor = sensor
        self.runtime = runtime
        self.settings = settings
        self.clock = clock or sensor.clock
        self.judge = judge or Judge(
            settings.device_id,
            settings.limits,
            debounce_samples=settings.debounce_samples,
            debounce_seconds=settings.debounce_seconds,
            renotify_seconds=settings.renotify_seconds,
        )
        name = "sensor-state-{}".format(_safe(settings.device_id))
        self.state_path = os.path.join(settings.state_dir, name + ".json")
        prepare_state_dir(settings.state_dir, "sensor")
        # Its own lock file: the anomaly function may share the directory.
        self._lock = lock_state(settings.state_dir, name + ".lock", "sensor")
        self._state_dirty = False
        # What the last start recovered from an unreadable state file (kept in the file).
        self.recovered: Optional[Dict[str, Any]] = None
        self._last_save_error = float("-inf")
        self.seq = 0
        self.counts: Dict[str, int] = collections.Counter()
        self._held: Deque[Dict[str, Any]] = collections.deque(maxlen=MAX_HELD_EVENTS)
        self._stop = StopSignal()  # a loop waiting on it costs what a sleep does
        self._thread: Optional[threading.Thread] = None
        # Observers (the simulation's console) see readings and events as they happen.
        self.on_reading: List[Callable[[Reading], None]] = []
        self.on_event: List[Callable[[EpisodeEvent], None]] = []
        # Settings changed while running: offered from any thread (offer_settings, by the
        # live configuration, which hears back through on_settings), applied by the loop.
        self.on_settings: List[Callable[[SensorSettings], None]] = []
        self.live_config: Optional[LiveConfig] = None  # stopped with the service
        # The run-time variables' layers in force (agent.live_settings), saved with the state;
        # ``saved_layers``: as the state file had them at start, from before a restart.
        self.saved_layers: Optional[Dict[str, Any]] = None
        self._layers: Optional[Dict[str, Any]] = None
        self._pending: Optional[Tuple[SensorSettings, Optional[Dict[str, Any]]]] = None
        self._pending_lock = threading.Lock()
        self._first_reading: Optional[Callable[[], None]] = None
        self._load_state()

    def after_first_reading(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, on the loop's thread, as soon as the first reading is
        published (or its read failed), before that reading is judged: the work the first
        publish need not wait for (following the shadow, health reports). Settings it offers
        judge that first reading."""
        self._first_reading = callback

    def tick(self) -> List[EpisodeEvent]:
        """One sample: read, publish, judge, publish events. Never raises for bad input."""
        self.counts["samples"] += 1
        if self._pending is not None:
            self._apply_pending()
        if self._held:
            self._flush_events()  # events a failed publish held back go first, even if the read fails
        if self._state_dirty:
            self._save_state()  # the last write failed (a full disk): try again
        try:
            reading = self.sensor.read()
        except EOFError:
            raise
        except SensorError as exc:
            self.counts["sensor_errors"] += 1
            log.warning("sensor read failed: %s", exc)
            if self._first_reading is not None:
                self._first_reading_out()
            return []
        self.seq += 1
        # Read once a reading: NTP may set the clock at any time.
        unsynced = self.clock.unsynchronised(reading.ts)
        message = self._reading_message(reading)
        if unsynced:
            message["clock_unsynced"] = True
            self.counts["readings_clock_unsynced"] += 1
        self._publish(self.settings.readings_topic, message, "readings")
        if self._first_reading is not None:
            self._first_reading_out()
        for callback in self.on_reading:
            callback(reading)
        events = self.judge.observe(reading, self.clock.monotonic(), unsynced)
        if events:
            for event in events:
                self.counts[event.event] += 1
                self._held.append(event.to_message())
                for observer in self.on_event:
                    observer(event)
            # Saved before publishing: a restart now neither reopens the episode
            # nor forgets the event it has not published yet.
            self._save_state()
            self._flush_events()
        return events

    def _first_reading_out(self) -> None:
        callback, self._first_reading = self._first_reading, None
        try:
            if callback is not None:
                callback()
        except Exception:  # the readings go on without what it starts
            log.exception("starting what follows the first reading failed")
        if self._pending is not None:
            self._apply_pending()

    def offer_settings(
        self, settings: SensorSettings, layers: Optional[Dict[str, Any]] = None
    ) -> None:
        """Use ``settings`` from the next reading on (any thread); ``layers`` (what gave them)
        are saved with them, so they survive a restart. A later offer replaces one not yet
        applied."""
        with self._pending_lock:
            self._pending = (settings, layers)

    def _apply_pending(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        settings, self._layers = pending
        self.judge.reconfigure(
            settings.limits,
            settings.debounce_samples,
            settings.debounce_seconds,
            settings.renotify_seconds,
        )
        self.settings = settings
        self._save_state()
        for callback in self.on_settings:
            try:
                callback(settings)
            except Exception:
                log.exception("a settings observer failed")

    def _flush_events(self) -> None:
        sent = 0
        while self._held:
            if not self._publish(self.settings.anomaly_topic, self._held[0], "anomalies"):
                break  # keep order: try again next tick
            self._held.popleft()
            sent += 1
        if sent:
            self._save_state()

    # -- state that survives a restart -------------------------------------------
    def _save_state(self) -> None:
        if len(self._held) == self._held.maxlen:
            log.error(
                "%d episode events could not be published; the oldest are being dropped",
                len(self._held),
            )
        state = {
            "version": STATE_VERSION,
            "device": self.settings.device_id,
            "episodes": self.judge.snapshot(self.clock.monotonic(), self.clock.time()),
            "held_events": list(self._held),
            "live": self._layers,  # the file's name for the layers
        }
        if self.recovered is not None:
            state["recovered"] = self.recovered  # for edge-agent status
        # Synced, the rename too, and the version it replaces kept as the last good copy:
        # a power cut on an SD card must not cost the open episodes.
        error = try_write_json(self.state_path, state, sync_dir=True, keep_previous=True)
        self._state_dirty = error is not None
        if error is None:
            return
        self.counts["state_write_errors"] += 1
        now = self.clock.monotonic()
        if now - self._last_save_error >= SAVE_ERROR_LOG_INTERVAL:
            self._last_save_error = now
            log.error(
                "could not save the sensor state to %s: %s; %d episode events are held in memory"
                " and the state is written again every tick until it succeeds",
                self.state_path,
                error,
                len(self._held),
            )

    def _load_state(self) -> None:
        data, problem = read_json_recovering(self.state_path)
        if problem is not None:
            self._recovered(problem, data)
        if data is None:
            return
        if data.get("version") != STATE_VERSION:
            log.error("ignoring sensor state %s: unknown version", self.state_path)
            return
        episodes = data.get("episodes")
        if isinstance(episodes, dict):
            self.judge.restore(episodes, self.clock.monotonic(), self.clock.time())
        layers = data.get("live")
        if isinstance(layers, dict):
            self.saved_layers = self._layers = layers
        recovered = data.get("recovered")
        if problem is None and isinstance(recovered, dict):
            self.recovered = recovered  # an earlier recovery, still shown by status
        held = data.get("held_events")
        if isinstance(held, list):
            self._held.extend(m for m in held if isinstance(m, dict))
            if self._held:
                log.info("%d unpublished episode events from before the restart", len(self._held))

    def _recovered(self, problem: str, data: Optional[Dict[str, Any]]) -> None:
        """The state file was unreadable: say what was recovered, on the console and (saved
        with the state) in ``edge-agent status``. Without a good copy the outbox's record of
        this device's open incidents is the truth: those episodes go on, so a breach of the
        same metric continues the incident and normal readings resolve it."""
        self.counts["state_recovered"] += 1
        what = problem
        if data is None:
            adopted = self._adopt_open_incidents()
            what += (
                "; continuing the open incidents of the outbox: {}".format(", ".join(adopted))
                if adopted
                else "; the outbox has no open incident of this device: started afresh"
            )
        log.error("sensor state: %s", what)
        self.recovered = {"at": self.clock.time(), "what": what}
        self._state_dirty = True  # saved (with the note) at the next tick

    def _adopt_open_incidents(self) -> List[str]:
        from .servicenow.open_episodes import open_episodes  # only after a torn state file

        try:
            episodes = open_episodes(
                self.settings.state_dir, self.judge.episode_prefix(), self.clock.time()
            )
        except Exception as exc:  # a locked or damaged outbox: start afresh, say why
            log.error("could not read the outbox's open incidents: %s", exc)
            return []
        for metric, episode in episodes.items():
            limits = self.judge.limits.get(metric)
            limit = None
            if limits is not None:
                limit = limits.upper if episode["bound"] == "upper" else limits.lower
            episode["peak"] = 0.0 if limit is None else limit  # unknown: the next reading sets it
        self.judge.restore(episodes, self.clock.monotonic(), self.clock.time())
        return sorted(self.judge.open_episodes().values())

    def _publish(self, topic: str, message: Dict[str, Any], counter: str) -> bool:
        try:
            self.runtime.publish(topic, message)
        except OSError as exc:
            self.counts["publish_errors"] += 1
            log.warning("publish to %s failed: %s", topic, exc)
            return False
        self.counts[counter] += 1
        return True

    def _reading_message(self, reading: Reading) -> Dict[str, Any]:
        t, h, p = reading.temperature, reading.humidity, reading.pressure
        return {
            "schema": READING_SCHEMA,
            "device": self.settings.device_id,
            "seq": self.seq,
            "ts": reading.ts,
            "temperature": None if t is None else round(t, 2),
            "humidity": None if h is None else round(h, 2),
            "pressure": None if p is None else round(p, 2),
        }

    # -- the loop -------------------------------------------------------------
    def run(self, max_ticks: Optional[int] = None) -> None:
        """Tick every ``period`` seconds on the clock until stopped or the sensor runs out."""
        clock, stop = self.clock, self._stop
        next_at = clock.monotonic()
        ticks = 0
        while not stop.is_set() and (max_ticks is None or ticks < max_ticks):
            try:
                self.tick()
            except EOFError:
                log.info("sensor has no more readings; stopping")
                return
            except Exception:  # the loop must outlive any bug in one tick
                log.exception("unexpected error in a sensor tick")
            ticks += 1
            next_at += self.settings.period  # it may have changed in this tick
            now = clock.monotonic()
            delay = next_at - now
            if delay < 0:  # fell behind (slow read): skip, don't burst
                next_at, delay = now, 0.0
            if clock.wait(stop, delay):
                return

    def start(self) -> threading.Thread:
        """Run the loop in a daemon thread (what a pinned function does at load)."""
        self._thread = threading.Thread(target=self.run, name="sensor-loop", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.live_config is not None:
            self.live_config.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Release the state directory's lock (after :meth:`stop`)."""
        self._lock.release()


def _safe(name: str) -> str:
    """``name`` as part of a file name: other characters than letters, digits and ``-_.``
    become ``_``; one longer than MAX_NAME_BYTES (file names have 255 bytes, and a letter
    may take four) keeps its start and gets a hash of the whole, so it stays unique."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    if len(safe.encode("utf-8")) <= MAX_NAME_BYTES:
        return safe
    import hashlib  # only for long ids: it loads OpenSSL

    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    start = safe.encode("utf-8")[: MAX_NAME_BYTES - 9].decode("utf-8", "ignore")
    return start + "-" + digest
