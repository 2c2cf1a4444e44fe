"""The Sense HAT over I2C: the HTS221 and LPS25H read through ``smbus2``, on any Python.

No RTIMU, numpy or Pillow: ``smbus2`` is pure Python, so this backend runs the
same under a Greengrass V1 core's Python 3.8 and the OS's Python. The chips are
driven as their datasheets say (:mod:`agent.sensors.st_chips`): each reading is
one one-shot conversion per chip, read once both data-ready bits are set, so no
reading, the first included, is ever empty; a chip that does not finish a
conversion within ``ready_timeout`` seconds is a :class:`SensorError`.

Opening says what is wrong and how to fix it: no ``/dev/i2c-N`` (I2C is off),
no permission to open it (the ``i2c`` group), no chip acknowledging its address
(the HAT is not seated, or another bus), another chip there (WHO_AM_I), a kernel
driver holding the address.
"""

from __future__ import annotations

import errno
import logging
import os

from ..clock import Clock
from ..errors import BadSensorBackend, SensorError
from .base import Reading, Sensor, valid_or_none
from .heat import CPU_TEMP_PATH, CpuHeat, check_factor
from .st_chips import HTS221, LPS25H, CalibrationError, ChipMismatch, StChip, registers_of

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, List, Optional, Tuple

log = logging.getLogger(__name__)

DEFAULT_BUS = 1  # the Pi's I2C on the GPIO header, where a HAT sits
READY_TIMEOUT = 1.0  # seconds a conversion may take before the chip counts as stalled
POLL_INTERVAL = 0.005
TEMPERATURE_RANGE = (-40.0, 120.0)  # what the HTS221 can measure
PRESSURE_RANGE = (260.0, 1260.0)  # what the LPS25H can measure
# How a chip that does not acknowledge its address fails: i2c-bcm2835 (the Pi's
# controller) reports a NACK as EREMOTEIO; other adapters use ENXIO or EIO.
NO_ACK = (getattr(errno, "EREMOTEIO", 121), errno.ENXIO, errno.EIO, errno.ETIMEDOUT)
ENABLE_I2C = "sudo raspi-config nonint do_i2c 0"


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "uid {}".format(os.getuid())


def bus_error(path: str, exc: OSError) -> SensorError:
    """Why ``/dev/i2c-N`` could not be opened, and what to do."""
    if exc.errno == errno.ENOENT:
        message = (
            "no I2C bus {path}: I2C is not enabled on this Pi (enable it with `{fix}`, or "
            "raspi-config > Interface Options > I2C), or the Sense HAT is on another bus "
            "(set i2cBus); in a Greengrass V1 container {path} must be a local device "
            "resource of the sensor function".format(path=path, fix=ENABLE_I2C)
        )
    elif exc.errno in (errno.EACCES, errno.EPERM):
        user = _user()
        message = (
            "permission denied opening the I2C bus {path} as {user}: add the user to the "
            "i2c group (`sudo usermod -aG i2c {user}`, then log in again or restart the "
            "Greengrass core)".format(path=path, user=user)
        )
    elif exc.errno == errno.ENOTTY:
        message = "{} is not an I2C bus (ioctl refused: {})".format(path, exc.strerror)
    else:
        message = "cannot open the I2C bus {}: {}".format(path, exc)
    return SensorError(message)


def chip_error(chip: StChip, path: str, exc: BaseException) -> SensorError:
    """Why a chip could not be used, and what to do."""
    where = "{} ({}) at address 0x{:02X} on {}".format(chip.name, chip.role, chip.address, path)
    if isinstance(exc, ChipMismatch):
        return SensorError(
            "the chip at address 0x{:02X} on {} is not an {}: WHO_AM_I (0x0F) reads 0x{:02X}, "
            "expected 0x{:02X}; is another board at that address, or is the Sense HAT on "
            "another bus (i2cBus)?".format(chip.address, path, chip.name, exc.found, chip.who_am_i)
        )
    if isinstance(exc, CalibrationError):
        return SensorError(
            "the {}'s calibration registers are unusable ({}): the chip is damaged".format(
                where, exc
            )
        )
    if isinstance(exc, OSError) and exc.errno == errno.EBUSY:
        return SensorError(
            "the {} is held by a kernel driver (EBUSY; see /sys/bus/i2c/devices/*-00{:02x}/"
            "driver): unload that driver, or use the sense_hat backend "
            "(EDGE_AGENT_SENSOR=sensehat)".format(where, chip.address)
        )
    if isinstance(exc, OSError) and exc.errno in NO_ACK:
        return SensorError(
            "no answer from the {} ({}): is the Sense HAT seated on the GPIO header, and on "
            "this bus? `i2cdetect -y {}` should show {:02x}".format(
                where, exc.strerror or exc, path.rsplit("-", 1)[-1], chip.address
            )
        )
    return SensorError("the {} failed: {}: {}".format(where, type(exc).__name__, exc))


