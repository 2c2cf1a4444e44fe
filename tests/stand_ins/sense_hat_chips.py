"""A register-level model of the Sense HAT's environmental chips on its I2C bus.

ST's HTS221 (humidity and temperature, address 0x5F) and LPS25H (pressure and
temperature, address 0x5C), written from their datasheets, not from any driver:

* HTS221: datasheet DocID026333 (section 7, "Register mapping"; section 8,
  "Register description") and TN1218 "Interpreting humidity and temperature
  readings in the HTS221 digital humidity sensor";
* LPS25H: datasheet DocID023722 (sections 6-7, "Register mapping" and
  "Register description").

What the model does, as the datasheets describe it:

* power-down after power-on: no conversion until CTRL_REG1's PD bit (7) is set;
* ODR bits of CTRL_REG1 choose one-shot mode (0) or continuous conversions at
  1 / 7 / 12.5 Hz (and 25 Hz on the LPS25H); the first continuous sample is
  ready one period after PD is set (80 ms for the HTS221 at 12.5 Hz, 40 ms for
  the LPS25H at 25 Hz); in one-shot mode, writing CTRL_REG2's ONE_SHOT bit (0)
  starts one conversion, and the bit clears itself when it is done. The
  datasheets give no one-shot conversion time; the model takes the fastest
  ODR's period (``one_shot_seconds``, settable);
* STATUS_REG (0x27): bit 1 (humidity / pressure) and bit 0 (temperature) are set
  when a sample is ready and cleared when the *high* output byte is read
  (HUMIDITY_OUT_H 0x29, TEMP_OUT_H 0x2B; PRESS_OUT_H 0x2A, TEMP_OUT_H 0x2C); the
  LPS25H's overrun bits (5 pressure, 4 temperature) are set when a sample
  replaces one nobody read;
* BDU (CTRL_REG1 bit 2): once a low byte is read, the outputs are not updated
  until the high byte is read too;
* a multi-byte read or write increments the register address only when bit 7 of
  the sub-address is set; without it, every byte is the same register again;
* WHO_AM_I (0x0F): 0xBC (HTS221), 0xBD (LPS25H);
* the HTS221's factory calibration in 0x30-0x3F (two points each for humidity
  and temperature; T0/T1 in 1/8 °C with their bits 9:8 in 0x35, H0/H1 in 1/2
  %RH): the model produces the raw output a chip with that calibration gives
  for the environment's true value, so the datasheet's linear interpolation
  gives the environment back, to the chip's resolution. The LPS25H is
  calibrated inside the chip: its outputs are hPa x 4096 (24-bit two's
  complement) and 42.5 °C + raw / 480.

Not modelled: interrupts and the DRDY pin, the LPS25H's FIFO (samples go straight
to the outputs; FIFO mean mode is not averaged), the heater, reference pressure
and auto-zero, SPI.

Three ways to use it:

* programmatically: ``board = SenseHatBoard(clock=..., dev=...)`` then
  ``board.environment.update(temperature=...)``, ``board.hts221.registers`` ...;
  ``install(board)`` makes it the board the stand-ins below talk to;
* as ``smbus2``: put ``tests/stand_ins/i2c_bus`` first on ``sys.path``, and code
  that does ``import smbus2; smbus2.SMBus(1)`` talks to this model, unchanged;
* under ``tests/stand_ins/RTIMU.py``, RTIMULib's HTS221/LPS25H drivers ported
  onto this model, so the installed ``sense_hat`` library reads it.

In another process, the board comes from the environment variable
``EDGE_AGENT_TEST_I2C`` (JSON; every key optional)::

    {"bus": 1,                      # the I2C bus the HAT is on (/dev/i2c-1)
     "dev": "/dev",                 # where the i2c-N nodes are opened (for real)
     "environment": {"temperature": 21.5, "humidity": 41.0, "pressure": 1012.0},
     "environment_file": "/path/env.json",  # re-read when it changes: values while running
     "noise": 0.0, "seed": 1,       # gaussian noise (physical units) per conversion
     "hts221": {"present": true, "who_am_i": 188, "stuck": false, "busy": false,
                "calibration": {"H0_rH_x2": ..., "T0_degC_x8": ..., ...},
                "one_shot_seconds": 0.08},
     "lps25h": {...the same keys, but "temperature_offset" (°C, default -1.9) for
                calibration...}}

``present: false`` is a chip that does not acknowledge its address (the ioctl
fails with EREMOTEIO, as the Pi's i2c-bcm2835 driver reports a NACK), ``busy``
one a kernel driver has claimed (EBUSY when the address is selected), ``stuck``
one that never finishes a conversion. The file named by ``environment_file``
holds an object like ``environment``; it is read again at each conversion when
its modification time changed.

To run a deployed sensor function or component against the model (in a Pi's
userland, say): copy ``sense_hat_chips.py`` and ``i2c_bus/smbus2.py`` side by side
(or keep this layout), put the folder holding ``smbus2.py`` *before* the
artifact's own vendored ``smbus2`` on ``PYTHONPATH``, create the ``i2c-1`` node
as an empty file under ``dev`` (``/dev/i2c-1`` itself, or a folder named in
``EDGE_AGENT_TEST_I2C``), and set the values there; ``EDGE_AGENT_SENSOR=i2c`` is
what the topology gives the sensor already.

Python 3.8 and up, standard library only: it also runs in a Pi's userland.
"""

