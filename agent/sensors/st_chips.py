"""The Sense HAT's environmental chips, ST's HTS221 and LPS25H, driven through their registers.

Sources:

* HTS221 datasheet, DocID026333 (Rev 4, August 2016): the I2C sub-address and its
  auto-increment bit, the register map, CTRL_REG1 (PD, BDU, ODR), CTRL_REG2
  (ONE_SHOT), STATUS_REG (H_DA and T_DA, cleared by reading HUMIDITY_OUT_H and
  TEMP_OUT_H), the calibration registers 0x30-0x3F;
* ST technical note TN1218, "Interpreting humidity and temperature readings in
  the HTS221 digital humidity sensor": humidity and temperature by linear
  interpolation between the two calibration points, humidity saturated to
  0-100 %RH as its reference code does;
* LPS25H datasheet, DocID023722: the sub-address and auto-increment bit, the
  register map, CTRL_REG1 (PD, BDU, ODR), CTRL_REG2 (ONE_SHOT), STATUS_REG (P_DA
  and T_DA), PRESS_OUT (hPa = raw / 4096, 24-bit two's complement) and TEMP_OUT
  (°C = 42.5 + raw / 480). The LPS25H is calibrated in the factory inside the
  chip: its outputs need no coefficients.

Each chip runs in one-shot mode (ODR 0, block data update on): a measurement
sets ONE_SHOT, waits for both data-ready bits of STATUS_REG, then reads every
output register in one auto-incremented read (sub-address bit 7 set). Reading
the high bytes clears the data-ready bits, so a sample is never read twice.
The chips are never powered down: an HTS221 told to power down during a one-shot
conversion stops converting until its supply is cycled (reported on ST's
community forum), and in one-shot mode an idle chip draws next to nothing.

The bus is anything with smbus2's ``read_byte_data``, ``write_byte_data`` and
``read_i2c_block_data``; an ``OSError`` from it is the caller's to explain.
"""

from __future__ import annotations

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

AUTO_INCREMENT = 0x80  # bit 7 of the sub-address: the address increments on each byte
WHO_AM_I = 0x0F
CTRL_REG1 = 0x20
CTRL_REG2 = 0x21
STATUS_REG = 0x27
PD = 0x80  # CTRL_REG1: active mode (0: power-down, the state after power-on)
BDU = 0x04  # CTRL_REG1: outputs not updated between reading the low and the high byte
ONE_SHOT = 0x01  # CTRL_REG2: start one conversion; the chip clears it when done


class ChipMismatch(Exception):
    """Something answered the chip's address, but its WHO_AM_I is not the chip's."""

    def __init__(self, chip: StChip, found: int) -> None:
        super().__init__(chip.name, found)
        self.chip = chip
        self.found = found


class CalibrationError(Exception):
    """The chip's calibration registers cannot describe a line (two equal points)."""


def s16(low: int, high: int) -> int:
    """A 16-bit two's-complement value from its two bytes."""
    value = low | (high << 8)
    return value - 0x10000 if value & 0x8000 else value


def s24(xl: int, low: int, high: int) -> int:
    """A 24-bit two's-complement value from its three bytes."""
    value = xl | (low << 8) | (high << 16)
    return value - 0x1000000 if value & 0x800000 else value


class StChip:
    """What the two chips share: identity, power-up in one-shot mode, data-ready."""

    name = ""
    role = ""
    address = 0
    who_am_i = 0
    ready_bits = 0x03  # STATUS_REG: bit 1 humidity/pressure, bit 0 temperature
    outputs = (0x28, 0)  # first output register, number of output bytes

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    def identify(self) -> None:
        """Check WHO_AM_I; ChipMismatch if another device answers the address."""
        found = self.bus.read_byte_data(self.address, WHO_AM_I)
        if found != self.who_am_i:
            raise ChipMismatch(self, found)

    def power_up(self) -> None:
        """Active mode, one-shot (ODR 0), block data update; drop any sample left unread.

        A sample an earlier program (the ``sense_hat`` library runs the chips
        continuously) left behind would otherwise pass for the first one-shot's.
        """
        self.bus.write_byte_data(self.address, CTRL_REG1, PD | BDU)
        self.read_outputs()

    def powered(self) -> bool:
        """Whether CTRL_REG1 still says active mode (a chip that reset says power-down)."""
        return bool(self.bus.read_byte_data(self.address, CTRL_REG1) & PD)

    def start(self) -> None:
        """Start one conversion (only ONE_SHOT set: on the LPS25H this also keeps the FIFO off)."""
        self.bus.write_byte_data(self.address, CTRL_REG2, ONE_SHOT)

    def status(self) -> int:
        value: int = self.bus.read_byte_data(self.address, STATUS_REG)
        return value

    def ready(self) -> bool:
        """Whether every output has a new sample (both data-ready bits of STATUS_REG)."""
        return self.status() & self.ready_bits == self.ready_bits

    def read_outputs(self) -> List[int]:
        """Every output byte in one read; reading the high bytes clears the data-ready bits."""
        first, count = self.outputs
        data: List[int] = self.bus.read_i2c_block_data(self.address, first | AUTO_INCREMENT, count)
        return data


