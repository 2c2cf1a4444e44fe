"""The replay backend: readings from a CSV log, with their recorded timestamps.

The file's first row is a header naming the columns
``timestamp,temperature,humidity[,pressure]`` (any order, extra columns ignored):
without it the first reading would be taken for column names. Timestamps are epoch seconds or ISO-8601; ISO times
without a zone are taken as UTC. Unlike the chip, 0 is a valid value here: a
log may come from a sensor that can measure it.

Nothing is dropped uncounted: a row without a readable timestamp or without
the required cells is skipped, and a metric cell that is empty, not a number,
NaN, infinite or outside what the metric can physically be (the message
schema's ``METRIC_RANGES``) reads as missing; :class:`ReplayStats` counts
each by reason and keeps the line numbers of the first few, so a person can
find them.

Memory stays flat in the size of the file. The first pass (at construction)
streams the file once to check it, count it and find whether its rows are in
time order. Reading streams it again; a file that is not in time order (a log
written newest-first, say) is played sorted, by an external merge sort: sorted
runs of at most ``chunk_rows`` rows in temporary files, merged as they are read.
"""

from __future__ import annotations

import csv
import heapq
import logging
import math
import os
import re
import shutil
import statistics
import struct
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

from ..clock import Clock
from ..errors import ConfigError, SensorError
from ..schema import METRIC_RANGES, METRICS
from .base import Reading, Sensor

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("timestamp", "temperature", "humidity")
_EXPECTED = "timestamp,temperature,humidity[,pressure]"
SKIPPED_ROW_REASONS = ("unreadable_timestamp", "short_row")
MISSING_CELL_REASONS = ("empty", "non_numeric", "nan", "inf", "out_of_range")
CHUNK_ROWS = 50_000  # rows sorted in memory at a time (~10 MB) when the file is out of order
LINES_KEPT = 3  # line numbers kept per reason, for the one-line description
_HINT_INTERVALS = 10_001  # the period hint is the median of this many first intervals
_RUN_RECORD = struct.Struct("<dqddd")  # ts, row number, temperature, humidity, pressure (NaN: None)
_RUN_BATCH = 4096


_SIX_DIGIT_FRACTION = re.compile(r"(?<=\d\d:\d\d:\d\d)\.(\d+)")


class ReplayFinished(SensorError, EOFError):
    """The replay ran out of rows and was not asked to loop."""


def parse_timestamp(text: str) -> Optional[float]:
    """Epoch seconds from ``text`` (epoch seconds or ISO-8601), or ``None``."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        # Python before 3.11 does not read a trailing "Z", nor fractions of a second
        # other than 3 or 6 digits ("12:00:15.5").
        if text[-1] in "Zz":
            text = text[:-1] + "+00:00"
        text = _SIX_DIGIT_FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text)
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        value = when.timestamp()
    return value if math.isfinite(value) else None


@dataclass
class ReplayStats:
    """What the first pass found in a replay file."""

    path: str
    metrics: Tuple[str, ...] = ()  # the metric columns the file has
    rows: int = 0  # data rows (blank lines are not rows)
    used: int = 0  # rows played
    skipped_rows: Dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(SKIPPED_ROW_REASONS, 0)
    )
    missing_cells: Dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(MISSING_CELL_REASONS, 0)
    )
    out_of_order: int = 0  # rows with a timestamp earlier than the row before
    first_ts: Optional[float] = None  # earliest timestamp
    last_ts: Optional[float] = None  # latest timestamp
    period_hint: Optional[float] = None  # median interval between rows
    first_bad_timestamp: Optional[Tuple[int, str]] = None  # (line, text), for the error message
    # The file's line numbers of the first LINES_KEPT rows or cells per reason.
    lines: Dict[str, List[int]] = field(default_factory=dict)
    more_lines: Set[str] = field(default_factory=set)  # reasons seen on more lines than kept

    def note(self, reason: str, line: int) -> None:
        """Count one skipped row or missing cell for ``reason``, at ``line`` of the file."""
        counts = self.skipped_rows if reason in self.skipped_rows else self.missing_cells
        counts[reason] += 1
        kept = self.lines.setdefault(reason, [])
        if line in kept:
            return
        if len(kept) < LINES_KEPT:
            kept.append(line)
        else:
            self.more_lines.add(reason)

    @property
    def in_order(self) -> bool:
        return self.out_of_order == 0

    @property
    def span(self) -> float:
        """Seconds from the earliest to the latest reading."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return self.last_ts - self.first_ts

    def as_dict(self) -> Dict[str, Any]:
        """For a machine-readable summary."""
        return {
            "file": self.path,
            "rows": self.rows,
            "rows_played": self.used,
            "rows_skipped": dict(self.skipped_rows),
            "cells_missing": dict(self.missing_cells),
            "in_time_order": self.in_order,
            "rows_out_of_order": self.out_of_order,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "span_seconds": self.span,
        }

    def describe(self) -> str:
        """One line a person reads: what was played and what was not."""
        parts = [f"{self.used} of {self.rows} rows played"]
        skipped = _reasons(self.skipped_rows, self.lines, self.more_lines)
        if skipped:
            parts.append(
                "{} skipped ({})".format(_count(sum(self.skipped_rows.values()), "row"), skipped)
            )
        missing = _reasons(self.missing_cells, self.lines, self.more_lines)
        if missing:
            parts.append(
                "{} read as missing ({})".format(
                    _count(sum(self.missing_cells.values()), "cell"), missing
                )
            )
        if not self.in_order:
            parts.append(
                f"not in time order ({self.out_of_order} rows earlier than the one before)"
            )
        return "; ".join(parts)


