"""``simulate --replay FILE`` with a ``device`` column: each device a sensor function of its own.

The file is the replay backend's (``timestamp,temperature,humidity[,pressure]``,
epoch seconds or ISO-8601) plus a ``device`` column. It is read into memory
(a site's log of hours is megabytes); rows are played in time order per device.
A row without a readable timestamp or device is skipped and counted; a metric
cell that is not a number in range reads as missing, as in the replay backend.
"""

from __future__ import annotations

import csv
import math
from typing import Dict, Iterator, List, Optional, Tuple

from agent.clock import Clock
from agent.errors import ConfigError
from agent.schema import METRIC_RANGES, METRICS
from agent.sensors.base import Reading, Sensor
from agent.sensors.replay import REQUIRED_COLUMNS, parse_timestamp


def has_device_column(path: str) -> bool:
    """Whether the replay file names a device per row (then each is a function of its own)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the replay file {path}: {exc}")
    return "device" in [h.strip().lower() for h in header]


class FleetRows:
    """A device-column replay file, read: per device its readings in time order."""

    def __init__(self, per_device: Dict[str, List[Reading]], skipped: int) -> None:
        self.per_device = per_device
        self.skipped = skipped
        self.devices = sorted(per_device)
        every = [r.ts for rows in per_device.values() for r in rows]
        self.first_ts = min(every)
        self.span = max(every) - self.first_ts

    def times(self) -> Iterator[Tuple[float, List[str]]]:
        """Each timestamp of the file, with the devices that read then."""
        at: Dict[float, List[str]] = {}
        for device, rows in self.per_device.items():
            for reading in rows:
                at.setdefault(reading.ts, []).append(device)
        for ts in sorted(at):
            yield ts, sorted(at[ts])

    def sensor(self, device: str, clock: Clock) -> Sensor:
        return _DeviceRows(self.per_device[device], clock)


class _DeviceRows(Sensor):
    name = "replay"

    def __init__(self, rows: List[Reading], clock: Clock) -> None:
        super().__init__(clock)
        self.rows = rows
        self.next = 0

    def read(self) -> Reading:
        reading = self.rows[min(self.next, len(self.rows) - 1)]
        self.next += 1
        return reading


def read_fleet_file(path: str) -> FleetRows:
    """Read ``path``; ConfigError when it has no usable row or lacks a required column."""
    per_device: Dict[str, List[Reading]] = {}
    skipped = 0
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in REQUIRED_COLUMNS + ("device",) if c not in header]
            if missing:
                raise ConfigError(
                    "replay file {} lacks the column(s) {}; expected "
                    "device,timestamp,temperature,humidity[,pressure]".format(
                        path, ", ".join(missing)
                    )
                )
            where = {name: header.index(name) for name in header}
            for row in reader:
                if len(row) < len(header) or not row[where["device"]].strip():
                    skipped += 1
                    continue
                ts = parse_timestamp(row[where["timestamp"]])
                if ts is None:
                    skipped += 1
                    continue
                values = [_cell(row, where.get(m), m) for m in METRICS]
                per_device.setdefault(row[where["device"]].strip(), []).append(
                    Reading(ts, values[0], values[1], values[2])
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the replay file {path}: {exc}")
    if not per_device:
        raise ConfigError(f"replay file {path} has no usable row ({skipped} skipped)")
    for rows in per_device.values():
        rows.sort(key=lambda r: r.ts)
    return FleetRows(per_device, skipped)


def _cell(row: List[str], index: Optional[int], metric: str) -> Optional[float]:
    if index is None:
        return None
    try:
        value = float(row[index])
    except ValueError:
        return None
    low, high = METRIC_RANGES[metric]
    return value if math.isfinite(value) and low <= value <= high else None
