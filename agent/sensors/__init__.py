"""The sensor shim: one interface, five backends, one seam to choose between them.

* ``i2c``: the Raspberry Pi Sense HAT's HTS221 and LPS25H read over I2C (``smbus2``,
  pure Python: any Python, no RTIMU);
* ``sensehat``: the Raspberry Pi Sense HAT through the ``sense_hat`` library
  (which the LED matrix and joystick need);
* ``emulator``: the sense-emu emulator, headless (driven by a scenario) or its window;
* ``fake``: a simulated sensor playing a scenario (see :data:`agent.sensors.fake.SCENARIOS`);
* ``replay``: a CSV log played back with its recorded timestamps.

As with gpiozero's pin factories, the backend comes from the ``backend``
argument, else ``EDGE_AGENT_SENSOR``, else the machine: on a Raspberry Pi the
Sense HAT, over I2C (``i2c``; the ``sense_hat`` library only when ``smbus2`` is
not installed), where failing to open it is an error, never a quiet fake; the
fake elsewhere, with a warning.
"""

from __future__ import annotations

import logging
import os

from ..clock import Clock
from ..errors import BadSensorBackend, ConfigError
from .base import Reading, Sensor

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Mapping, Optional

log = logging.getLogger(__name__)

BACKENDS = ("i2c", "sensehat", "emulator", "fake", "replay")
ENV_BACKEND = "EDGE_AGENT_SENSOR"
ENV_SCENARIO = "EDGE_AGENT_SCENARIO"
ENV_REPLAY = "EDGE_AGENT_REPLAY"
ENV_SEED = "EDGE_AGENT_SEED"
PI_MODEL_PATH = "/proc/device-tree/model"

__all__ = [
    "BACKENDS",
    "Reading",
    "Sensor",
    "is_raspberry_pi",
    "open_sensor",
]


def is_raspberry_pi(model_path: str = PI_MODEL_PATH) -> bool:
    """Whether the device tree names this machine a Raspberry Pi."""
    try:
        with open(model_path, "rb") as f:
            model = f.read()
    except OSError:
        return False
    return b"Raspberry Pi" in model


def open_sensor(
    backend: Optional[str] = None,
    *,
    clock: Optional[Clock] = None,
    environ: Optional[Mapping[str, str]] = None,
    model_path: str = PI_MODEL_PATH,
    **options: Any,
) -> Sensor:
    """Open the chosen sensor backend; ``options`` go to its constructor.

    ``EDGE_AGENT_SCENARIO``, ``EDGE_AGENT_SEED`` (fake, emulator) and ``EDGE_AGENT_REPLAY``
    (replay path) fill in options not passed explicitly. ``environ`` and
    ``model_path`` stand in for the process environment and the device-tree
    model file in tests.
    """
    environ = os.environ if environ is None else environ
    name = (backend or environ.get(ENV_BACKEND) or "").strip().lower()
    if not name:
        if is_raspberry_pi(model_path):
            name = pi_backend()
        else:
            name = "fake"
            log.warning(
                "not a Raspberry Pi and no sensor backend chosen: using a FAKE sensor "
                "(scenario %s); set %s to one of %s to choose",
                options.get("scenario") or environ.get(ENV_SCENARIO) or "steady",
                ENV_BACKEND,
                ", ".join(BACKENDS),
            )

    # CPU-heat compensation is a property of the chip on the Pi; other backends ignore it.
    compensation = options.pop("compensation_factor", None)
    bus = options.pop("i2c_bus", None)  # the i2cBus variable; only the i2c backend has a bus
    if name == "i2c":
        from .i2c import DEFAULT_BUS, I2CSensor

        return I2CSensor(
            clock=clock,
            bus=DEFAULT_BUS if bus is None else bus,
            compensation_factor=compensation,
            **options,
        )
    if name == "sensehat":
        from .sensehat import SenseHatSensor

        return SenseHatSensor(clock=clock, compensation_factor=compensation, **options)
    if name in ("fake", "emulator"):
        # Both play a scenario: the fake sensor directly, the emulator through sense_emu.
        if environ.get(ENV_SCENARIO):
            options.setdefault("scenario", environ[ENV_SCENARIO].strip())
        if environ.get(ENV_SEED):
            options.setdefault("seed", _seed(environ[ENV_SEED]))
    if name == "emulator":
        from .emulator import EmulatorSensor

        return EmulatorSensor(clock=clock, compensation_factor=compensation, **options)
    if name == "fake":
        from .fake import FakeSensor

        return FakeSensor(clock=clock, **options)
    if name == "replay":
        from .replay import ReplaySensor

        if environ.get(ENV_REPLAY):
            options.setdefault("path", environ[ENV_REPLAY])
        if "path" not in options:
            raise ConfigError("the replay sensor needs a CSV: pass path= or set " + ENV_REPLAY)
        return ReplaySensor(clock=clock, **options)
    raise BadSensorBackend(
        "unknown sensor backend {!r}; use one of {}".format(name, ", ".join(BACKENDS))
    )


def pi_backend() -> str:
    """The Sense HAT backend a Pi gets by default: ``i2c``, unless ``smbus2`` is not installed.

    Both read the same chips, so when the I2C backend cannot reach them the
    ``sense_hat`` library could not either: its error (which says what is missing
    and the fix) is the answer, not another backend. Only a Pi without ``smbus2``,
    which has the library from the OS package, falls back to ``sensehat``.
    """
    import importlib.util

    if importlib.util.find_spec("smbus2") is not None:
        return "i2c"
    log.info("smbus2 is not installed: reading the Sense HAT through the sense_hat library")
    return "sensehat"


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{ENV_SEED} must be an integer, got {text!r}")