_REASON_LABELS = {
    "unreadable_timestamp": "unreadable timestamp",
    "short_row": "short row",
    "empty": "empty",
    "non_numeric": "not a number",
    "nan": "NaN",
    "inf": "infinite",
    "out_of_range": "out of physical range",
}


def _count(n: int, noun: str) -> str:
    return "{} {}{}".format(n, noun, "" if n == 1 else "s")


def _reasons(counts: Dict[str, int], lines: Dict[str, List[int]], more_lines: Set[str]) -> str:
    """``2 short row (lines 4, 9)``: each reason with the lines it was first seen on."""
    parts = []
    for reason, n in counts.items():
        if not n:
            continue
        seen = lines.get(reason, [])
        where = ""
        if seen:
            more = ", …" if reason in more_lines else ""
            where = " ({} {}{})".format(
                "line" if len(seen) == 1 and not more else "lines",
                ", ".join(str(line) for line in seen),
                more,
            )
        parts.append("{} {}{}".format(n, _REASON_LABELS.get(reason, reason), where))
    return ", ".join(parts)


def _cell(text: str, metric: str, stats: ReplayStats, line: int) -> Optional[float]:
    text = text.strip()
    reason = None
    number = math.nan
    if not text:
        reason = "empty"
    else:
        try:
            number = float(text)
        except ValueError:
            reason = "non_numeric"
    if reason is None:
        low, high = METRIC_RANGES[metric]
        if number != number:
            reason = "nan"
        elif number in (math.inf, -math.inf):
            reason = "inf"
        elif not low <= number <= high:
            reason = "out_of_range"
    if reason is not None:
        stats.note(reason, line)
        return None
    return number


