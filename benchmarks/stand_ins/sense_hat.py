"""A stand-in for the ``sense_hat`` library over a simulated HTS221 / LPS25H.

The benchmarks install it as ``sense_hat`` (in ``sys.modules``, or first on a
child's ``PYTHONPATH``) so the project's ``SenseHatSensor`` and the seed's
functions read the same chip. It keeps the library's shape for the calls both
make: ``get_temperature`` is the HTS221's temperature via ``humidityRead()``,
``get_humidity`` the HTS221's humidity, ``get_pressure`` the LPS25H's, each a
validity-flagged tuple from the chip, 0 for a sample the chip marked invalid;
``clear`` blanks the LED matrix. It does not load numpy or Pillow as the real
library does (on a Pi both functions would pay for them alike).

The chip reads fixed values (``EDGE_BENCH_CHIP="t,h,p"``, default 22, 40,
1013) or whatever ``CHIP.source()`` returns: a ``(t, h, p)`` tuple, ``None``
for an invalid sample.
"""

import os


class Chip:
    """What the sensors report; ``source`` (a callable) overrides the fixed values."""

    def __init__(self, temperature=22.0, humidity=40.0, pressure=1013.0, source=None):
        self.values = (temperature, humidity, pressure)
        self.source = source
        self.reads = 0

    def sample(self):
        self.reads += 1
        return self.source() if self.source is not None else self.values


def chip_from_environ(environ=os.environ):
    text = environ.get("EDGE_BENCH_CHIP", "")
    if not text:
        return Chip()
    t, h, p = (float(part) for part in text.split(","))
    return Chip(t, h, p)


CHIP = chip_from_environ()


class SenseHat:
    def __init__(self):
        self._chip = CHIP
        self._pixels = [[0, 0, 0]] * 64

    def _humidity_read(self):
        t, h, _ = self._chip.sample()
        return (h is not None, h or 0, t is not None, t or 0)

    def _pressure_read(self):
        t, _, p = self._chip.sample()
        return (p is not None, p or 0, t is not None, t or 0)

    def get_humidity(self):
        data = self._humidity_read()
        return data[1] if data[0] else 0

    def get_temperature_from_humidity(self):
        data = self._humidity_read()
        return data[3] if data[2] else 0

    def get_temperature(self):
        return self.get_temperature_from_humidity()

    def get_pressure(self):
        data = self._pressure_read()
        return data[1] if data[0] else 0

    def clear(self, *colour):
        self._pixels = [list(colour[0]) if colour else [0, 0, 0]] * 64
