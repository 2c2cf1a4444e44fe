"""The sensor interface every backend implements."""

from __future__ import annotations

from ..clock import SYSTEM_CLOCK, Clock
from ..record import Record

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Optional

UNITS = {"temperature": "°C", "humidity": "%RH", "pressure": "hPa"}


class Reading(Record):
    """One sample. A metric the chip did not deliver, or marked invalid, is ``None``."""

    ts: float
    temperature: Optional[float]
    humidity: Optional[float]
    pressure: Optional[float]

    def __init__(
        self,
        ts: float,
        temperature: Optional[float],
        humidity: Optional[float],
        pressure: Optional[float] = None,
    ) -> None:
        # One per sample: set directly rather than through Record._fill's loop.
        _set = object.__setattr__
        _set(self, "ts", ts)
        _set(self, "temperature", temperature)
        _set(self, "humidity", humidity)
        _set(self, "pressure", pressure)

    def value(self, metric: str) -> Optional[float]:
        value: Optional[float] = getattr(self, metric)
        return value


def valid_or_none(value: object, low: float, high: float) -> Optional[float]:
    """The value as a float when it is a number in ``[low, high]`` (finite bounds), else ``None``.

    The Sense HAT reports an invalid reading as exactly 0; callers pass a
    range that excludes it where 0 is impossible (pressure) and check the
    chip's status themselves where it is not. NaN and infinity fall outside any
    finite range (every comparison with NaN is false).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if low <= value <= high else None


class Sensor:
    """An environmental sensor: temperature °C, humidity %RH, pressure hPa where available.

    ``read()`` returns a :class:`Reading` stamped with the sensor's clock and
    raises :class:`agent.errors.SensorError` when the device cannot be read.
    """

    name = "abstract"

    def __init__(self, clock: Optional[Clock] = None) -> None:
        self.clock = clock or SYSTEM_CLOCK

    def read(self) -> Reading:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device. Reading after ``close()`` is an error."""

    def __enter__(self) -> Sensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