def _readings(path: str, stats: ReplayStats) -> Iterator[Reading]:
    """Stream the usable rows of ``path`` in file order, counting into ``stats`` what is not."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            header = [column.strip().lower() for column in next(rows, [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise ConfigError(
                    "replay file {}: line 1 must be the header row naming the columns {} "
                    "(any order); it is {!r}, without {}".format(
                        path, _EXPECTED, ",".join(header), ", ".join(missing)
                    )
                )
            ts_i, t_i, h_i = (header.index(c) for c in REQUIRED_COLUMNS)
            p_i = header.index("pressure") if "pressure" in header else None
            stats.metrics = tuple(m for m in METRICS if m in header)
            needed = max(ts_i, t_i, h_i) + 1
            for cells in rows:
                stamp = cells[ts_i] if ts_i < len(cells) else ""
                if not stamp.strip() and not any(cell.strip() for cell in cells):
                    continue  # a blank line
                stats.rows += 1
                line = rows.line_num
                if len(cells) < needed:
                    stats.note("short_row", line)
                    continue
                ts = parse_timestamp(stamp)
                if ts is None:
                    stats.note("unreadable_timestamp", line)
                    if stats.first_bad_timestamp is None:
                        stats.first_bad_timestamp = (line, stamp)
                    continue
                if p_i is None:
                    pressure = None
                elif p_i < len(cells):
                    pressure = _cell(cells[p_i], "pressure", stats, line)
                else:
                    stats.note("empty", line)
                    pressure = None
                yield Reading(
                    ts,
                    _cell(cells[t_i], "temperature", stats, line),
                    _cell(cells[h_i], "humidity", stats, line),
                    pressure,
                )
    except OSError as exc:
        raise ConfigError(f"cannot read replay file {path}: {exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"replay file {path} is not a readable CSV: {exc}") from exc


def scan(path: str) -> ReplayStats:
    """The first pass: check the file and count it, in constant memory."""
    stats = ReplayStats(path)
    previous: Optional[float] = None
    intervals: List[float] = []
    for reading in _readings(path, stats):
        ts = reading.ts
        stats.used += 1
        if previous is None:
            stats.first_ts = stats.last_ts = ts
        else:
            if ts < previous:
                stats.out_of_order += 1
            if ts != previous and len(intervals) < _HINT_INTERVALS:
                intervals.append(abs(ts - previous))
            stats.first_ts = min(stats.first_ts, ts)  # type: ignore[type-var]
            stats.last_ts = max(stats.last_ts, ts)  # type: ignore[type-var]
        previous = ts
    if stats.rows == 0:
        raise ConfigError(f"replay file {path} has no data rows")
    if stats.used == 0:
        bad = stats.first_bad_timestamp
        if bad is not None and stats.skipped_rows["unreadable_timestamp"] == stats.rows:
            line, text = bad
            raise ConfigError(
                "replay file {}: none of its {} data rows has a readable timestamp (epoch "
                "seconds or ISO-8601 such as 2026-09-21T12:00:00Z); line {} has {!r}".format(
                    path, stats.rows, line, text
                )
            )
        raise ConfigError(f"replay file {path}: none of its rows can be played: {stats.describe()}")
    stats.period_hint = statistics.median(intervals) if intervals else None
    return stats


class ReplaySensor(Sensor):
    """Plays a CSV log back one row per ``read()``, in time order, keeping the recorded timestamps.

    ``stats`` says what the file held and what was skipped; ``period_hint`` is
    the median interval between rows, so a simulator can pace itself like the
    original, and :meth:`next_ts` tells it when the next row was recorded.
    With ``loop=True`` the log repeats, its timestamps shifted so time keeps
    moving forward; otherwise reading past the end raises
    :class:`ReplayFinished` (an ``EOFError``). The clock is not used for
    timestamps.
    """

    name = "replay"

    def __init__(
        self,
        path: Union[str, os.PathLike[str]],
        clock: Optional[Clock] = None,
        loop: bool = False,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        super().__init__(clock)
        self.path = os.fspath(path)
        self.loop = loop
        self.chunk_rows = int(chunk_rows)
        self.stats = scan(self.path)
        self.metrics = self.stats.metrics
        self.period_hint = self.stats.period_hint
        if not self.stats.in_order:
            log.warning(
                "replay file %s is not in time order (%d rows earlier than the row before); "
                "playing it sorted by timestamp",
                self.path,
                self.stats.out_of_order,
            )
        # One pass of the log, as time: where the next lap's timestamps start.
        self._lap = self.stats.span + (self.period_hint or 0.0)
        self._laps = 0
        self._tmpdir: Optional[str] = None
        self._runs: Optional[List[str]] = None  # sorted run files (out-of-order files only)
        self._sorted_in_memory: Optional[List[Tuple[float, int, Any, Any, Any]]] = None
        self._source: Iterator[Reading] = self._play()
        self._next: Optional[Reading] = None
        self._closed = False

    def __len__(self) -> int:
        """Rows played per lap."""
        return self.stats.used

    def next_ts(self) -> Optional[float]:
        """When the next row was recorded (lap shift included); ``None`` at the end."""
        reading = self._peek()
        return None if reading is None else reading.ts

    def read(self) -> Reading:
        if self._closed:
            raise SensorError(f"the replay of {self.path} is closed")
        reading = self._peek()
        if reading is None:
            raise ReplayFinished(f"replay of {self.path} finished after {self.stats.used} rows")
        self._next = None
        return reading

    def close(self) -> None:
        self._closed = True
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- streaming ---------------------------------------------------------------------
    def _peek(self) -> Optional[Reading]:
        if self._next is None and not self._closed:
            reading = next(self._source, None)
            if reading is None:
                if not self.loop:
                    return None
                self._laps += 1
                self._source = self._play()
                reading = next(self._source)  # every lap has rows: scan refuses a file without
            if self._laps:
                reading = reading.with_changes(ts=reading.ts + self._laps * self._lap)
            self._next = reading
        return self._next

    def _play(self) -> Iterator[Reading]:
        if self.stats.in_order:
            return _readings(self.path, ReplayStats(self.path))
        return self._play_sorted()

    def _play_sorted(self) -> Iterator[Reading]:
        if self._runs is None:  # sorted once, for every lap
            self._sort()
        if self._sorted_in_memory is not None:
            rows: Iterable[Tuple[float, int, Any, Any, Any]] = iter(self._sorted_in_memory)
        else:
            rows = heapq.merge(*(_read_run(run) for run in self._runs or ()))
        for ts, _, temperature, humidity, pressure in rows:
            yield Reading(ts, temperature, humidity, pressure)

    def _sort(self) -> None:
        """Sorted runs of ``chunk_rows`` rows on disk; in memory when the file fits in one."""
        chunk: List[Tuple[float, int, Any, Any, Any]] = []
        runs: List[str] = []
        for row, r in enumerate(_readings(self.path, ReplayStats(self.path))):
            if len(chunk) >= self.chunk_rows:  # full, and one more row: the chunk goes to disk
                runs.append(self._write_run(sorted(chunk)))
                chunk = []
            # The row number keeps rows with equal timestamps in file order.
            chunk.append((r.ts, row, r.temperature, r.humidity, r.pressure))
        if not runs:
            self._sorted_in_memory = sorted(chunk)
        else:
            runs.append(self._write_run(sorted(chunk)))
        self._runs = runs

    def _write_run(self, rows: List[Tuple[float, int, Any, Any, Any]]) -> str:
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="edge-agent-replay-")
        path = os.path.join(self._tmpdir, "run-{:05d}".format(len(os.listdir(self._tmpdir))))
        nan = math.nan
        with open(path, "wb") as out:
            for start in range(0, len(rows), _RUN_BATCH):
                out.write(
                    b"".join(
                        _RUN_RECORD.pack(
                            ts,
                            row,
                            nan if t is None else t,
                            nan if h is None else h,
                            nan if p is None else p,
                        )
                        for ts, row, t, h, p in rows[start : start + _RUN_BATCH]
                    )
                )
        return path


def _read_run(path: str) -> Iterator[Tuple[float, int, Any, Any, Any]]:
    """The rows of one sorted run file, read a batch at a time."""
    handle: IO[bytes]
    with open(path, "rb") as handle:
        while True:
            block = handle.read(_RUN_RECORD.size * _RUN_BATCH)
            if not block:
                return
            for ts, row, t, h, p in _RUN_RECORD.iter_unpack(block):
                # NaN stands for a missing value: real values were range-checked.
                yield (
                    ts,
                    row,
                    None if t != t else t,
                    None if h != h else h,
                    None if p != p else p,
                )
