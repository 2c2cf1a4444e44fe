"""The sense-emu backend: the Sense HAT emulator, for desktop demos."""

from __future__ import annotations

from typing import Optional

from ..clock import Clock
from .sensehat import CPU_TEMP_PATH, SenseHatSensor


class EmulatorSensor(SenseHatSensor):
    """A Sense HAT read through ``sense_emu``, whose GTK window sets the values.

    Meant for desktop demos: turn the sliders and watch alerts fire. It is a
    poor test fixture: headless, its constructor waits a second and tries to
    spawn ``sense_emu_gui``, and its values live in shared memory under
    ``/dev/shm``. Tests use :class:`~agent.sensors.fake.FakeSensor` instead.
    """

    name = "emulator"

    def __init__(
        self,
        clock: Optional[Clock] = None,
        compensation_factor: Optional[float] = None,
        cpu_temp_path: str = CPU_TEMP_PATH,
        with_pressure: bool = True,
    ) -> None:
        super().__init__(
            clock=clock,
            compensation_factor=compensation_factor,
            cpu_temp_path=cpu_temp_path,
            module_name="sense_emu",
            with_pressure=with_pressure,
        )
