"""The Sense HAT backend: HTS221 temperature and humidity, LPS25H pressure."""

from __future__ import annotations

import importlib
import logging

from ..clock import Clock
from ..errors import BadSensorBackend, SensorError
from .base import Reading, Sensor, valid_or_none
from .heat import CPU_TEMP_PATH, CpuHeat, check_factor

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

log = logging.getLogger(__name__)

# What the chips can physically report (HTS221, LPS25H); anything else is a bad read.
RANGES = {
    "temperature": (-40.0, 120.0),
    "humidity": (0.0, 100.0),
    "pressure": (260.0, 1260.0),
}
# The chips finish their first conversion 80 ms (HTS221 at 12.5 Hz) and 40 ms (LPS25H at
# 25 Hz) after RTIMULib powers them up; until then the library returns 0 (invalid).
FIRST_VALUE_TIMEOUT = 1.0  # seconds a start waits for every chip's first valid value
FIRST_VALUE_POLL = 0.01
_INSTALL_HINTS = {
    "sense_hat": (
        "On a Raspberry Pi install the OS package python3-sense-hat (it brings RTIMU) and "
        "run from a venv created with --system-site-packages; off a Pi use the 'emulator' "
        "or 'fake' backend."
    ),
    "sense_emu": "Install sense-emu (pip install 'edge-agent[emulator]').",
}
# When SenseHat() fails and no look-up in sensehat_devices names a cause.
_OPEN_HINT = (
    "Check the HAT is seated, I2C is enabled (`sudo raspi-config nonint do_i2c 0`) and the "
    "user is in groups i2c, video and input (`sudo usermod -aG i2c,video,input USER`)."
)
# The HTS221 (humidity, temperature) and LPS25H (pressure) answer on the I2C bus.
_CHIP_HINT = (
    "The {chip} did not answer on the I2C bus ({bus}): check the HAT is seated, I2C is enabled "
    "(`sudo raspi-config nonint do_i2c 0`) and the user may open {bus} (the i2c group: "
    "`sudo usermod -aG i2c USER`)."
)

_NO_FIRST_VALUE_HINT = (
    "a chip that never finishes a conversion is faulty or not powered: check the HAT is "
    "seated, and power the Pi off and on"
)

if TYPE_CHECKING:
    RawValues = Tuple[Any, Any, Any]
else:  # only annotations use it
    RawValues = "Tuple[Any, Any, Any]"


def chip_value(value: Any, metric: str) -> Optional[float]:
    """A chip reading as a float, or ``None`` when the chip marked it invalid or it is impossible.

    The Sense HAT library returns exactly 0 for a sample the chip flagged
    invalid, so 0 means "no reading" here, even for temperature and humidity.
    """
    if value == 0:
        return None
    low, high = RANGES[metric]
    return valid_or_none(value, low, high)


def open_library(module_name: str, hint: Callable[[], str]) -> Any:
    """``module_name.SenseHat()``; BadSensorBackend if it cannot import, SensorError if it fails.

    ``hint`` says what to check; it is only asked once the constructor failed.
    """
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadSensorBackend(
            "cannot import {}: {}. {}".format(module_name, exc, _INSTALL_HINTS.get(module_name, ""))
        ) from exc
    try:
        return module.SenseHat()
    except Exception as exc:
        # Any type: OSError (no framebuffer, no I2C), RuntimeError (no joystick),
        # KeyError (the uid has no passwd entry), PermissionError (settings folder).
        raise SensorError(
            "cannot open the Sense HAT ({}.SenseHat() failed: {}). {}".format(
                module_name, describe(exc), hint()
            )
        ) from exc