import errno
import json
import os
import random
import threading
import time

ENV_SPEC = "EDGE_AGENT_TEST_I2C"
AUTO_INCREMENT = 0x80  # bit 7 of the sub-address
STATUS_REG = 0x27
WHO_AM_I = 0x0F
CTRL_REG1 = 0x20
CTRL_REG2 = 0x21
PD = 0x80
BDU = 0x04
ONE_SHOT = 0x01

# An HTS221's calibration, unlike the datasheet's and TN1218's examples: both
# temperature points use bits 9:8 (in 0x35, whose reserved bits 7:4 are set),
# T0_OUT and H0_T0_OUT are negative.
HTS221_CALIBRATION = {
    "H0_rH_x2": 57,  # 28.5 %RH
    "H1_rH_x2": 151,  # 75.5 %RH
    "T0_degC_x8": 259,  # 32.375 °C
    "T1_degC_x8": 572,  # 71.5 °C
    "H0_T0_OUT": -6205,
    "H1_T0_OUT": 11942,
    "T0_OUT": -1473,
    "T1_OUT": 5813,
    "reserved_0x35": 0xA0,  # bits 7:4 of T1/T0 msb: reserved, not zero on this chip
}


def _i16(value):
    return max(-32768, min(32767, int(round(value))))


def _le(value, size):
    return [(value >> (8 * i)) & 0xFF for i in range(size)]


class Environment:
    """What the chips measure: °C, %RH, hPa. ``update()`` changes it; a file may drive it."""

    def __init__(self, temperature=21.5, humidity=41.0, pressure=1012.0, path=None):
        self.temperature = float(temperature)
        self.humidity = float(humidity)
        self.pressure = float(pressure)
        self.path = path
        self._stamp = None
        self._listeners = []

    def update(self, **values):
        """Set values; the chips first finish every conversion due before now."""
        for listener in self._listeners:
            listener()
        for name, value in values.items():
            if name not in ("temperature", "humidity", "pressure"):
                raise TypeError("unknown environment value {!r}".format(name))
            setattr(self, name, float(value))

    def refresh(self):
        """Read ``path`` again if it changed (a JSON object with any of the three values)."""
        if not self.path:
            return
        try:
            stat = os.stat(self.path)
        except OSError:
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            with open(self.path) as handle:
                values = json.load(handle)
        except (OSError, ValueError):
            return  # half-written: read it next time
        self._stamp = stamp
        for name in ("temperature", "humidity", "pressure"):
            if name in values:
                setattr(self, name, float(values[name]))


