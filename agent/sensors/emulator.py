"""The sense-emu backend: a Sense HAT read through ``sense_emu``, headless, driven by a scenario.

``sense_emu`` keeps the emulated chips' registers in shared memory
(``/dev/shm/rpi-sense-emu-*``); its GTK window (``sense_emu_gui``) normally
writes them, through ``HumidityServer`` and ``PressureServer``, while it holds
the ``EmulatorLock``, and ``sense_emu.SenseHat()`` spawns that window when no
one holds the lock. On a laptop or in CI there is no display, so this backend
runs the emulator's shared state itself: it takes the lock, starts the two
servers with the emulator's own noise model (HTS221/LPS25H accuracy, averaged
over the chips' response time) and moves their values along a fake-sensor
scenario (:data:`agent.sensors.fake.SCENARIOS`). The readings then come
through ``sense_emu``'s real API, as they would from the window's sliders.

If ``sense_emu_gui`` (or ``sense_play``) already holds the lock, it drives the
values and the scenario is not used.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any, Optional

from ..clock import Clock
from ..errors import SensorError
from .fake import get_scenario
from .heat import CPU_TEMP_PATH
from .sensehat import SenseHatSensor, describe, open_library

log = logging.getLogger(__name__)

DRIVE_INTERVAL = 0.1  # seconds between scenario updates; the servers sample every 0.04-0.13 s

_EMULATOR_HINT = (
    "The emulator keeps its state in /dev/shm/rpi-sense-emu-*: check that directory is "
    "writable, and that no other sense_emu program that stopped driving it still holds the "
    "lock (/dev/shm/rpi-sense-emu-pid)."
)


class HeadlessEmulator:
    """What ``sense_emu_gui`` does for the environmental sensors, without a window.

    ``scenario`` gives the true temperature, humidity and pressure over time
    (on ``clock``); the emulator's servers add their noise and response time.
    """

    def __init__(
        self,
        scenario: str = "steady",
        seed: Optional[int] = None,
        clock: Optional[Clock] = None,
        interval: float = DRIVE_INTERVAL,
    ) -> None:
        from sense_emu.humidity import HumidityServer
        from sense_emu.lock import EmulatorLock
        from sense_emu.pressure import PressureServer

        self.scenario = get_scenario(scenario)
        self.clock = clock or Clock()
        self.start = self.clock.time()
        self._rng = random.Random(seed)
        self._interval = interval
        self._lock = EmulatorLock("edge-agent")
        self._lock.acquire()
        self._humidity: Any = None
        self._pressure: Any = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        try:
            temperature, humidity, pressure = self._true_values()
            # Start the servers at the scenario's values: each one begins its noise
            # queue from what the shared memory holds, so prime it without noise.
            for server_type, a in ((HumidityServer, humidity), (PressureServer, pressure)):
                primer = server_type(simulate_noise=False)
                primer.set_values(a, temperature)
                primer.close()
            self._humidity = HumidityServer(simulate_noise=True)
            self._pressure = PressureServer(simulate_noise=True)
        except BaseException:
            self.close()
            raise
        self._thread = threading.Thread(target=self._drive, name="sense-emu-driver", daemon=True)
        self._thread.start()

    def elapsed(self) -> float:
        return max(0.0, self.clock.time() - self.start)

    def _true_values(self) -> Any:
        # The scenario's clean curve: the emulator adds the chips' own noise.
        return self.scenario.profile(self.elapsed(), self._rng, 0.0)

    def _drive(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                temperature, humidity, pressure = self._true_values()
                self._humidity.set_values(humidity, temperature)
                self._pressure.set_values(pressure, temperature)
            except Exception as exc:  # never kill the thread: the readings just stop moving
                log.warning("emulator: could not update the emulated chips: %s", describe(exc))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        for server in (self._humidity, self._pressure):
            if server is not None:
                server.close()
        self._humidity = self._pressure = None
        if self._lock.mine:
            self._lock.release()


def emulator_is_driven() -> bool:
    """Whether a live process (``sense_emu_gui``, ``sense_play``, another agent) holds the lock."""
    from sense_emu.lock import EmulatorLock

    driven: bool = EmulatorLock("edge-agent").wait(0)
    return driven


class EmulatorSensor(SenseHatSensor):
    """A Sense HAT read through ``sense_emu``: headless, or from a running ``sense_emu_gui``.

    ``scenario`` and ``seed`` choose the story the headless emulator plays (see
    :data:`agent.sensors.fake.SCENARIOS`); they are ignored, with a log line,
    when a window drives the emulator.
    """

    name = "emulator"
    description = "Sense HAT emulator"

    def __init__(
        self,
        clock: Optional[Clock] = None,
        compensation_factor: Optional[float] = None,
        cpu_temp_path: str = CPU_TEMP_PATH,
        with_pressure: bool = True,
        scenario: Optional[str] = None,
        seed: Optional[int] = None,
    ) -> None:
        if scenario is not None:
            get_scenario(scenario)  # an unknown name is a ConfigError, before anything starts
        self._scenario = scenario
        self._seed = seed
        self.driver: Optional[HeadlessEmulator] = None
        super().__init__(
            clock=clock,
            compensation_factor=compensation_factor,
            cpu_temp_path=cpu_temp_path,
            module_name="sense_emu",
            with_pressure=with_pressure,
        )

    def _open(self) -> Any:
        try:
            import sense_emu  # noqa: F401  (fail early with the install hint)
        except ImportError:
            return open_library(self.module_name, lambda: _EMULATOR_HINT)
        if emulator_is_driven():
            log.info(
                "emulator: another program (sense_emu_gui?) drives the emulator; %s",
                "scenario {!r} is not used".format(self._scenario)
                if self._scenario
                else "reading its values",
            )
        else:
            try:
                self.driver = HeadlessEmulator(
                    self._scenario or "steady", seed=self._seed, clock=self.clock
                )
            except OSError as exc:
                raise SensorError(
                    "cannot run the headless Sense HAT emulator: {}. {}".format(
                        describe(exc), _EMULATOR_HINT
                    )
                ) from exc
            log.info("emulator: driving it headless with scenario %r", self.driver.scenario.name)
        try:
            return open_library(self.module_name, lambda: _EMULATOR_HINT)
        except BaseException:
            self._stop_driver()
            raise

    def _read_hint(self, exc: BaseException) -> str:
        return _EMULATOR_HINT

    def close(self) -> None:
        # sense_emu's joystick client pings its server from a thread that does not
        # survive its socket being closed, so the library object is only dropped.
        self._hat = None
        self._stop_driver()

    def _stop_driver(self) -> None:
        driver, self.driver = self.driver, None
        if driver is not None:
            driver.close()
