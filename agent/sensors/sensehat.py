"""The Sense HAT backend: HTS221 temperature and humidity, LPS25H pressure."""

from __future__ import annotations

import importlib
import logging
from typing import Any, Optional, Tuple

from ..clock import Clock
from ..errors import BadSensorBackend, ConfigError, SensorError
from .base import Reading, Sensor, valid_or_none

log = logging.getLogger(__name__)

CPU_TEMP_PATH = "/sys/class/thermal/thermal_zone0/temp"
# What the chips can physically report (HTS221, LPS25H); anything else is a bad read.
RANGES = {
    "temperature": (-40.0, 120.0),
    "humidity": (0.0, 100.0),
    "pressure": (260.0, 1260.0),
}
_INSTALL_HINTS = {
    "sense_hat": (
        "On a Raspberry Pi install the OS package python3-sense-hat (it brings RTIMU) and "
        "run from a venv created with --system-site-packages; off a Pi use the 'emulator' "
        "or 'fake' backend."
    ),
    "sense_emu": "Install sense-emu (pip install 'edge-agent[emulator]'); it needs a desktop.",
}
_OPEN_HINT = (
    "Check the HAT is seated, I2C is enabled and the user is in groups i2c, video and input; "
    "in a Greengrass container, /dev/i2c-1, the Sense HAT /dev/fbN and /dev/input/eventN must "
    "be local resources, with sysfs access and a writable HOME."
)

RawValues = Tuple[Any, Any, Any]


def chip_value(value: Any, metric: str) -> Optional[float]:
    """A chip reading as a float, or ``None`` when the chip marked it invalid or it is impossible.

    The Sense HAT library returns exactly 0 for a sample the chip flagged
    invalid, so 0 means "no reading" here, even for temperature and humidity.
    """
    if value == 0:
        return None
    low, high = RANGES[metric]
    return valid_or_none(value, low, high)


def _open_hat(module_name: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadSensorBackend(
            "cannot import {}: {}. {}".format(module_name, exc, _INSTALL_HINTS.get(module_name, ""))
        ) from exc
    try:
        return module.SenseHat()
    except OSError as exc:
        raise SensorError(
            f"cannot open the Sense HAT ({module_name}.SenseHat() failed: {exc}). {_OPEN_HINT}"
        ) from exc


class SenseHatSensor(Sensor):
    """The Raspberry Pi Sense HAT, through the ``sense_hat`` library.

    ``compensation_factor`` turns on the usual CPU-heat correction
    ``t - (t_cpu - t) / factor``; calibrate it per enclosure (1.5 to 2.25 is
    typical). ``with_pressure=False`` skips the LPS25H.
    """

    name = "sensehat"

    def __init__(
        self,
        clock: Optional[Clock] = None,
        compensation_factor: Optional[float] = None,
        cpu_temp_path: str = CPU_TEMP_PATH,
        module_name: str = "sense_hat",
        with_pressure: bool = True,
    ) -> None:
        super().__init__(clock)
        if compensation_factor is not None and not compensation_factor > 0:
            raise ConfigError(f"compensation_factor must be positive, got {compensation_factor}")
        self.compensation_factor = compensation_factor
        self.cpu_temp_path = cpu_temp_path
        self.module_name = module_name
        self.with_pressure = with_pressure
        self._cpu_warned = False
        self._hat: Any = _open_hat(module_name)
        # The first read after init is often 0 because the chip has no sample yet.
        self._read_raw()

    def read(self) -> Reading:
        raw_t, raw_h, raw_p = self._read_raw()
        temperature = chip_value(raw_t, "temperature")
        if temperature is not None and self.compensation_factor is not None:
            temperature = self._compensate(temperature, self.compensation_factor)
        humidity = chip_value(raw_h, "humidity")
        pressure = chip_value(raw_p, "pressure") if self.with_pressure else None
        for metric, raw, value in (
            ("temperature", raw_t, temperature),
            ("humidity", raw_h, humidity),
        ):
            if value is None:
                log.debug("%s: %s reading %r is invalid", self.name, metric, raw)
        return Reading(self.clock.time(), temperature, humidity, pressure)

    def close(self) -> None:
        self._hat = None

    def _read_raw(self) -> RawValues:
        if self._hat is None:
            raise SensorError(f"the {self.name} sensor is closed")
        try:
            return (
                self._hat.get_temperature(),
                self._hat.get_humidity(),
                self._hat.get_pressure() if self.with_pressure else None,
            )
        except OSError as exc:
            raise SensorError(f"reading the Sense HAT failed: {exc}") from exc

    def _compensate(self, temperature: float, factor: float) -> Optional[float]:
        cpu = self._cpu_temperature()
        if cpu is None:
            return temperature
        low, high = RANGES["temperature"]
        return valid_or_none(temperature - (cpu - temperature) / factor, low, high)

    def _cpu_temperature(self) -> Optional[float]:
        try:
            with open(self.cpu_temp_path) as f:
                return int(f.read().strip()) / 1000.0
        except (OSError, ValueError) as exc:
            if not self._cpu_warned:
                self._cpu_warned = True
                log.warning(
                    "cannot read the CPU temperature from %s (%s); temperature is not compensated",
                    self.cpu_temp_path,
                    exc,
                )
            return None