class Chip:
    """A register file with ST's I2C sub-address rules and lazily evaluated conversions."""

    name = "chip"
    address = 0
    who_am_i = 0
    odr_periods = {}  # ODR field value -> seconds between samples
    one_shot_seconds = 0.0
    odr_shift = 0
    odr_mask = 0
    groups = {}  # output group -> (registers low to high, status bit)
    writable = ()
    defaults = {}

    def __init__(
        self, board, present=True, who_am_i=None, stuck=False, busy=False, one_shot_seconds=None
    ):
        self.board = board
        self.present = present
        self.stuck = stuck
        self.busy = busy
        if who_am_i is not None:
            self.who_am_i = who_am_i
        if one_shot_seconds is not None:
            self.one_shot_seconds = float(one_shot_seconds)
        self.registers = bytearray(128)
        for register, value in self.defaults.items():
            self.registers[register] = value
        self.registers[WHO_AM_I] = self.who_am_i
        self.writes = []  # (register, value) as written, for tests
        self.violations = []  # writes a driver must not make (read-only or reserved registers)
        self.conversions = 0
        self._powered_at = None  # monotonic time PD was set; None: powered down
        self._next_sample = None  # continuous mode: when the next sample is ready
        self._one_shot_done = None  # one-shot mode: when the running conversion ends
        self._read_parts = {group: set() for group in self.groups}
        self._held = {}  # BDU: group -> bytes waiting for the high byte to be read

    # --- bus side ---------------------------------------------------------------

    def read(self, sub_address, length):
        """``length`` bytes from ``sub_address`` (auto-increment only with bit 7 set)."""
        self._advance()
        register = sub_address & 0x7F
        step = 1 if sub_address & AUTO_INCREMENT else 0
        out = []
        for _ in range(length):
            out.append(self.registers[register])
            self._after_read(register)
            register = (register + step) & 0x7F
        return out

    def write(self, sub_address, data):
        self._advance()
        register = sub_address & 0x7F
        step = 1 if sub_address & AUTO_INCREMENT else 0
        for value in data:
            self._write_register(register, value & 0xFF)
            register = (register + step) & 0x7F

    # --- behaviour ----------------------------------------------------------------

    @property
    def powered(self):
        return self._powered_at is not None

    def _write_register(self, register, value):
        self.writes.append((register, value))
        if register not in self.writable:
            self.violations.append((register, value))
            return  # read-only or reserved: the chip keeps its value
        old = self.registers[register]
        self.registers[register] = value
        if register == CTRL_REG1:
            self._ctrl1_changed(old, value)
        elif register == CTRL_REG2 and value & ONE_SHOT:
            self._start_one_shot()

    def _odr(self):
        return (self.registers[CTRL_REG1] >> self.odr_shift) & self.odr_mask

    def _ctrl1_changed(self, old, new):
        now = self.board.now()
        if new & PD and not old & PD:
            self._powered_at = now
        elif not new & PD:
            self._powered_at = None
            self._next_sample = None
            return
        period = self.odr_periods.get(self._odr())
        if period and (
            self._next_sample is None or (old ^ new) & (self.odr_mask << self.odr_shift)
        ):
            self._next_sample = now + period
        elif not period:
            self._next_sample = None

    def _start_one_shot(self):
        # Only a powered chip in one-shot mode (ODR 0) converts; otherwise the bit stays set.
        if self.powered and self._odr() == 0 and self._one_shot_done is None:
            self._one_shot_done = self.board.now() + self.one_shot_seconds

    def _advance(self):
        """Finish every conversion due by now, in order."""
        if self.stuck or not self.powered:
            return
        now = self.board.now()
        if self._one_shot_done is not None and now >= self._one_shot_done:
            self._one_shot_done = None
            self.registers[CTRL_REG2] &= ~ONE_SHOT & 0xFF
            self._sample()
        period = self.odr_periods.get(self._odr())
        if period and self._next_sample is not None and now >= self._next_sample:
            missed = int((now - self._next_sample) // period)
            if missed:  # samples nobody could read came and went
                for group in self.groups:
                    self._overrun(group)
            self._next_sample += (missed + 1) * period
            self._sample()

    def _sample(self):
        self.conversions += 1
        self.board.environment.refresh()
        values = self._convert(self.board.environment)
        bdu = self.registers[CTRL_REG1] & BDU
        for group, data in values.items():
            registers, bit = self.groups[group]
            if self.registers[STATUS_REG] & bit:
                self._overrun(group)
            parts = self._read_parts[group]
            if bdu and parts:
                self._held[group] = data  # a low byte was read: wait for the high one
            else:
                self._store(group, data)
            self.registers[STATUS_REG] |= bit

    def _store(self, group, data):
        registers, _ = self.groups[group]
        for register, value in zip(registers, data):
            self.registers[register] = value

    def _after_read(self, register):
        for group, (registers, bit) in self.groups.items():
            if register not in registers:
                continue
            if register == registers[-1]:  # the high byte
                self.registers[STATUS_REG] &= ~bit & 0xFF
                self._clear_overrun(group)
                self._read_parts[group].clear()
                held = self._held.pop(group, None)
                if held is not None:
                    self._store(group, held)
            else:
                self._read_parts[group].add(register)

    def _overrun(self, group):
        """A sample replaced one nobody read (the LPS25H reports it; the HTS221 does not)."""

    def _clear_overrun(self, group):
        """Reading the high byte clears the overrun bit too."""

    def _convert(self, environment):
        raise NotImplementedError


class HTS221(Chip):
    """ST HTS221 humidity and temperature sensor (DocID026333, TN1218)."""

    name = "HTS221"
    address = 0x5F
    who_am_i = 0xBC
    AV_CONF = 0x10
    odr_periods = {1: 1.0, 2: 1.0 / 7.0, 3: 1.0 / 12.5}  # CTRL_REG1 ODR1:0
    one_shot_seconds = 1.0 / 12.5
    odr_shift = 0
    odr_mask = 0x03
    groups = {"humidity": ((0x28, 0x29), 0x02), "temperature": ((0x2A, 0x2B), 0x01)}
    writable = (AV_CONF, CTRL_REG1, CTRL_REG2, 0x22)
    defaults = {AV_CONF: 0x1B}  # AVGT 16, AVGH 32

    def __init__(self, board, calibration=None, **options):
        super().__init__(board, **options)
        self.calibration = dict(HTS221_CALIBRATION, **(calibration or {}))
        self._burn_calibration()

    def _burn_calibration(self):
        c = self.calibration
        t0, t1 = int(c["T0_degC_x8"]), int(c["T1_degC_x8"])
        registers = {
            0x30: int(c["H0_rH_x2"]),
            0x31: int(c["H1_rH_x2"]),
            0x32: t0 & 0xFF,
            0x33: t1 & 0xFF,
            0x34: 0x5A,  # reserved
            0x35: (int(c.get("reserved_0x35", 0)) & 0xF0) | ((t1 >> 8) & 3) << 2 | ((t0 >> 8) & 3),
            0x38: 0xC3,  # reserved
            0x39: 0x7E,  # reserved
        }
        for base, name in (
            (0x36, "H0_T0_OUT"),
            (0x3A, "H1_T0_OUT"),
            (0x3C, "T0_OUT"),
            (0x3E, "T1_OUT"),
        ):
            low, high = _le(int(c[name]) & 0xFFFF, 2)
            registers[base], registers[base + 1] = low, high
        for register, value in registers.items():
            self.registers[register] = value

    def _convert(self, environment):
        c = self.calibration
        t0, t1 = c["T0_degC_x8"] / 8.0, c["T1_degC_x8"] / 8.0
        h0, h1 = c["H0_rH_x2"] / 2.0, c["H1_rH_x2"] / 2.0
        temperature = environment.temperature + self.board.noise()
        humidity = environment.humidity + self.board.noise()
        t_out = _i16(c["T0_OUT"] + (temperature - t0) * (c["T1_OUT"] - c["T0_OUT"]) / (t1 - t0))
        h_out = _i16(
            c["H0_T0_OUT"] + (humidity - h0) * (c["H1_T0_OUT"] - c["H0_T0_OUT"]) / (h1 - h0)
        )
        return {"humidity": _le(h_out & 0xFFFF, 2), "temperature": _le(t_out & 0xFFFF, 2)}


class LPS25H(Chip):
    """ST LPS25H pressure and temperature sensor (DocID023722)."""

    name = "LPS25H"
    address = 0x5C
    who_am_i = 0xBD
    RES_CONF = 0x10
    FIFO_CTRL = 0x2E
    odr_periods = {1: 1.0, 2: 1.0 / 7.0, 3: 1.0 / 12.5, 4: 1.0 / 25.0}  # CTRL_REG1 ODR2:0
    one_shot_seconds = 1.0 / 25.0
    odr_shift = 4
    odr_mask = 0x07
    groups = {"pressure": ((0x28, 0x29, 0x2A), 0x02), "temperature": ((0x2B, 0x2C), 0x01)}
    # REF_P_XL/L/H, RES_CONF, CTRL_REG1-4, INT_CFG, THS_P_L/H, FIFO_CTRL, RPDS_L/H
    writable = (
        0x08,
        0x09,
        0x0A,
        RES_CONF,
        CTRL_REG1,
        CTRL_REG2,
        0x22,
        0x23,
        0x24,
        0x30,
        0x31,
        FIFO_CTRL,
        0x39,
        0x3A,
    )
    defaults = {RES_CONF: 0x0F}
    OVERRUN = {"pressure": 0x20, "temperature": 0x10}

    def __init__(self, board, temperature_offset=-1.9, **options):
        # The LPS25H sits nearer the CPU: it reads about 2 °C apart from the HTS221.
        super().__init__(board, **options)
        self.temperature_offset = float(temperature_offset)

    def _convert(self, environment):
        pressure = int(round((environment.pressure + self.board.noise()) * 4096.0))
        pressure = max(-(1 << 23), min((1 << 23) - 1, pressure))
        temperature = environment.temperature + self.temperature_offset + self.board.noise()
        t_out = _i16((temperature - 42.5) * 480.0)
        return {"pressure": _le(pressure & 0xFFFFFF, 3), "temperature": _le(t_out & 0xFFFF, 2)}

    def _overrun(self, group):
        self.registers[STATUS_REG] |= self.OVERRUN[group]

    def _clear_overrun(self, group):
        self.registers[STATUS_REG] &= ~self.OVERRUN[group] & 0xFF


class SenseHatBoard:
    """The two chips on one I2C bus, one environment, one clock.

    ``clock`` is a function returning monotonic seconds (default
    ``time.monotonic``; a test passes its virtual clock's). ``dev`` is where the
    ``i2c-N`` nodes are opened, for real, so a missing node or one the user may
    not open fails as it does on a Pi.
    """

    def __init__(
        self,
        environment=None,
        clock=None,
        bus=1,
        dev="/dev",
        noise=0.0,
        seed=1,
        hts221=None,
        lps25h=None,
    ):
        self.environment = environment or Environment()
        self.now = clock or time.monotonic
        self.bus = int(bus)
        self.dev = dev
        self._noise = float(noise)
        self._rng = random.Random(seed)
        self.lock = threading.RLock()
        self.hts221 = HTS221(self, **(hts221 or {}))
        self.lps25h = LPS25H(self, **(lps25h or {}))
        self.chips = {self.hts221.address: self.hts221, self.lps25h.address: self.lps25h}
        self.environment._listeners.append(self.settle)

    def noise(self):
        return self._rng.gauss(0.0, self._noise) if self._noise else 0.0

    def settle(self):
        """Finish every conversion due by now (before the environment changes)."""
        with self.lock:
            for chip in self.chips.values():
                chip._advance()

    def node(self, bus):
        """The device node of bus ``bus`` (an int, or a ``/dev/i2c-N`` path) under ``dev``."""
        if isinstance(bus, int):
            return os.path.join(self.dev, "i2c-{}".format(bus))
        if self.dev != "/dev" and bus.startswith("/dev/"):
            return os.path.join(self.dev, bus[len("/dev/") :])
        return bus

    def chip(self, bus_path, address):
        """The chip answering ``address`` on the bus at ``bus_path``; OSError as the kernel gives it."""
        if bus_path != self.node(self.bus):
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))  # nothing on that bus
        chip = self.chips.get(address)
        if chip is None or not chip.present:
            # i2c-bcm2835 (the Pi's I2C controller driver) answers a NACK with -EREMOTEIO.
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
        return chip

    def select(self, bus_path, address, force=False):
        """ioctl(I2C_SLAVE): EBUSY when a kernel driver holds the address (unless forced)."""
        chip = self.chips.get(address)
        if chip is not None and chip.busy and not force and bus_path == self.node(self.bus):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))

    def read(self, bus_path, address, sub_address, length):
        with self.lock:
            return self.chip(bus_path, address).read(sub_address, length)

    def write(self, bus_path, address, sub_address, data):
        with self.lock:
            self.chip(bus_path, address).write(sub_address, list(data))


def from_spec(spec, clock=None):
    """A board from the JSON-style spec the module docstring describes."""
    spec = dict(spec or {})
    values = spec.get("environment") or {}
    environment = Environment(path=spec.get("environment_file"), **values)
    return SenseHatBoard(
        environment=environment,
        clock=clock,
        bus=spec.get("bus", 1),
        dev=spec.get("dev", "/dev"),
        noise=spec.get("noise", 0.0),
        seed=spec.get("seed", 1),
        hts221=spec.get("hts221"),
        lps25h=spec.get("lps25h"),
    )


_installed = None
_install_lock = threading.Lock()


def install(board):
    """Make ``board`` the one the ``smbus2`` and ``RTIMU`` stand-ins talk to (None: unset)."""
    global _installed
    _installed = board
    return board


def current():
    """The installed board, else one built from ``EDGE_AGENT_TEST_I2C`` (once per process)."""
    global _installed
    with _install_lock:
        if _installed is None:
            text = os.environ.get(ENV_SPEC)
            _installed = from_spec(json.loads(text) if text else {})
        return _installed
