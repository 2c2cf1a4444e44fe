"""The HTS221/LPS25H model against the datasheets: the world the Sense HAT backends meet.

The ``i2c`` backend's tests and the ``sense_hat`` library's (through the RTIMU
stand-in) read this model, so it must behave as the chips do, not as the agent
expects: power-down until PD, conversions that take time, data-ready bits that
clear only when the high byte is read, no auto-increment without bit 7 of the
sub-address. Each test cites the datasheet behaviour it checks (HTS221
DocID026333, TN1218; LPS25H DocID023722).
"""

from __future__ import annotations

import errno
import json

import pytest
from i2c_world import FAKE_SMBUS2_DIR, PiBus, chip_model

HTS, LPS = 0x5F, 0x5C


@pytest.fixture
def board(tmp_path, clock):
    pi = PiBus(tmp_path, clock)
    yield pi.board
    pi.close()


def read(board, address, sub, n=1):
    return board.read(board.node(1), address, sub, n)


def write(board, address, sub, *values):
    board.write(board.node(1), address, sub, list(values))


def test_who_am_i():
    model = chip_model()
    board = model.SenseHatBoard()
    assert board.read(board.node(1), HTS, 0x0F, 1) == [0xBC]
    assert board.read(board.node(1), LPS, 0x0F, 1) == [0xBD]


@pytest.mark.parametrize("address", [HTS, LPS])
def test_power_down_after_power_on_no_conversion_until_pd(board, clock, address):
    write(board, address, 0x21, 0x01)  # ONE_SHOT while powered down: nothing happens
    clock.advance(2.0)
    assert read(board, address, 0x27) == [0x00]
    assert read(board, address, 0x21) == [0x01]  # the bit stays set: no conversion ran

    write(board, address, 0x20, 0x80)  # PD: active, one-shot mode (ODR 0)
    write(board, address, 0x21, 0x01)
    clock.advance(0.2)
    assert read(board, address, 0x27) == [0x03]
    assert read(board, address, 0x21) == [0x00]  # ONE_SHOT clears itself when done


@pytest.mark.parametrize(
    "address, ctrl1, period",
    [(HTS, 0x87, 1 / 12.5), (HTS, 0x81, 1.0), (LPS, 0xC4, 1 / 25), (LPS, 0x90, 1.0)],
    ids=["hts221-12.5Hz", "hts221-1Hz", "lps25h-25Hz", "lps25h-1Hz"],
)
def test_continuous_conversions_come_one_period_after_power_up(
    board, clock, address, ctrl1, period
):
    write(board, address, 0x20, ctrl1)
    clock.advance(period * 0.99)
    assert read(board, address, 0x27) == [0x00]  # the first sample is not there yet
    clock.advance(period * 0.02)
    assert read(board, address, 0x27)[0] & 0x03 == 0x03


@pytest.mark.parametrize("address, seconds", [(HTS, 0.08), (LPS, 0.04)])
def test_a_one_shot_conversion_takes_time(board, clock, address, seconds):
    write(board, address, 0x20, 0x84)
    write(board, address, 0x21, 0x01)
    clock.advance(seconds * 0.9)
    assert read(board, address, 0x27) == [0x00]
    clock.advance(seconds * 0.2)
    assert read(board, address, 0x27) == [0x03]


@pytest.mark.parametrize(
    "address, low_bytes, high_byte, bit",
    [
        (HTS, [0x28], 0x29, 0x02),  # humidity: H_DA cleared by HUMIDITY_OUT_H
        (HTS, [0x2A], 0x2B, 0x01),  # temperature: T_DA cleared by TEMP_OUT_H
        (LPS, [0x28, 0x29], 0x2A, 0x02),  # pressure: P_DA cleared by PRESS_OUT_H
        (LPS, [0x2B], 0x2C, 0x01),  # temperature: T_DA cleared by TEMP_OUT_H
    ],
)
def test_data_ready_clears_on_reading_the_high_byte_only(
    board, clock, address, low_bytes, high_byte, bit
):
    write(board, address, 0x20, 0x84)
    write(board, address, 0x21, 0x01)
    clock.advance(0.2)
    for register in low_bytes:
        read(board, address, register)
        assert read(board, address, 0x27)[0] & bit, "a low byte must not clear the bit"
    read(board, address, 0x27)  # reading STATUS_REG itself clears nothing
    assert read(board, address, 0x27)[0] & bit
    read(board, address, high_byte)
    assert not read(board, address, 0x27)[0] & bit
    assert read(board, address, 0x27)[0] & (0x03 & ~bit)  # the other bit is untouched


@pytest.mark.parametrize("address", [HTS, LPS])
def test_multi_byte_reads_increment_only_with_bit_7(board, address):
    assert read(board, address, 0x0F, 3) == [board.chips[address].who_am_i] * 3
    with_bit_7 = read(board, address, 0x0F | 0x80, 3)
    assert with_bit_7 == [board.chips[address].registers[r] for r in (0x0F, 0x10, 0x11)]
    assert with_bit_7 != [with_bit_7[0]] * 3