class Hts221Calibration:
    """The two factory points of humidity and temperature (HTS221 0x30-0x3F, TN1218)."""

    __slots__ = ("h0_rh", "h1_rh", "h0_out", "h1_out", "t0_degc", "t1_degc", "t0_out", "t1_out")

    def __init__(self, registers: List[int]) -> None:
        """``registers``: the 16 bytes of 0x30-0x3F."""
        r = registers
        self.h0_rh = r[0] / 2.0  # H0_rH_x2
        self.h1_rh = r[1] / 2.0  # H1_rH_x2
        msb = r[5]  # T1/T0 msb: bits 3:2 are T1's bits 9:8, bits 1:0 T0's; 7:4 reserved
        self.t0_degc = (((msb & 0x03) << 8) | r[2]) / 8.0  # T0_degC_x8
        self.t1_degc = (((msb & 0x0C) << 6) | r[3]) / 8.0  # T1_degC_x8
        self.h0_out = s16(r[6], r[7])  # H0_T0_OUT, 0x36-0x37
        self.h1_out = s16(r[10], r[11])  # H1_T0_OUT, 0x3A-0x3B
        self.t0_out = s16(r[12], r[13])  # T0_OUT, 0x3C-0x3D
        self.t1_out = s16(r[14], r[15])  # T1_OUT, 0x3E-0x3F
        if self.h1_out == self.h0_out or self.t1_out == self.t0_out:
            raise CalibrationError(self.describe())

    def humidity(self, h_out: int) -> float:
        """%RH by linear interpolation between the two points, saturated to 0-100 (TN1218)."""
        rh = self.h0_rh + (h_out - self.h0_out) * (self.h1_rh - self.h0_rh) / (
            self.h1_out - self.h0_out
        )
        return min(100.0, max(0.0, rh))

    def temperature(self, t_out: int) -> float:
        """°C by linear interpolation between the two points (TN1218)."""
        return self.t0_degc + (t_out - self.t0_out) * (self.t1_degc - self.t0_degc) / (
            self.t1_out - self.t0_out
        )

    def describe(self) -> str:
        return "H0 {} %RH at {}, H1 {} %RH at {}, T0 {} °C at {}, T1 {} °C at {}".format(
            self.h0_rh,
            self.h0_out,
            self.h1_rh,
            self.h1_out,
            self.t0_degc,
            self.t0_out,
            self.t1_degc,
            self.t1_out,
        )


class HTS221(StChip):
    """Humidity and temperature (DocID026333)."""

    name = "HTS221"
    role = "humidity, temperature"
    address = 0x5F
    who_am_i = 0xBC
    CALIBRATION = 0x30
    outputs = (0x28, 4)  # HUMIDITY_OUT_L/H, TEMP_OUT_L/H

    def __init__(self, bus: Any) -> None:
        super().__init__(bus)
        self.calibration: Optional[Hts221Calibration] = None

    def power_up(self) -> None:
        registers = self.bus.read_i2c_block_data(
            self.address, self.CALIBRATION | AUTO_INCREMENT, 16
        )
        self.calibration = Hts221Calibration(list(registers))
        super().power_up()

    def measurement(self) -> Tuple[float, float]:
        """(humidity %RH, temperature °C) of the sample the data-ready bits announced."""
        assert self.calibration is not None, "power_up() reads the calibration first"
        h_l, h_h, t_l, t_h = self.read_outputs()
        return (
            self.calibration.humidity(s16(h_l, h_h)),
            self.calibration.temperature(s16(t_l, t_h)),
        )


class LPS25H(StChip):
    """Pressure and temperature (DocID023722)."""

    name = "LPS25H"
    role = "pressure"
    address = 0x5C
    who_am_i = 0xBD
    outputs = (0x28, 5)  # PRESS_OUT_XL/L/H, TEMP_OUT_L/H

    def measurement(self) -> Tuple[float, float]:
        """(pressure hPa, temperature °C) of the sample the data-ready bits announced."""
        p_xl, p_l, p_h, t_l, t_h = self.read_outputs()
        return s24(p_xl, p_l, p_h) / 4096.0, 42.5 + s16(t_l, t_h) / 480.0


def registers_of(chip: StChip) -> Dict[str, int]:
    """CTRL_REG1, CTRL_REG2 and STATUS_REG, for an error message about a chip that stalls."""
    return {
        "CTRL_REG1": chip.bus.read_byte_data(chip.address, CTRL_REG1),
        "CTRL_REG2": chip.bus.read_byte_data(chip.address, CTRL_REG2),
        "STATUS_REG": chip.status(),
    }
