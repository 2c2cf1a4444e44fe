"""Stand-in for RTIMULib's Python extension ``RTIMU``: the layer under ``sense_hat``.

On a Pi, ``RTIMU`` is a C extension from the OS package (python3-rtimulib) that
talks to the HAT's chips over ``/dev/i2c-1``. This module has the same classes
and methods ``sense_hat`` 2.6 calls and simulates what the chips do, so the
installed ``sense_hat`` package runs its own code on top of it:

* ``Settings(path)`` writes ``path + '.ini'`` with defaults when it is missing,
  as RTIMUSettings does (failure to write is silent there too);
* ``humidityInit()`` / ``pressureInit()`` open the I2C bus and fail (return
  False, which the library turns into ``OSError('Humidity Init Failed')``)
  when the bus cannot be opened or the chip is told to be absent;
* ``humidityRead()`` answers ``(humidityValid, humidity, temperatureValid,
  temperature)`` and ``pressureRead()`` ``(pressureValid, pressure,
  temperatureValid, temperature)``: the first answer after init has no sample
  (invalid, zeros), as a freshly started HTS221/LPS25H does;
* values come from a script, with gaussian noise from a seed.

The script is JSON in the environment variable ``EDGE_AGENT_TEST_CHIP``::

    {"hts221": {"init": true, "answers": [[valid_h, h, valid_t, t], ...]},
     "lps25h": {"init": true, "answers": [[valid_p, p, valid_t, t], ...]},
     "noise": 0.0, "seed": 1}

``answers`` start with the first read after init; the last one repeats.
Without a script the chips answer 41 %RH, 21.5 °C and 1012 hPa.
"""

import json
import os
import random

I2C_BUS = "/dev/i2c-1"
_DEFAULT = {
    "hts221": {"init": True, "answers": [[0, 0.0, 0, 0.0], [1, 41.0, 1, 21.5]]},
    "lps25h": {"init": True, "answers": [[0, 0.0, 0, 0.0], [1, 1012.0, 1, 20.0]]},
    "noise": 0.0,
    "seed": 1,
}
_DEFAULT_INI = "# RTIMULib settings file (written by the RTIMU stand-in)\nIMUType=0\n"


def _script():
    text = os.environ.get("EDGE_AGENT_TEST_CHIP")
    if not text:
        return _DEFAULT
    return dict(_DEFAULT, **json.loads(text))


class Settings:
    def __init__(self, path):
        self.path = path
        ini = path + ".ini"
        if not os.path.exists(ini):
            try:
                with open(ini, "w") as handle:
                    handle.write(_DEFAULT_INI)
            except OSError:
                pass  # RTIMUSettings prints an error and goes on with defaults


class _Chip:
    key = ""

    def __init__(self, settings):
        self.settings = settings
        script = _script()
        self._chip = script[self.key]
        self._noise = float(script.get("noise", 0.0))
        self._rng = random.Random(script.get("seed", 1))
        self._answers = 0
        self._bus = None

    def _init(self):
        try:
            # What RTIMULib opens; held for the chip's life, like its file descriptor.
            self._bus = open(I2C_BUS, "r+b", buffering=0)  # noqa: SIM115
        except OSError:
            return False  # "Failed to open I2C bus"
        self._answers = 0
        return bool(self._chip.get("init", True))

    def _read(self):
        if self._bus is None:
            return (0, 0.0, 0, 0.0)
        answers = self._chip["answers"]
        valid_a, a, valid_b, b = answers[min(self._answers, len(answers) - 1)]
        self._answers += 1
        if valid_a and self._noise:
            a += self._rng.gauss(0.0, self._noise)
        if valid_b and self._noise:
            b += self._rng.gauss(0.0, self._noise)
        return (valid_a, a if valid_a else 0.0, valid_b, b if valid_b else 0.0)


class RTHumidity(_Chip):
    key = "hts221"

    def humidityInit(self):
        return self._init()

    def humidityRead(self):
        return self._read()


class RTPressure(_Chip):
    key = "lps25h"

    def pressureInit(self):
        return self._init()

    def pressureRead(self):
        return self._read()


class RTIMU:
    """The LSM9DS1 motion sensor: the agent never reads it; the constructor must work."""

    def __init__(self, settings):
        self.settings = settings

    def IMUInit(self):
        return False

    def IMUGetPollInterval(self):
        return 3
