"""A Sense HAT on an I2C bus, in this process: the chip model as ``smbus2``, in virtual time.

``chip_model()`` imports ``tests/stand_ins/sense_hat_chips.py`` under the name the
stand-ins import it by. :class:`PiBus` builds a board on a virtual clock with its
``/dev`` in a temporary folder (``i2c-N`` nodes are regular files, opened for
real), installs it, and puts ``tests/stand_ins/i2c_bus`` first on ``sys.path``,
so the agent's ``import smbus2`` finds the stand-in by the ordinary import path.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
STAND_INS = os.path.join(HERE, "stand_ins")
FAKE_SMBUS2_DIR = os.path.join(STAND_INS, "i2c_bus")


def chip_model() -> Any:
    """The ``sense_hat_chips`` module (one per process, as the stand-ins see it)."""
    module = sys.modules.get("sense_hat_chips")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "sense_hat_chips", os.path.join(STAND_INS, "sense_hat_chips.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["sense_hat_chips"] = module
        spec.loader.exec_module(module)
    return module


class PiBus:
    """The board, its clock and its ``/dev``; ``close()`` puts ``smbus2`` back as it was."""

    def __init__(self, tmp_path: Any, clock: Any, bus: int = 1, nodes: Any = (1,), **spec: Any):
        self.model = chip_model()
        self.clock = clock
        self.dev = tmp_path / "dev"
        self.dev.mkdir(exist_ok=True)
        for n in nodes:
            (self.dev / "i2c-{}".format(n)).write_bytes(b"")
        spec.update(bus=bus, dev=str(self.dev))
        self.board = self.model.install(self.model.from_spec(spec, clock=clock.monotonic))
        self._saved_smbus2: Optional[Any] = sys.modules.pop("smbus2", None)
        sys.path.insert(0, FAKE_SMBUS2_DIR)
        importlib.invalidate_caches()

    @property
    def hts221(self) -> Any:
        return self.board.hts221

    @property
    def lps25h(self) -> Any:
        return self.board.lps25h

    def close(self) -> None:
        if FAKE_SMBUS2_DIR in sys.path:
            sys.path.remove(FAKE_SMBUS2_DIR)
        sys.modules.pop("smbus2", None)
        if self._saved_smbus2 is not None:
            sys.modules["smbus2"] = self._saved_smbus2
        self.model.install(None)