class I2CSensor(Sensor):
    """The Sense HAT's HTS221 (temperature, humidity) and LPS25H (pressure) over I2C.

    ``bus`` is the ``/dev/i2c-N`` number (``i2cBus``, 1 on a Pi);
    ``compensation_factor`` corrects for the CPU's heat as the ``sensehat``
    backend does; ``with_pressure=False`` leaves the LPS25H alone.
    """

    name = "i2c"
    description = "Sense HAT over I2C"

    def __init__(
        self,
        clock: Optional[Clock] = None,
        bus: int = DEFAULT_BUS,
        compensation_factor: Optional[float] = None,
        cpu_temp_path: str = CPU_TEMP_PATH,
        with_pressure: bool = True,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        super().__init__(clock)
        self.compensation_factor = check_factor(compensation_factor)
        self._heat = (
            None if compensation_factor is None else CpuHeat(compensation_factor, cpu_temp_path)
        )
        self.bus_number = bus
        self.path = "/dev/i2c-{}".format(bus)
        self.with_pressure = with_pressure
        self.ready_timeout = ready_timeout
        self._bus: Any = None
        smbus2 = _import_smbus2()
        try:
            self._bus = smbus2.SMBus(bus)
        except OSError as exc:
            raise bus_error(self.path, exc) from exc
        self.hts221 = HTS221(self._bus)
        self.lps25h = LPS25H(self._bus)
        self.chips: List[StChip] = [self.hts221] + ([self.lps25h] if with_pressure else [])
        self._talking_to: StChip = self.hts221  # the chip an I/O error is about
        try:
            for chip in self.chips:
                self._open_chip(chip)
            self._measure()  # a chip that never finishes a conversion fails here, at start
        except BaseException:
            self.close()
            raise

    def _open_chip(self, chip: StChip) -> None:
        try:
            chip.identify()
            chip.power_up()
        except (OSError, ChipMismatch, CalibrationError) as exc:
            raise chip_error(chip, self.path, exc) from exc
        log.debug("%s: %s at 0x%02X powered up", self.name, chip.name, chip.address)

    def read(self) -> Reading:
        humidity, temperature, pressure = self._measure()
        if temperature is not None and self._heat is not None:
            temperature = self._heat.correct(temperature)
        return Reading(self.clock.time(), temperature, humidity, pressure)

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.close()
            except OSError as exc:
                log.debug("closing %s failed: %s", self.path, exc)

    # --- one measurement ----------------------------------------------------------

    def _measure(self) -> Tuple[float, Optional[float], Optional[float]]:
        """(humidity, temperature, pressure) from one one-shot conversion of each chip."""
        if self._bus is None:
            raise SensorError(f"the {self.name} sensor is closed")
        self._talking_to = self.chips[0]
        try:
            for chip in self.chips:
                self._talking_to = chip
                chip.start()  # both convert at once
            self._wait_until_ready()
            self._talking_to = self.hts221
            humidity, temperature = self.hts221.measurement()
            pressure = None
            if self.with_pressure:
                self._talking_to = self.lps25h
                pressure = self.lps25h.measurement()[0]
        except SensorError:
            raise
        except OSError as exc:
            error = chip_error(self._talking_to, self.path, exc)
            raise SensorError("reading the {} failed: {}".format(self.description, error)) from exc
        return (
            humidity,
            _in_range(temperature, TEMPERATURE_RANGE),
            _in_range(pressure, PRESSURE_RANGE),
        )

    def _wait_until_ready(self) -> None:
        """Poll STATUS_REG until every chip's data-ready bits are set, at most ``ready_timeout``."""
        clock = self.clock
        deadline = clock.monotonic() + self.ready_timeout
        waiting = list(self.chips)
        while True:
            # Decided before the poll: a process stalled past the deadline polls once more.
            expired = clock.monotonic() >= deadline
            still = []
            for chip in waiting:
                self._talking_to = chip
                if not chip.ready():
                    still.append(chip)
            waiting = still
            if not waiting:
                return
            if expired:
                raise self._stalled(waiting[0])
            clock.sleep(POLL_INTERVAL)

    def _stalled(self, chip: StChip) -> SensorError:
        registers = registers_of(chip)
        state = ", ".join("{} 0x{:02X}".format(k, v) for k, v in registers.items())
        where = "the {} ({}) at 0x{:02X} on {}".format(
            chip.name, chip.role, chip.address, self.path
        )
        if not registers["CTRL_REG1"] & 0x80:
            # Its registers went back to their power-on values: a brown-out, or another
            # program powered it down. Set it up again for the next reading.
            chip.power_up()
            return SensorError(
                "{} had been reset ({}): powered it up again; this reading is lost".format(
                    where, state
                )
            )
        return SensorError(
            "{} did not finish a conversion within {:g} s ({}): the chip is stalled; power the "
            "Pi off and on".format(where, self.ready_timeout, state)
        )


def _in_range(value: Optional[float], bounds: Tuple[float, float]) -> Optional[float]:
    """The value, or None (logged) when it is outside what the chip can measure."""
    if value is None:
        return None
    checked = valid_or_none(value, *bounds)
    if checked is None:
        log.debug("i2c: %r is outside what the chip measures (%s to %s)", value, *bounds)
    return checked


def _import_smbus2() -> Any:
    try:
        import smbus2
    except ImportError as exc:
        raise BadSensorBackend(
            "cannot import smbus2: {}. The i2c backend needs it: pip install smbus2 (pure "
            "Python; the deployed functions carry it), or apt install python3-smbus2".format(exc)
        ) from exc
    return smbus2