def test_hts221_calibration_registers_as_the_datasheet_lays_them_out(board):
    model = chip_model()
    c = model.HTS221_CALIBRATION
    r = read(board, HTS, 0x30 | 0x80, 16)
    assert r[0] == c["H0_rH_x2"] and r[1] == c["H1_rH_x2"]
    assert r[2] == c["T0_degC_x8"] & 0xFF and r[3] == c["T1_degC_x8"] & 0xFF
    # 0x35: T1 bits 9:8 in 3:2, T0 bits 9:8 in 1:0; 7:4 reserved (not zero on this chip)
    assert r[5] & 0x03 == c["T0_degC_x8"] >> 8 and (r[5] >> 2) & 0x03 == c["T1_degC_x8"] >> 8
    assert r[5] & 0xF0 == 0xA0
    signed = {name: int.from_bytes(bytes(r[i : i + 2]), "little", signed=True) for name, i in (
        ("H0_T0_OUT", 6), ("H1_T0_OUT", 10), ("T0_OUT", 12), ("T1_OUT", 14)
    )}  # fmt: skip
    assert signed == {k: c[k] for k in signed}
    # Unlike each other, and with the bits a careless driver gets wrong in use.
    values = [c[k] for k in ("H0_T0_OUT", "H1_T0_OUT", "T0_OUT", "T1_OUT")]
    assert len(set(values)) == 4 and min(values) < 0
    assert c["T0_degC_x8"] > 255 and c["T1_degC_x8"] > 511


def test_calibration_registers_are_read_only(board):
    write(board, HTS, 0x30, 0x00)
    write(board, HTS, 0x27, 0xFF)
    assert read(board, HTS, 0x30) == [chip_model().HTS221_CALIBRATION["H0_rH_x2"]]
    assert read(board, HTS, 0x27) == [0x00]
    assert board.hts221.violations == [(0x30, 0x00), (0x27, 0xFF)]


def test_block_data_update_holds_the_outputs_between_low_and_high_byte(board, clock):
    board.environment.update(temperature=20.0)
    write(board, HTS, 0x20, 0x87)  # continuous 12.5 Hz, BDU on
    clock.advance(0.1)
    low = read(board, HTS, 0x2A)
    board.environment.update(temperature=30.0)
    clock.advance(0.1)  # a new sample comes while only the low byte was read
    high = read(board, HTS, 0x2B)
    first = int.from_bytes(bytes(low + high), "little", signed=True)
    model = chip_model()
    c = model.HTS221_CALIBRATION
    t0, t1 = c["T0_degC_x8"] / 8, c["T1_degC_x8"] / 8
    as_celsius = t0 + (first - c["T0_OUT"]) * (t1 - t0) / (c["T1_OUT"] - c["T0_OUT"])
    assert as_celsius == pytest.approx(20.0, abs=0.01)  # one sample's bytes, not two
    both = read(board, HTS, 0x2A | 0x80, 2)  # the held sample arrives after the high byte
    second = int.from_bytes(bytes(both), "little", signed=True)
    assert t0 + (second - c["T0_OUT"]) * (t1 - t0) / (c["T1_OUT"] - c["T0_OUT"]) == pytest.approx(
        30.0, abs=0.01
    )


def test_lps25h_outputs_and_overrun(board, clock):
    board.environment.update(pressure=987.654, temperature=25.0)
    write(board, LPS, 0x20, 0xC4)  # 25 Hz, BDU
    clock.advance(0.1)  # two samples came; nobody read the first
    status = read(board, LPS, 0x27)[0]
    assert status & 0x33 == 0x33  # P_OR, T_OR, P_DA, T_DA
    raw = read(board, LPS, 0x28 | 0x80, 5)
    pressure = int.from_bytes(bytes(raw[:3]), "little", signed=True) / 4096
    temperature = 42.5 + int.from_bytes(bytes(raw[3:]), "little", signed=True) / 480
    assert pressure == pytest.approx(987.654, abs=1 / 4096)
    assert temperature == pytest.approx(25.0 + board.lps25h.temperature_offset, abs=1 / 480)
    assert read(board, LPS, 0x27) == [0x00]  # reading the high bytes cleared DA and OR


def test_an_absent_chip_does_not_acknowledge(tmp_path, clock):
    pi = PiBus(tmp_path, clock, hts221={"present": False})
    try:
        with pytest.raises(OSError) as info:
            read(pi.board, HTS, 0x0F)
        assert info.value.errno == errno.EREMOTEIO
        assert read(pi.board, LPS, 0x0F) == [0xBD]
        with pytest.raises(OSError):
            read(pi.board, 0x46, 0x00)  # nothing else is modelled on the bus
    finally:
        pi.close()


def test_as_smbus2_it_opens_the_node_and_selects_the_address(tmp_path, clock):
    pi = PiBus(tmp_path, clock, lps25h={"busy": True})
    try:
        import smbus2

        assert smbus2.__file__.startswith(FAKE_SMBUS2_DIR) and smbus2.STAND_IN
        with smbus2.SMBus(1) as bus:
            assert bus.read_byte_data(HTS, 0x0F) == 0xBC
            assert bus.read_i2c_block_data(HTS, 0x0F, 2) == [0xBC, 0xBC]
            with pytest.raises(OSError) as info:
                bus.read_byte_data(LPS, 0x0F)
            assert info.value.errno == errno.EBUSY
            assert bus.read_byte_data(LPS, 0x0F, force=True) == 0xBD
            with pytest.raises(NotImplementedError, match="read_word_data"):
                bus.read_word_data(HTS, 0x28)
        with pytest.raises(FileNotFoundError):
            smbus2.SMBus(2)
    finally:
        pi.close()


def test_from_the_environment_variable_with_values_from_a_file(tmp_path, monkeypatch):
    model = chip_model()
    values = tmp_path / "env.json"
    values.write_text(json.dumps({"temperature": 12.5}))
    monkeypatch.setenv(
        model.ENV_SPEC,
        json.dumps({"environment_file": str(values), "environment": {"humidity": 77.0}}),
    )
    model.install(None)
    try:
        board = model.current()
        assert model.current() is board  # one board per process
        assert (board.environment.temperature, board.environment.humidity) == (21.5, 77.0)
        board.environment.refresh()
        assert board.environment.temperature == 12.5
    finally:
        model.install(None)