def describe(exc: BaseException) -> str:
    """``Type: message`` (a KeyError's message without its quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return "{}: {}".format(type(exc).__name__, text) if text else type(exc).__name__


def open_hint() -> str:
    """What is absent or not accessible for the ``sense_hat`` library, as one sentence each."""
    from .sensehat_devices import diagnose

    try:
        problems = diagnose()
    except Exception as exc:  # the hint must never hide the original error
        log.debug("diagnosing the Sense HAT failed: %s", exc)
        problems = []
    if not problems:
        return _OPEN_HINT
    return " ".join(p[0].upper() + p[1:] + "." for p in problems)


def _chip_error(exc: BaseException) -> str:
    from .sensehat_devices import I2C_BUS

    text = str(exc)
    if "Humidity Init Failed" in text:
        return _CHIP_HINT.format(chip="HTS221 (temperature, humidity)", bus=I2C_BUS)
    if "Pressure Init Failed" in text:
        return _CHIP_HINT.format(chip="LPS25H (pressure)", bus=I2C_BUS)
    return ""


class SenseHatSensor(Sensor):
    """The Raspberry Pi Sense HAT, through the ``sense_hat`` library.

    ``compensation_factor`` turns on the usual CPU-heat correction
    ``t - (t_cpu - t) / factor``; calibrate it per enclosure (1.5 to 2.25 is
    typical). ``with_pressure=False`` skips the LPS25H. The constructor returns
    once every chip gave a valid value (at most ``first_value_timeout`` seconds),
    so the first reading is never empty; a chip that gives none is a SensorError.
    """

    name = "sensehat"
    description = "Sense HAT"

    def __init__(
        self,
        clock: Optional[Clock] = None,
        compensation_factor: Optional[float] = None,
        cpu_temp_path: str = CPU_TEMP_PATH,
        module_name: str = "sense_hat",
        with_pressure: bool = True,
        first_value_timeout: float = FIRST_VALUE_TIMEOUT,
    ) -> None:
        super().__init__(clock)
        self.compensation_factor = check_factor(compensation_factor)
        self.cpu_temp_path = cpu_temp_path
        self._heat = (
            None if compensation_factor is None else CpuHeat(compensation_factor, cpu_temp_path)
        )
        self.module_name = module_name
        self.with_pressure = with_pressure
        self._hat: Any = self._open()
        try:
            self._wait_for_first_values(first_value_timeout)
        except BaseException:
            self.close()
            raise

    def _open(self) -> Any:
        return open_library(self.module_name, open_hint)

    def _wait_for_first_values(self, timeout: float) -> None:
        """Read until each chip gave a valid value: a cold start's first reading is never empty.

        RTIMULib powers a chip up on its first use and reports "invalid" (the library's 0)
        until the chip's first conversion; from then on it keeps the last valid value.
        """
        raw = self._read_raw()  # the first use powers the chips up (RTIMULib's init)
        deadline = self.clock.monotonic() + timeout
        expired = False
        while True:
            # The library's "no sample yet" is exactly 0; an impossible value is a reading
            # (read() makes it missing), and must not keep the sensor from starting.
            missing = [
                metric
                for metric, value in zip(("temperature", "humidity", "pressure"), raw)
                if (metric != "pressure" or self.with_pressure) and value == 0
            ]
            if not missing:
                return
            if expired:  # decided before that read: a stalled process is not a stalled chip
                raise SensorError(
                    "the {} gave no valid {} within {:g} s of start (the library kept returning "
                    "{}): {}".format(
                        self.description,
                        " or ".join(missing),
                        timeout,
                        ", ".join(
                            repr(v)
                            for m, v in zip(("temperature", "humidity", "pressure"), raw)
                            if m in missing
                        ),
                        _NO_FIRST_VALUE_HINT,
                    )
                )
            self.clock.sleep(FIRST_VALUE_POLL)
            expired = self.clock.monotonic() >= deadline
            raw = self._read_raw()

    def read(self) -> Reading:
        raw_t, raw_h, raw_p = self._read_raw()
        temperature = chip_value(raw_t, "temperature")
        if temperature is not None and self._heat is not None:
            temperature = self._heat.correct(temperature)
        humidity = chip_value(raw_h, "humidity")
        pressure = chip_value(raw_p, "pressure") if self.with_pressure else None
        if temperature is None or humidity is None:
            for metric, raw, value in (
                ("temperature", raw_t, temperature),
                ("humidity", raw_h, humidity),
            ):
                if value is None:
                    log.debug("%s: %s reading %r is invalid", self.name, metric, raw)
        return Reading(self.clock.time(), temperature, humidity, pressure)

    def close(self) -> None:
        hat, self._hat = self._hat, None
        stick = getattr(hat, "_stick", None)  # the library holds the joystick device open
        if stick is not None:
            try:
                stick.close()
            except Exception as exc:
                log.debug("closing the joystick failed: %s", exc)

    def _read_raw(self) -> RawValues:
        if self._hat is None:
            raise SensorError(f"the {self.name} sensor is closed")
        try:
            return (
                self._hat.get_temperature(),
                self._hat.get_humidity(),
                self._hat.get_pressure() if self.with_pressure else None,
            )
        except Exception as exc:
            hint = self._read_hint(exc)
            raise SensorError(
                "reading the {} failed: {}{}".format(
                    self.description, describe(exc), " " + hint if hint else ""
                )
            ) from exc

    def _read_hint(self, exc: BaseException) -> str:
        """What to check when a read fails; the emulator gives its own."""
        return _chip_error(exc)
