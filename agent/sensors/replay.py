"""The replay backend: readings from a CSV log, with their recorded timestamps.

The file has a header ``timestamp,temperature,humidity[,pressure]`` (any order,
extra columns ignored). Timestamps are epoch seconds or ISO-8601; ISO times
without a zone are taken as UTC. A metric cell that is empty, unparsable or
physically impossible reads as ``None``. Unlike the chip, 0 is a valid value
here: a log may come from a sensor that can measure it.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import statistics
from datetime import datetime, timezone
from typing import List, Optional, Union

from ..clock import Clock
from ..errors import ConfigError, SensorError
from .base import Reading, Sensor, valid_or_none
from .sensehat import RANGES

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("timestamp", "temperature", "humidity")
OPTIONAL_COLUMNS = ("pressure",)
_EXPECTED = "timestamp,temperature,humidity[,pressure]"


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
        # Python before 3.11 does not read a trailing "Z".
        if text[-1] in "Zz":
            text = text[:-1] + "+00:00"
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        value = when.timestamp()
    return value if math.isfinite(value) else None


def _metric(text: str, metric: str, where: str) -> Optional[float]:
    text = text.strip()
    if not text:
        log.debug("%s: no %s", where, metric)
        return None
    try:
        number = float(text)
    except ValueError:
        log.debug("%s: %s %r is not a number", where, metric, text)
        return None
    low, high = RANGES[metric]
    value = valid_or_none(number, low, high)
    if value is None:
        log.debug("%s: %s %r is out of range", where, metric, text)
    return value


def load_readings(path: str) -> List[Reading]:
    """Every usable row of the replay CSV at ``path``, as readings with the recorded timestamps."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            header = [column.strip().lower() for column in next(rows, [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise ConfigError(
                    "replay file {} has header {!r}, missing {}; expected columns {}".format(
                        path, ",".join(header), ", ".join(missing), _EXPECTED
                    )
                )
            index = {c: header.index(c) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in header}
            readings = []
            for cells in rows:
                if not any(cell.strip() for cell in cells):
                    continue
                where = f"{path} line {rows.line_num}"
                cells = cells + [""] * (len(header) - len(cells))
                stamp = cells[index["timestamp"]]
                ts = parse_timestamp(stamp)
                if ts is None:
                    log.warning("%s: unreadable timestamp %r, row skipped", where, stamp)
                    continue
                values = {
                    m: _metric(cells[i], m, where) for m, i in index.items() if m != "timestamp"
                }
                readings.append(
                    Reading(ts, values["temperature"], values["humidity"], values.get("pressure"))
                )
    except OSError as exc:
        raise ConfigError(f"cannot read replay file {path}: {exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"replay file {path} is not a readable CSV: {exc}") from exc
    if not readings:
        raise ConfigError(f"replay file {path} has no data rows")
    return readings


class ReplaySensor(Sensor):
    """Plays a CSV log back one row per ``read()``, keeping the recorded timestamps.

    ``period_hint`` is the median interval between rows, so a simulator can
    pace itself like the original. With ``loop=True`` the log repeats, its
    timestamps shifted so time keeps moving forward; otherwise reading past
    the end raises :class:`ReplayFinished` (an ``EOFError``). The clock is
    not used for timestamps.
    """

    name = "replay"

    def __init__(
        self, path: Union[str, os.PathLike[str]], clock: Optional[Clock] = None, loop: bool = False
    ) -> None:
        super().__init__(clock)
        self.path = os.fspath(path)
        self.loop = loop
        self._readings = load_readings(self.path)
        intervals = [b.ts - a.ts for a, b in zip(self._readings, self._readings[1:]) if b.ts > a.ts]
        self.period_hint: Optional[float] = statistics.median(intervals) if intervals else None
        # One pass of the log, as time: where the next lap's timestamps start.
        self._lap = self._readings[-1].ts - self._readings[0].ts + (self.period_hint or 0.0)
        self._next = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._readings)

    def read(self) -> Reading:
        if self._closed:
            raise SensorError(f"the replay of {self.path} is closed")
        lap, row = divmod(self._next, len(self._readings))
        if lap and not self.loop:
            raise ReplayFinished(f"replay of {self.path} finished after {len(self._readings)} rows")
        self._next += 1
        reading = self._readings[row]
        if lap:
            reading = dataclasses.replace(reading, ts=reading.ts + lap * self._lap)
        return reading

    def close(self) -> None:
        self._closed = True
