"""The sensor shim: one interface, four backends, one seam to choose between them.

* ``sensehat``: the Raspberry Pi Sense HAT (the ``sense_hat`` library);
* ``emulator``: the sense-emu emulator, headless (driven by a scenario) or its window;
* ``fake``: a simulated sensor playing a scenario (see :data:`agent.sensors.fake.SCENARIOS`);
* ``replay``: a CSV log played back with its recorded timestamps.

As with gpiozero's pin factories, the backend comes from the ``backend``
argument, else ``EDGE_AGENT_SENSOR``, else the machine: the Sense HAT on a
Raspberry Pi, where failing to open it is an error, never a quiet fake; the
fake elsewhere, with a warning.
"""

from __future__ import annotations

import logging
import os

from ..clock import Clock
from ..errors import BadSensorBackend, ConfigError
from .base import Reading, Sensor

TYPE_CHECKING = False  # typing costs a cold start ~4 ms (issue 15); mypy reads this block
if TYPE_CHECKING:
    from typing import Any, Mapping, Optional

log = logging.getLogger(__name__)

BACKENDS = ("sensehat", "emulator", "fake", "replay")
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
            name = "sensehat"
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


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{ENV_SEED} must be an integer, got {text!r}")
