"""CPU-heat compensation of the Sense HAT's temperature, shared by its backends.

The HAT sits over the CPU, so its chips read high. The usual correction is
``t - (t_cpu - t) / factor``, ``t_cpu`` from the thermal zone, with a factor
calibrated per enclosure (1.5 to 2.25 is typical).
"""

from __future__ import annotations

import logging

from ..errors import ConfigError

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Optional

log = logging.getLogger(__name__)

CPU_TEMP_PATH = "/sys/class/thermal/thermal_zone0/temp"
# The coldest the chips can report (HTS221 and LPS25H: -40 to +120 °C). A correction only
# lowers a reading the chip made, so the top of the range needs no check here.
TEMPERATURE_MIN = -40.0
# A Pi's firmware throttles the SoC from 80-85 °C: a thermal zone above this is not the CPU.
CPU_MAX = 100.0


def check_factor(factor: Optional[float]) -> Optional[float]:
    """The factor, or ConfigError when it is not a positive number."""
    if factor is not None and not factor > 0:
        raise ConfigError(f"compensation_factor must be positive, got {factor}")
    return factor


class CpuHeat:
    """Corrects a temperature for the CPU's heat; warns once when the CPU's cannot be read."""

    def __init__(self, factor: float, cpu_temp_path: str = CPU_TEMP_PATH) -> None:
        self.factor = factor
        self.cpu_temp_path = cpu_temp_path
        self._warned = False
        self._bogus = False  # the last CPU value was not believable (warned once per spell)

    def correct(self, temperature: float) -> Optional[float]:
        """The compensated temperature; unchanged without a CPU reading; ``None`` (missing)
        when the result is out of range or the CPU's value is not believable.

        The CPU heats the chips, so a CPU colder than the chip, or hotter than
        :data:`CPU_MAX`, is a bogus thermal value (0 from a zone not ready, degrees written
        as millidegrees): corrected with it, the reading would be an impossible temperature
        or a false breach.
        """
        cpu = self.cpu_temperature()
        if cpu is None:
            return temperature
        if not temperature <= cpu <= CPU_MAX:
            if not self._bogus:
                log.warning(
                    "the CPU temperature from %s is %g °C with the chip at %g °C: not believable; "
                    "temperature readings are missing until it is",
                    self.cpu_temp_path,
                    cpu,
                    temperature,
                )
            self._bogus = True
            return None
        self._bogus = False
        corrected = temperature - (cpu - temperature) / self.factor
        return corrected if corrected >= TEMPERATURE_MIN else None

    def cpu_temperature(self) -> Optional[float]:
        try:
            with open(self.cpu_temp_path) as f:
                return int(f.read().strip()) / 1000.0
        except (OSError, ValueError) as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot read the CPU temperature from %s (%s); temperature is not compensated",
                    self.cpu_temp_path,
                    exc,
                )
            return None
