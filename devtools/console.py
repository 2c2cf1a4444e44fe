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
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from agent.clock import Clock
from agent.judge import EpisodeEvent
from agent.schema import METRICS
from agent.sensors.base import UNITS, Reading
from agent.servicenow.delivery import Outcome
from agent.servicenow.incidents import RESOLVED_STATES

READING_LINE_EVERY = 60.0  # simulated seconds between two reading lines
PROGRESS_EVERY = 9.0  # wall seconds between progress lines (sleeps are sliced: under 10 s apart)
UNCHANGED_AFTER = 4  # identical readings in a row that make a stuck-sensor line
OUTAGE_REMINDER_EVERY = 300.0  # simulated seconds between two "still failing" lines


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
        # ServiceNow outages: a run of retries until the next action goes through.
        self.outages: List[Dict[str, Any]] = []
        self._outage: Optional[Dict[str, Any]] = None
        self._outage_line_at = float("-inf")

    # -- output --------------------------------------------------------------------
    def line(self, kind: str, text: str) -> None:
        with self._lock:
            if self.out is None:
                return
            stamp = clock_time(self.clock.time())
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
        """ServiceNow outcomes. Retries are summed up into outages (one line when one starts,
        one every few minutes while it lasts, one when it ends); dead letters are logged as
        errors, shown already."""
        if outcome.kind == "retry":
            self._retry(outcome)
            return
        if outcome.kind != "dead_lettered":
            self._outage_over()
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
        elif outcome.kind == "event":
            if outcome.detail == "0":
                text = f"sent the clear for {action.correlation_id} (closes its alert)"
            else:
                text = f"sent an event, severity {outcome.detail}, for {action.correlation_id}"
        elif outcome.kind == "skipped" and incident is not None:
            text = f"incident {number} was already resolved; {action.kind} not needed"
        else:
            return
        self.line("SNOW", text)

    def _retry(self, outcome: Outcome) -> None:
        now = self.clock.time()
        next_at = "?" if outcome.retry_at is None else clock_time(outcome.retry_at)
        outage = self._outage
        if outage is None:
            outage = self._outage = {"since": now, "until": None, "tries": 1}
            outage["reason"] = outcome.detail
            self.outages.append(outage)
            self._outage_line_at = now
            self.line("WARNING", "{}; retrying, next at {}".format(outcome.detail, next_at))
            return
        outage["tries"] += 1
        outage["reason"] = outcome.detail
        if now - self._outage_line_at >= OUTAGE_REMINDER_EVERY:
            self._outage_line_at = now
            self.line(
                "WARNING",
                "{} since {}, {} failed tries, next at {}".format(
                    _problem(outcome.detail), clock_time(outage["since"]), outage["tries"], next_at
                ),
            )

    def _outage_over(self) -> None:
        outage, self._outage = self._outage, None
        if outage is None:
            return
        outage["until"] = self.clock.time()
        self.line(
            "SNOW",
            "ServiceNow answers again: outage from {} to {} ({}), {} failed tries".format(
                clock_time(outage["since"]),
                clock_time(outage["until"]),
                _duration(outage["until"] - outage["since"]),
                outage["tries"],
            ),
        )

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

    def outage_list(self) -> List[Dict[str, Any]]:
        """The run's ServiceNow outages: ``{since, until, tries, reason}``, ``until`` None for
        one that lasted to the end."""
        return [dict(outage) for outage in self.outages]

    def outage_text(self) -> str:
        """The outages in one line, for the end of the run."""
        parts = []
        for outage in self.outages:
            until = outage["until"]
            parts.append(
                "{} to {} ({}, {} failed tries)".format(
                    clock_time(outage["since"]),
                    "the end" if until is None else clock_time(until),
                    _duration((self.clock.time() if until is None else until) - outage["since"]),
                    outage["tries"],
                )
            )
        return "; ".join(parts)

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


class LogTimes(logging.Filter):
    """While a run lasts, the log's times are the console's: the run's clock (virtual with
    ``--fast``, the file's with a replay), in UTC, so one stream has one clock."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self._converters: List[Tuple[logging.Formatter, Any]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        record.created = self.clock.time()
        record.msecs = int(record.created * 1000) % 1000
        return True

    def __enter__(self) -> LogTimes:
        for handler in logging.getLogger().handlers:
            handler.addFilter(self)
            formatter = handler.formatter
            if formatter is not None:
                self._converters.append((formatter, formatter.converter))
                formatter.converter = time.gmtime  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self)
        for formatter, converter in self._converters:
            formatter.converter = converter  # type: ignore[method-assign]
        self._converters = []


def silence(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so nothing fails writing to it later."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def clock_time(ts: float) -> str:
    """``HH:MM:SS`` (UTC), as every console line starts."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%H:%M:%S")


def _problem(detail: str) -> str:
    """``ServiceNow unreachable at URL`` of ``ServiceNow unreachable at URL: why``."""
    head, _, _ = detail.partition(": ")
    return head if head.startswith("ServiceNow") else "ServiceNow: " + head


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return "{} s".format(seconds)
    if seconds < 3600:
        return "{} min {:02d} s".format(seconds // 60, seconds % 60)
    return "{} h {:02d} min".format(seconds // 3600, seconds % 3600 // 60)


def _values(metrics: Sequence[str], values: Sequence[Optional[float]]) -> str:
    return " ".join(f"{m[0]}={v:.2f}{UNITS[m]}" for m, v in zip(metrics, values) if v is not None)


def _plural(n: int, what: str) -> str:
    return "{} {}{}".format(n, what, "" if n == 1 else "s")
