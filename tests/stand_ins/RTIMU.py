"""Stand-in for RTIMULib's Python extension ``RTIMU``: the layer under ``sense_hat``.

On a Pi, ``RTIMU`` is a C extension from the OS package (python3-rtimulib) that
talks to the HAT's chips over ``/dev/i2c-1``. This module has the classes and
methods ``sense_hat`` 2.6 calls, and its HTS221 and LPS25H drivers are
RTIMULib's (RPi-Distro/RTIMULib, ``RTIMULib/IMUDrivers/RTHumidityHTS221.cpp``
and ``RTPressureLPS25H.cpp``) ported line for line onto the register-level chip
model (``sense_hat_chips``), so the installed ``sense_hat`` package runs its own
code over chips that behave as the datasheets say:

* ``Settings(path)`` writes ``path + '.ini'`` with defaults when it is missing,
  as RTIMUSettings does (failure to write is silent there too);
* ``humidityInit()`` / ``pressureInit()`` open ``/dev/i2c-1`` for real (as
  ``RTIMUHal::HALOpen`` does) and write the chip's configuration: HTS221
  CTRL_REG1 0x87 (power on, BDU, 12.5 Hz) and AV_CONF 0x1B, then its calibration;
  LPS25H CTRL_REG1 0xC4 (power on, 25 Hz, BDU), RES_CONF 0x05, FIFO_CTRL 0xC0,
  CTRL_REG2 0x40. A bus that cannot be opened or a chip that does not answer
  makes them return False (``OSError('Humidity Init Failed')`` in the library);
* ``humidityRead()`` / ``pressureRead()`` read STATUS_REG and, for each ready
  bit, the outputs; RTIMULib keeps the last value and its validity, so a chip
  is "invalid" (0) only until its first conversion: 80 ms (HTS221) and 40 ms
  (LPS25H) after init, in real time. A failed read answers all-invalid.

The chips come from ``sense_hat_chips.current()``: ``EDGE_AGENT_TEST_I2C``
describes them (environment, noise, a chip absent or stuck).
"""

import os

import sense_hat_chips

I2C_BUS = 1  # RTIMULib's default I2CBus, the Sense HAT's


def _s16(low, high):
    value = low | (high << 8)
    return value - 0x10000 if value & 0x8000 else value


class Settings:
    def __init__(self, path):
        self.path = path
        ini = path + ".ini"
        if not os.path.exists(ini):
            try:
                with open(ini, "w") as handle:
                    handle.write("# RTIMULib settings file (written by the RTIMU stand-in)\n")
                    handle.write("IMUType=0\n")
            except OSError:
                pass  # RTIMUSettings prints an error and goes on with defaults


class _Driver:
    """RTIMUHal's I2C side: one file descriptor for the bus, register reads and writes."""

    address = 0

    def __init__(self, settings):
        self.settings = settings
        self._board = sense_hat_chips.current()
        self._path = self._board.node(I2C_BUS)
        self._fd = None

    def _open(self):
        if self._fd is None:
            try:
                self._fd = os.open(self._path, os.O_RDWR)
            except OSError:
                return False  # "Failed to open I2C bus 1"
        return True

    def _write(self, register, value):
        self._board.select(self._path, self.address)
        self._board.write(self._path, self.address, register, [value])

    def _read(self, register, length):
        self._board.select(self._path, self.address)
        return self._board.read(self._path, self.address, register, length)


class RTHumidity(_Driver):
    """RTHumidityHTS221."""

    address = 0x5F

    def __init__(self, settings):
        super().__init__(settings)
        self._humidity_valid = False
        self._temperature_valid = False
        self._humidity = 0.0
        self._temperature = 0.0

    def humidityInit(self):
        if not self._open():
            return False
        try:
            self._write(0x20, 0x87)  # CTRL_REG1
            self._write(0x10, 0x1B)  # AV_CONF
            msb = self._read(0x35 + 0x80, 1)[0]
            t0 = (((msb & 0x3) << 8) | self._read(0x32 + 0x80, 1)[0]) / 8.0
            t1 = (((msb & 0xC) << 6) | self._read(0x33 + 0x80, 1)[0]) / 8.0
            t0_out = _s16(*self._read(0x3C + 0x80, 2))
            t1_out = _s16(*self._read(0x3E + 0x80, 2))
            h0 = self._read(0x30 + 0x80, 1)[0] / 2.0
            h1 = self._read(0x31 + 0x80, 1)[0] / 2.0
            h0_out = _s16(*self._read(0x36 + 0x80, 2))
            h1_out = _s16(*self._read(0x3A + 0x80, 2))
        except OSError:
            return False
        self._temperature_m = (t1 - t0) / (t1_out - t0_out)
        self._temperature_c = t0 - self._temperature_m * t0_out
        self._humidity_m = (h1 - h0) / (h1_out - h0_out)
        self._humidity_c = h0 - self._humidity_m * h0_out
        return True

    def humidityRead(self):
        if self._fd is None:
            return (0, 0.0, 0, 0.0)
        try:
            status = self._read(0x27, 1)[0]
            if status & 2:
                raw = _s16(*self._read(0x28 + 0x80, 2))
                self._humidity = raw * self._humidity_m + self._humidity_c
                self._humidity_valid = True
            if status & 1:
                raw = _s16(*self._read(0x2A + 0x80, 2))
                self._temperature = raw * self._temperature_m + self._temperature_c
                self._temperature_valid = True
        except OSError:
            return (0, 0.0, 0, 0.0)
        return (
            int(self._humidity_valid),
            self._humidity,
            int(self._temperature_valid),
            self._temperature,
        )


class RTPressure(_Driver):
    """RTPressureLPS25H."""

    address = 0x5C

    def __init__(self, settings):
        super().__init__(settings)
        self._pressure_valid = False
        self._temperature_valid = False
        self._pressure = 0.0
        self._temperature = 0.0

    def pressureInit(self):
        if not self._open():
            return False
        try:
            self._write(0x20, 0xC4)  # CTRL_REG1
            self._write(0x10, 0x05)  # RES_CONF
            self._write(0x2E, 0xC0)  # FIFO_CTRL
            self._write(0x21, 0x40)  # CTRL_REG2
        except OSError:
            return False
        return True

    def pressureRead(self):
        if self._fd is None:
            return (0, 0.0, 0, 0.0)
        try:
            status = self._read(0x27, 1)[0]
            if status & 2:
                xl, low, high = self._read(0x28 + 0x80, 3)
                # RTIMULib reads the 24 bits unsigned: right for any pressure a HAT sees.
                self._pressure = ((high << 16) | (low << 8) | xl) / 4096.0
                self._pressure_valid = True
            if status & 1:
                self._temperature = _s16(*self._read(0x2B + 0x80, 2)) / 480.0 + 42.5
                self._temperature_valid = True
        except OSError:
            return (0, 0.0, 0, 0.0)
        return (
            int(self._pressure_valid),
            self._pressure,
            int(self._temperature_valid),
            self._temperature,
        )


class RTIMU:
    """The LSM9DS1 motion sensor: the agent never reads it; the constructor must work."""

    def __init__(self, settings):
        self.settings = settings

    def IMUInit(self):
        return False

    def IMUGetPollInterval(self):
        return 3
