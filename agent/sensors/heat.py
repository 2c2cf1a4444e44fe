"""CPU-heat compensation of the Sense HAT's temperature, shared by its backends.

The HAT sits over the CPU, so its chips read high. The usual correction is
``t - (t_cpu - t) / factor``, ``t_cpu`` from the thermal zone, with a factor
calibrated per enclosure (1.5 to 2.25 is typical).
"""

from __future__ import annotations

import logging

from ..errors import ConfigError
from .base import valid_or_none

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Optional

log = logging.getLogger(__name__)

CPU_TEMP_PATH = "/sys/class/thermal/thermal_zone0/temp"
# What the chips can physically report (HTS221 and LPS25H: -40 to +120 °C).
TEMPERATURE_RANGE = (-40.0, 120.0)


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

    def correct(self, temperature: float) -> Optional[float]:
        """The compensated temperature (``None`` if out of range); unchanged without a CPU reading."""
        cpu = self.cpu_temperature()
        if cpu is None:
            return temperature
        low, high = TEMPERATURE_RANGE
        return valid_or_none(temperature - (cpu - temperature) / self.factor, low, high)

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
