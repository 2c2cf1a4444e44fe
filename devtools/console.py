"""What ``edge-agent simulate`` prints while it runs: one readable line per thing that happened.

The console is told what happens; it does not read the log. The sensor
service calls :meth:`Console.reading` and :meth:`Console.event` (its
``on_reading`` / ``on_event`` observers), the deliverer calls
:meth:`Console.outcome` (``Deliverer.on_outcome``), and the simulation loop
calls :meth:`Console.after_tick` and :meth:`Console.progress`. Warnings and
errors the agent logs are shown too (:class:`WarningsToConsole`), so a run
that goes wrong says so without ``-v``.

Sensor faults are made visible: a reading line shows a value the sensor
marked invalid as ``invalid`` and counts them, and a reading repeated exactly
(which real noise never does) is called out as a possibly stuck sensor.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Dict, Optional, Sequence, TextIO, Tuple

from agent.clock import Clock
from agent.judge import EpisodeEvent
from agent.schema import METRICS
from agent.sensors.base import UNITS, Reading
from agent.servicenow.delivery import Outcome
from agent.servicenow.incidents import RESOLVED_STATES

READING_LINE_EVERY = 60.0  # simulated seconds between two reading lines
PROGRESS_EVERY = 9.0  # wall seconds between progress lines (sleeps are sliced: under 10 s apart)
UNCHANGED_AFTER = 4  # identical readings in a row that make a stuck-sensor line


class Console:
    """Timestamped lines on ``out`` (nothing when ``out`` is None); safe from any thread."""

    def __init__(
        self,
        out: Optional[TextIO],
        clock: Clock,
        metrics: Sequence[str] = METRICS,
        progress_every: float = PROGRESS_EVERY,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out
        self.clock = clock
        self.metrics = tuple(metrics)  # what the sensor measures: a None there is invalid
        self.progress_every = progress_every
        self._wall = wall
        self._lock = threading.Lock()
        self._last_reading_line = float("-inf")
        self._last_progress = wall()
        # Sensor faults: totals for the summary, and what the next reading line reports.
        self.invalid_values = 0
        self.unchanged_streaks = 0
        self._invalid_since_line = 0
        self._errors_seen = 0
        self._errors_since_line = 0
        self._last_values: Optional[Tuple[Optional[float], ...]] = None
        self._same = 1

    # -- output --------------------------------------------------------------------
    def line(self, kind: str, text: str) -> None:
        with self._lock:
            if self.out is None:
                return
            stamp = datetime.fromtimestamp(self.clock.time(), tz=timezone.utc).strftime("%H:%M:%S")
            try:
                self.out.write(f"{stamp}  {kind:<9} {text}\n")
                self.out.flush()
            except BrokenPipeError:
                # The reader went away (piped into head): stop printing, finish the run.
                silence(self.out)
                self.out = None

    # -- observers ---------------------------------------------------------------------
    def reading(self, reading: Reading) -> None:
        values = tuple(reading.value(m) for m in self.metrics)
        invalid = sum(1 for v in values if v is None)
        self.invalid_values += invalid
        self._invalid_since_line += invalid
        self._watch_unchanged(values)
        if reading.ts - self._last_reading_line < READING_LINE_EVERY:
            return
        self._last_reading_line = reading.ts
        parts = []
        for metric in self.metrics:
            value = reading.value(metric)
            shown = "invalid" if value is None else f"{value:.1f}{UNITS[metric]}"
            parts.append(f"{metric[0]}={shown}")
        faults = []
        if self._invalid_since_line:
            faults.append(_plural(self._invalid_since_line, "invalid value"))
        if self._errors_since_line:
            faults.append(_plural(self._errors_since_line, "sensor error"))
        text = "  ".join(parts)
        if faults:
            text += "   [since the last line: {}]".format(", ".join(faults))
        self._invalid_since_line = self._errors_since_line = 0
        self.line("reading", text)

    def event(self, event: EpisodeEvent) -> None:
        unit = UNITS[event.metric]
        self.line(
            event.event.upper(),
            f"{event.metric} {event.value:.1f}{unit} (limit {event.limit:g}{unit}, "
            f"peak {event.peak:.1f}{unit})  {event.episode_id}",
        )

    def outcome(self, outcome: Outcome) -> None:
        """ServiceNow outcomes. Retries and dead letters are logged as warnings, shown already."""
        incident = outcome.incident
        number = incident.number if incident is not None else "?"
        action = outcome.action
        if outcome.kind == "opened":
            text = "opened incident {}: {}".format(
                number, action.fields.get("short_description", "")
            )
        elif outcome.kind == "reused":
            if incident is not None and incident.state in RESOLVED_STATES:
                text = "found incident {} for {} again; it was resolved earlier".format(
                    number, action.correlation_id
                )
            else:
                text = f"incident {number} already open for {action.correlation_id}"
        elif outcome.kind == "noted":
            text = f"added a work note to incident {number}"
        elif outcome.kind == "resolved":
            text = f"resolved incident {number} ({action.correlation_id})"
        elif outcome.kind == "skipped" and incident is not None:
            text = f"incident {number} was already resolved; {action.kind} not needed"
        else:
            return
        self.line("SNOW", text)

    def after_tick(self, sensor_errors: int) -> None:
        """Called after each sensor tick with the sensor-error total so far."""
        if sensor_errors > self._errors_seen:
            self._errors_since_line += sensor_errors - self._errors_seen
            self._errors_seen = sensor_errors

    def progress(self, text: Callable[[], str], force: bool = False) -> None:
        """A progress line when ``progress_every`` wall seconds have passed since the last."""
        now = self._wall()
        if force or now - self._last_progress >= self.progress_every:
            self._last_progress = now
            self.line("progress", text())

    # -- sensor faults -----------------------------------------------------------------
    def _watch_unchanged(self, values: Tuple[Optional[float], ...]) -> None:
        if None not in values and values == self._last_values:
            self._same += 1
            if self._same == UNCHANGED_AFTER:
                self.unchanged_streaks += 1
                self.line(
                    "SENSOR",
                    "the same reading {} times in a row ({}): is the sensor stuck?".format(
                        self._same, _values(self.metrics, values)
                    ),
                )
            return
        if self._same >= UNCHANGED_AFTER:
            self.line("SENSOR", f"readings change again after {self._same} identical ones")
        self._same = 1
        self._last_values = values

    def fault_counts(self, sensor_errors: int) -> Dict[str, int]:
        return {
            "errors": sensor_errors,
            "invalid_values": self.invalid_values,
            "unchanged_streaks": self.unchanged_streaks,
        }


class WarningsToConsole(logging.Handler):
    """Shows the agent's warnings and errors as console lines, whatever ``-v`` says."""

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "observed", False):
            return  # an observer shows it already (a rejected configuration change)
        try:
            self.console.line(record.levelname, record.getMessage())
        except Exception:
            self.handleError(record)


def silence(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so nothing fails writing to it later."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _values(metrics: Sequence[str], values: Sequence[Optional[float]]) -> str:
    return " ".join(f"{m[0]}={v:.2f}{UNITS[m]}" for m, v in zip(metrics, values) if v is not None)


def _plural(n: int, what: str) -> str:
    return "{} {}{}".format(n, what, "" if n == 1 else "s")
