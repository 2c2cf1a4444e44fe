"""The ``i2c`` sensor backend: the Sense HAT's HTS221 and LPS25H read through ``smbus2``.

In this process the chips are the register-level model (``stand_ins/sense_hat_chips.py``,
written from the datasheets) behind a stand-in ``smbus2`` the agent imports by the
ordinary import path, in virtual time. What needs a Pi's ``/dev`` and an unprivileged
user (permissions, the default backend of the seam on a Pi) runs in the namespace world
of ``sense_hat_world.py``. Expected values are computed here from the datasheets'
formulas, from the raw registers, independently of the agent's code.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from i2c_world import FAKE_SMBUS2_DIR, PiBus
from sense_hat_world import GROUPS, HatWorld, chips

from agent.clock import VirtualClock
from agent.config import SensorSettings, check_values
from agent.errors import BadSensorBackend, ConfigError, SensorError
from agent.sensors import open_sensor
from agent.sensors.i2c import I2CSensor

approx = pytest.approx
# A calibration as unlike the stand-in's default (and the datasheet's and TN1218's examples)
# as it is unlike itself: T0 below 32 °C (bits 9:8 zero), T1 above 64 °C, negative H1_T0_OUT.
OTHER_CALIBRATION = {
    "H0_rH_x2": 38,  # 19 %RH
    "H1_rH_x2": 171,  # 85.5 %RH
    "T0_degC_x8": 93,  # 11.625 °C
    "T1_degC_x8": 563,  # 70.375 °C
    "H0_T0_OUT": 14017,
    "H1_T0_OUT": -2291,  # humidity falls as the raw output rises on this chip
    "T0_OUT": 2609,
    "T1_OUT": 9876,
    "reserved_0x35": 0x50,
}


@pytest.fixture
def pi(tmp_path, clock):
    bus = PiBus(tmp_path, clock)
    yield bus
    bus.close()


def make_pi(tmp_path, clock, request, **spec) -> PiBus:
    bus = PiBus(tmp_path, clock, **spec)
    request.addfinalizer(bus.close)
    return bus


# --- the datasheets' formulas, written here from the documents ---------------------------


def _s16(low: int, high: int) -> int:
    value = low | high << 8
    return value - 65536 if value >= 32768 else value


def hts221_from_registers(r) -> tuple:
    """(humidity, temperature) per TN1218 from the HTS221's register file (0x28-0x2B, 0x30-0x3F)."""
    t0 = ((r[0x35] & 0b11) * 256 + r[0x32]) / 8
    t1 = (((r[0x35] >> 2) & 0b11) * 256 + r[0x33]) / 8
    h0, h1 = r[0x30] / 2, r[0x31] / 2
    h0_out, h1_out = _s16(r[0x36], r[0x37]), _s16(r[0x3A], r[0x3B])
    t0_out, t1_out = _s16(r[0x3C], r[0x3D]), _s16(r[0x3E], r[0x3F])
    h_out, t_out = _s16(r[0x28], r[0x29]), _s16(r[0x2A], r[0x2B])
    humidity = h0 + (h1 - h0) * (h_out - h0_out) / (h1_out - h0_out)
    temperature = t0 + (t1 - t0) * (t_out - t0_out) / (t1_out - t0_out)
    return min(100.0, max(0.0, humidity)), temperature


def lps25h_from_registers(r) -> float:
    """hPa from PRESS_OUT_XL/L/H (0x28-0x2A): 24-bit two's complement / 4096."""
    raw = r[0x28] | r[0x29] << 8 | r[0x2A] << 16
    if raw & 0x800000:
        raw -= 1 << 24
    return raw / 4096


# --- readings ------------------------------------------------------------------------------


def test_readings_are_the_datasheet_formulas_of_the_raw_registers(pi, clock):
    pi.board.environment.update(temperature=23.7, humidity=47.3, pressure=1009.25)
    sensor = open_sensor("i2c", clock=clock, environ={})

    reading = sensor.read()

    humidity, temperature = hts221_from_registers(pi.hts221.registers)
    assert reading.humidity == approx(humidity, rel=1e-12)
    assert reading.temperature == approx(temperature, rel=1e-12)
    assert reading.pressure == approx(lps25h_from_registers(pi.lps25h.registers), rel=1e-12)
    # ...which is the environment, to the chips' resolution.
    assert (reading.temperature, reading.humidity, reading.pressure) == (
        approx(23.7, abs=0.01),
        approx(47.3, abs=0.01),
        approx(1009.25, abs=1 / 4096),
    )
    assert reading.ts == clock.time()


@pytest.mark.parametrize("calibration", [None, OTHER_CALIBRATION], ids=["default", "other"])
def test_each_chip_is_read_through_its_own_calibration(tmp_path, clock, request, calibration):
    pi = make_pi(
        tmp_path,
        clock,
        request,
        environment={"temperature": -7.5, "humidity": 91.0},
        hts221={"calibration": calibration} if calibration else {},
    )
    sensor = I2CSensor(clock=clock)

    reading = sensor.read()

    assert (reading.temperature, reading.humidity) == (
        approx(-7.5, abs=0.01),
        approx(91.0, abs=0.01),
    )
    humidity, temperature = hts221_from_registers(pi.hts221.registers)
    assert (reading.humidity, reading.temperature) == (approx(humidity), approx(temperature))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    # T1 at most (400 + 500) / 8 = 112.5 °C: inside what the HTS221 measures (-40..120 °C),
    # so every environment drawn is a reading, not a missing value.
    t0_x8=st.integers(0, 400),
    span_x8=st.integers(80, 500),
    t0_out=st.integers(-15000, 15000),
    t_slope=st.sampled_from([-1, 1]),
    t_span=st.integers(2000, 12000),
    h0_x2=st.integers(0, 90),
    h_span_x2=st.integers(40, 110),
    h0_out=st.integers(-15000, 15000),
    h_slope=st.sampled_from([-1, 1]),
    h_span=st.integers(2000, 12000),
    where_t=st.floats(0.0, 1.0),
    where_h=st.floats(0.0, 1.0),
)
def test_any_calibration_gives_the_environment_back(
    tmp_path_factory,
    t0_x8,
    span_x8,
    t0_out,
    t_slope,
    t_span,
    h0_x2,
    h_span_x2,
    h0_out,
    h_slope,
    h_span,
    where_t,
    where_h,
):
    clock = VirtualClock()
    calibration = {
        "T0_degC_x8": t0_x8,
        "T1_degC_x8": t0_x8 + span_x8,
        "T0_OUT": t0_out,
        "T1_OUT": t0_out + t_slope * t_span,
        "H0_rH_x2": h0_x2,
        "H1_rH_x2": h0_x2 + h_span_x2,
        "H0_T0_OUT": h0_out,
        "H1_T0_OUT": h0_out + h_slope * h_span,
    }
    t0, t1 = t0_x8 / 8, (t0_x8 + span_x8) / 8
    h0, h1 = h0_x2 / 2, (h0_x2 + h_span_x2) / 2
    temperature = t0 + where_t * (t1 - t0)  # between the points: no 16-bit overflow
    humidity = h0 + where_h * (h1 - h0)
    pi = PiBus(
        tmp_path_factory.mktemp("pi"),
        clock,
        environment={"temperature": temperature, "humidity": humidity},
        hts221={"calibration": calibration},
    )
    try:
        reading = I2CSensor(clock=clock, with_pressure=False).read()
    finally:
        pi.close()
    # Half a count of the chip's raw output, in °C and %RH.
    assert reading.temperature == approx(temperature, abs=0.5 * (t1 - t0) / t_span + 1e-9)
    assert reading.humidity == approx(humidity, abs=0.5 * (h1 - h0) / h_span + 1e-9)


def test_humidity_is_saturated_to_0_100_as_tn1218_does(pi, clock):
    sensor = I2CSensor(clock=clock)

    pi.board.environment.update(humidity=103.0)  # condensation: the raw output passes H1
    wet = sensor.read().humidity
    pi.board.environment.update(humidity=-2.0)
    dry = sensor.read().humidity

    assert (wet, dry) == (100.0, 0.0)


def test_out_of_range_temperature_and_pressure_are_missing_not_readings(pi, clock):
    sensor = I2CSensor(clock=clock)
    pi.board.environment.update(temperature=150.0, pressure=100.0)

    reading = sensor.read()

    assert reading.temperature is None and reading.pressure is None
    assert reading.humidity == approx(41.0, abs=0.01)


def test_cpu_heat_compensation(pi, clock, tmp_path):
    thermal = tmp_path / "temp"
    thermal.write_text("51000\n")
    pi.board.environment.update(temperature=31.0)

    sensor = open_sensor(
        "i2c", clock=clock, environ={}, compensation_factor=2.0, cpu_temp_path=str(thermal)
    )

    assert sensor.read().temperature == approx(31.0 - (51.0 - 31.0) / 2.0, abs=0.01)


def test_a_bogus_cpu_temperature_makes_the_temperature_missing_not_a_false_breach(
    pi, clock, tmp_path, caplog
):
    thermal = tmp_path / "temp"
    thermal.write_text("51000\n")
    pi.board.environment.update(temperature=31.0, humidity=41.0)
    sensor = open_sensor(
        "i2c", clock=clock, environ={}, compensation_factor=2.0, cpu_temp_path=str(thermal)
    )

    def read_with_cpu(text):
        thermal.write_text(text + "\n")
        clock.advance(1.0)
        return sensor.read()

    with caplog.at_level(logging.WARNING, logger="agent.sensors"):
        # A zone not ready (0), degrees written where millidegrees belong (51: 0.051 °C, which
        # corrected 31 °C to 46.5 °C, over a 40 °C limit), a value no running Pi reaches.
        bogus = [read_with_cpu(text) for text in ("0", "51", "150000")]
        good = read_with_cpu("51000")
        again = read_with_cpu("-5000")

    assert [r.temperature for r in bogus] == [None, None, None]
    assert all(r.humidity == approx(41.0, abs=0.01) for r in bogus)  # the rest still read
    assert good.temperature == approx(21.0, abs=0.01)
    assert again.temperature is None
    warnings = [r.getMessage() for r in caplog.records if "not believable" in r.getMessage()]
    assert len(warnings) == 2  # once per spell of bogus values, not once per reading
    assert warnings[0].startswith(
        "the CPU temperature from {} is 0 °C with the chip".format(thermal)
    )


def test_without_a_cpu_temperature_it_warns_once_and_reads_uncompensated(
    pi, clock, tmp_path, caplog
):
    pi.board.environment.update(temperature=31.0)
    sensor = open_sensor(
        "i2c",
        clock=clock,
        environ={},
        compensation_factor=2.0,
        cpu_temp_path=str(tmp_path / "no-such-zone"),
    )
    with caplog.at_level(logging.WARNING, logger="agent.sensors"):
        temperatures = []
        for _ in range(3):
            clock.advance(1.0)
            temperatures.append(sensor.read().temperature)

    assert temperatures == [approx(31.0, abs=0.01)] * 3
    warnings = [r.getMessage() for r in caplog.records if "not compensated" in r.getMessage()]
    assert len(warnings) == 1


def test_a_cpu_as_warm_as_the_chip_or_at_100_degrees_is_believed(pi, clock, tmp_path):
    # 32.375 °C is the chip's calibration point T0: read back exactly, so the edges are exact.
    thermal = tmp_path / "temp"
    pi.board.environment.update(temperature=32.375)
    sensor = open_sensor(
        "i2c", clock=clock, environ={}, compensation_factor=2.0, cpu_temp_path=str(thermal)
    )
    temperatures = []
    for millidegrees in ("32375", "100000", "100001", "32374"):
        thermal.write_text(millidegrees + "\n")
        clock.advance(1.0)
        temperatures.append(sensor.read().temperature)

    assert temperatures == [32.375, 32.375 - (100.0 - 32.375) / 2.0, None, None]
    # A factor of 1 (the whole difference) is a factor like any other.
    sensor.close()
    thermal.write_text("40000\n")
    whole = open_sensor(
        "i2c", clock=clock, environ={}, compensation_factor=1.0, cpu_temp_path=str(thermal)
    )
    assert whole.read().temperature == 32.375 - (40.0 - 32.375)


def test_a_correction_to_exactly_minus_40_stands(pi, clock, tmp_path):
    # 71.5 °C is the chip's calibration point T1, read back exactly; a factor of 0.25 and a
    # CPU at 99.375 °C (chosen so the arithmetic is exact) correct it to -40 °C, the chip's
    # bottom, which is a reading.
    thermal = tmp_path / "temp"
    thermal.write_text("99375\n")
    pi.board.environment.update(temperature=71.5)
    sensor = open_sensor(
        "i2c", clock=clock, environ={}, compensation_factor=0.25, cpu_temp_path=str(thermal)
    )
    assert sensor.read().temperature == -40.0


def test_a_correction_below_what_the_chip_can_measure_is_missing(pi, clock, tmp_path):
    # Outdoors in winter: the chip at -20 °C, the CPU at 21 °C; corrected, -40.5 °C is below
    # the -40 °C the chip can measure, so the formula is out of its depth: no reading.
    thermal = tmp_path / "temp"
    pi.board.environment.update(temperature=-20.0)
    sensor = open_sensor(
        "i2c", clock=clock, environ={}, compensation_factor=2.0, cpu_temp_path=str(thermal)
    )
    thermal.write_text("21000\n")
    clock.advance(1.0)
    assert sensor.read().temperature is None
    thermal.write_text("19000\n")
    clock.advance(1.0)
    assert sensor.read().temperature == approx(-39.5, abs=0.01)


# --- one-shot conversions and data-ready -----------------------------------------------


def test_the_first_reading_waits_for_data_ready_and_is_never_empty(pi, clock):
    start = clock.monotonic()

    sensor = I2CSensor(clock=clock)
    reading = sensor.read()

    assert None not in (reading.temperature, reading.humidity, reading.pressure)
    # Powered up by the backend, in one-shot mode, with block data update.
    assert pi.hts221.registers[0x20] == 0x84 and pi.lps25h.registers[0x20] == 0x84
    # One conversion at start (the chip proves it converts), one per reading; each took
    # the chip's conversion time, both chips at once.
    assert (pi.hts221.conversions, pi.lps25h.conversions) == (2, 2)
    assert clock.monotonic() - start >= 2 * pi.hts221.one_shot_seconds


def test_every_reading_is_a_new_conversion(pi, clock):
    sensor = I2CSensor(clock=clock)
    values = []
    for temperature in (18.0, 18.5, 19.0):
        pi.board.environment.update(temperature=temperature)
        values.append(sensor.read().temperature)

    assert values == [approx(18.0, abs=0.01), approx(18.5, abs=0.01), approx(19.0, abs=0.01)]


def test_a_sample_left_by_the_sense_hat_library_is_not_taken_for_a_new_one(pi, clock):
    # RTIMULib left the HTS221 converting at 12.5 Hz; its last sample is 40 °C, unread.
    pi.board.environment.update(temperature=40.0)
    pi.board.write(pi.board.node(1), 0x5F, 0x20, [0x87])
    clock.advance(0.1)
    pi.board.settle()
    assert pi.hts221.registers[0x27] & 0x01  # T_DA: a sample is waiting
    pi.board.environment.update(temperature=20.0)
    start = clock.monotonic()

    sensor = I2CSensor(clock=clock)

    # The start's check waited for a conversion of its own...
    assert clock.monotonic() - start >= pi.hts221.one_shot_seconds
    assert hts221_from_registers(pi.hts221.registers)[1] == approx(20.0, abs=0.01)
    # ...and so does every reading.
    assert sensor.read().temperature == approx(20.0, abs=0.01)


def test_a_chip_that_never_converts_fails_the_start_with_its_registers(tmp_path, clock, request):
    make_pi(tmp_path, clock, request, lps25h={"stuck": True})

    with pytest.raises(SensorError) as info:
        I2CSensor(clock=clock)

    message = str(info.value)
    assert (
        "the LPS25H (pressure) at 0x5C on /dev/i2c-1 did not finish a conversion within 1 s"
        in message
    )
    assert "CTRL_REG1 0x84, CTRL_REG2 0x01, STATUS_REG 0x00" in message
    assert "power the Pi off and on" in message


def test_a_chip_that_stalls_later_is_one_error_per_reading_not_an_empty_reading(pi, clock):
    sensor = I2CSensor(clock=clock)
    pi.hts221.stuck = True

    with pytest.raises(SensorError, match="HTS221 .* did not finish a conversion within 1 s"):
        sensor.read()
    pi.hts221.stuck = False
    assert sensor.read().humidity == approx(41.0, abs=0.01)


def test_a_process_stalled_past_the_deadline_polls_once_more(pi, clock):
    sensor = I2CSensor(clock=clock)
    read = pi.board.read
    stalls = []

    def stall_after_the_first_status_read(path, address, sub, length):
        answer = read(path, address, sub, length)
        if sub == 0x27 and not stalls:
            stalls.append(address)
            clock.advance(5.0)  # the process is descheduled right after reading STATUS_REG
        return answer

    pi.board.read = stall_after_the_first_status_read

    reading = sensor.read()

    assert stalls and reading.humidity == approx(41.0, abs=0.01)


def test_a_chip_that_reset_is_powered_up_again(pi, clock):
    sensor = I2CSensor(clock=clock)
    # A brown-out: the HTS221's registers are back to their power-on values (power-down).
    pi.board.write(pi.board.node(1), 0x5F, 0x20, [0x00])

    with pytest.raises(SensorError, match="HTS221 .* had been reset .*powered it up again"):
        sensor.read()
    assert sensor.read().temperature == approx(21.5, abs=0.01)


def test_without_pressure_the_lps25h_is_left_alone(tmp_path, clock, request):
    pi = make_pi(tmp_path, clock, request, lps25h={"present": False})

    reading = I2CSensor(clock=clock, with_pressure=False).read()

    assert reading.pressure is None and reading.temperature == approx(21.5, abs=0.01)
    assert pi.lps25h.writes == []


def test_the_backend_writes_only_control_registers(pi, clock):
    sensor = I2CSensor(clock=clock)
    for _ in range(3):
        sensor.read()

    assert pi.hts221.violations == [] and pi.lps25h.violations == []
    assert {register for register, _ in pi.hts221.writes} == {0x20, 0x21}
    assert {register for register, _ in pi.lps25h.writes} == {0x20, 0x21}


def test_an_io_error_while_reading_is_a_sensor_error_naming_the_chip(pi, clock):
    sensor = I2CSensor(clock=clock)
    pi.lps25h.present = False  # the HAT lifted off its header

    with pytest.raises(SensorError) as info:
        sensor.read()

    assert "reading the Sense HAT over I2C failed: no answer from the LPS25H" in str(info.value)


def test_reading_after_close_is_an_error(pi, clock):
    sensor = I2CSensor(clock=clock)
    sensor.close()

    with pytest.raises(SensorError, match="the i2c sensor is closed"):
        sensor.read()


# --- what is wrong when it cannot open, and the fix ----------------------------------------


def test_no_bus_says_enable_i2c(tmp_path, clock, request):
    make_pi(tmp_path, clock, request, nodes=())

    with pytest.raises(SensorError) as info:
        I2CSensor(clock=clock)

    message = str(info.value)
    assert message.startswith("no I2C bus /dev/i2c-1: I2C is not enabled on this Pi")
    assert "sudo raspi-config nonint do_i2c 0" in message
    assert isinstance(info.value.__cause__, FileNotFoundError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens any file; see the world test below")
def test_a_bus_the_user_may_not_open_says_the_i2c_group(pi, clock):
    os.chmod(pi.dev / "i2c-1", 0)

    with pytest.raises(SensorError, match="permission denied opening the I2C bus /dev/i2c-1"):
        I2CSensor(clock=clock)


@pytest.mark.parametrize(
    "chip, name",
    [
        ("hts221", "HTS221 (humidity, temperature) at address 0x5F"),
        ("lps25h", "LPS25H (pressure) at address 0x5C"),
    ],
)
def test_a_chip_that_does_not_answer(tmp_path, clock, request, chip, name):
    make_pi(tmp_path, clock, request, **{chip: {"present": False}})

    with pytest.raises(SensorError) as info:
        I2CSensor(clock=clock)

    message = str(info.value)
    assert message.startswith("no answer from the " + name + " on /dev/i2c-1 (Remote I/O error)")
    assert "is the Sense HAT seated" in message and "`i2cdetect -y 1`" in message


def test_another_chip_at_the_address_is_named_by_its_who_am_i(tmp_path, clock, request):
    make_pi(tmp_path, clock, request, hts221={"who_am_i": 0x33})

    with pytest.raises(SensorError) as info:
        I2CSensor(clock=clock)

    assert str(info.value).startswith(
        "the chip at address 0x5F on /dev/i2c-1 is not an HTS221: WHO_AM_I (0x0F) reads 0x33, "
        "expected 0xBC"
    )


def test_an_address_a_kernel_driver_holds(tmp_path, clock, request):
    make_pi(tmp_path, clock, request, lps25h={"busy": True})

    with pytest.raises(SensorError, match=r"LPS25H .* is held by a kernel driver \(EBUSY"):
        I2CSensor(clock=clock)


def test_a_damaged_calibration_is_named(tmp_path, clock, request):
    broken = dict(OTHER_CALIBRATION, H1_T0_OUT=OTHER_CALIBRATION["H0_T0_OUT"])
    make_pi(tmp_path, clock, request, hts221={"calibration": broken})

    with pytest.raises(SensorError, match="calibration registers are unusable"):
        I2CSensor(clock=clock)


def test_without_smbus2_it_is_a_bad_backend_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "smbus2", None)

    with pytest.raises(BadSensorBackend, match="cannot import smbus2.*pip install smbus2"):
        I2CSensor()


# --- the bus number, the seam --------------------------------------------------------------


def test_i2c_bus_is_a_variable(tmp_path, clock, request):
    pi = make_pi(tmp_path, clock, request, bus=3, nodes=(1, 3))
    settings = SensorSettings.from_mapping({"i2cBus": "3", "deviceId": "pi"})

    sensor = open_sensor("i2c", clock=clock, environ={}, i2c_bus=settings.i2c_bus)

    assert sensor.path == "/dev/i2c-3" and sensor.read().humidity == approx(41.0, abs=0.01)
    assert pi.board.node(3).endswith("/dev/i2c-3")
    # Bus 1 exists but nothing answers there.
    with pytest.raises(SensorError, match="no answer from the HTS221 .* on /dev/i2c-1"):
        open_sensor("i2c", clock=clock, environ={})


def test_i2c_bus_default_and_checks():
    assert SensorSettings.from_mapping({"deviceId": "pi"}).i2c_bus == 1
    with pytest.raises(ConfigError, match="i2cBus must be a bus number"):
        check_values({"i2cBus": "-1"})
    with pytest.raises(ConfigError, match="i2cBus must be a whole number"):
        check_values({"i2cBus": "one"})


def test_the_sensor_function_opens_the_bus_its_variable_names(
    tmp_path, clock, request, monkeypatch
):
    from agent.greengrass.local import LocalCore
    from agent.topology import default_topology
    from functions import sensor_function

    make_pi(tmp_path, clock, request, bus=4, nodes=(4,))
    core = LocalCore(default_topology())
    monkeypatch.setenv("EDGE_AGENT_SENSOR", "i2c")  # the process switch, as the topology sets it
    environ = {
        "i2cBus": "4",
        "deviceId": "pi-i2c",
        "stateDir": str(tmp_path / "state"),
    }

    service = sensor_function.create_app(
        environ=environ, runtime=core.runtime_for("sensor"), clock=clock
    )

    assert isinstance(service.sensor, I2CSensor) and service.sensor.path == "/dev/i2c-4"
    service.sensor.close()


def test_on_a_pi_the_default_is_i2c(pi, clock, tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\0")

    sensor = open_sensor(environ={}, clock=clock, model_path=str(model))

    assert isinstance(sensor, I2CSensor)
    assert sensor.read().pressure == approx(1012.0)


def test_on_a_pi_without_smbus2_the_default_is_the_library(monkeypatch, tmp_path, caplog):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 3 Model B Plus Rev 1.3\0")
    monkeypatch.setitem(sys.modules, "smbus2", None)
    monkeypatch.setitem(sys.modules, "sense_hat", None)  # and, off a Pi, no library either

    with caplog.at_level(logging.INFO, logger="agent.sensors"), pytest.raises(
        BadSensorBackend, match="cannot import sense_hat"
    ):
        open_sensor(environ={}, model_path=str(model))
    assert "smbus2 is not installed" in caplog.text and "FAKE" not in caplog.text


def test_the_backend_loads_no_smbus2_until_opened():
    code = (
        "import sys, agent.sensors, agent.sensors.i2c; "
        "print('smbus2' in sys.modules, 'numpy' in sys.modules, 'RTIMU' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert done.stdout.split() == ["False", "False", "False"]


# --- the deployed sensor function, on a V1 core's runtime --------------------------------


def test_the_deployed_sensor_function_publishes_a_full_first_reading_on_a_v1_core(tmp_path):
    """The topology's environment (``EDGE_AGENT_SENSOR=i2c``), the module loaded as a V1 core's
    Python runtime loads it (this interpreter: 3.8 too under ``./dev test``), the chips as
    ``smbus2`` in real time: the first reading it publishes has all three values."""
    from v1_core import CORE_MODULES_DIR, V1CoreStandIn

    from agent.topology import SENSOR_FUNCTION_ID, default_topology

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "i2c-1").write_bytes(b"")
    chips_spec = {
        "dev": str(tmp_path / "dev"),
        "environment": {"temperature": 27.25, "humidity": 58.5, "pressure": 1001.75},
    }
    function_env = dict(default_topology().function(SENSOR_FUNCTION_ID).environment)
    assert function_env["EDGE_AGENT_SENSOR"] == "i2c"
    with V1CoreStandIn() as core:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
        environ.update(core.environ)
        environ.update(function_env)
        environ.update(
            PYTHONPATH=os.pathsep.join([FAKE_SMBUS2_DIR, root, CORE_MODULES_DIR]),
            EDGE_AGENT_TEST_I2C=json.dumps(chips_spec),
            stateDir=str(tmp_path / "state"),
            deviceId="pi-i2c",
        )
        function = subprocess.Popen(
            [sys.executable, "-c", "import functions.sensor_function, time; time.sleep(120)"],
            env=environ,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while not core.messages("IoTBlog/sensorData") and function.poll() is None:
                assert time.monotonic() < deadline, "no reading in 60 s"
                time.sleep(0.05)
        finally:
            if function.poll() is None:
                function.kill()
            stderr = function.communicate(timeout=10)[1].decode("utf-8", "replace")
    readings = core.messages("IoTBlog/sensorData")
    assert readings, "nothing published; the function says: " + stderr[-2000:]
    first = readings[0]
    assert first["device"] == "pi-i2c"
    values = {k: first.get(k) for k in ("temperature", "humidity", "pressure")}
    assert values == {
        "temperature": approx(27.25, abs=0.01),
        "humidity": approx(58.5, abs=0.01),
        "pressure": approx(1001.75, abs=0.001),
    }, first


# --- on a Pi's /dev, as an unprivileged user (namespace world, root only) -------------------


@pytest.fixture
def world(tmp_path) -> HatWorld:
    return HatWorld(tmp_path)


def _failed(result):
    assert "error" in result, "expected the sensor to fail, it opened: {}".format(result)
    return result


def test_world_on_a_pi_the_seam_opens_the_chips_over_i2c(world):
    world.chip = chips(environment={"temperature": 24.0, "humidity": 52.0, "pressure": 1003.5})

    result = world.run({"do": "open_sensor", "reads": 2})["results"][0]

    assert result["backend"] == "I2CSensor"
    assert (
        result["readings"]
        == [[approx(24.0, abs=0.01), approx(52.0, abs=0.01), approx(1003.5, abs=0.001)]] * 2
    )


def test_world_both_backends_read_the_same_chips(world):
    world.chip = chips(environment={"temperature": 26.5, "humidity": 33.0, "pressure": 1020.0})

    i2c = world.open("i2c", reads=1)["readings"][0]
    library = world.open("sensehat", reads=1)["readings"][0]

    assert i2c == [approx(v, abs=0.01) for v in library]


def test_world_no_bus_node(world):
    world.without_node("/dev/i2c-1")

    result = _failed(world.open("i2c"))

    assert result["error"] == "SensorError" and result["cause"] == "FileNotFoundError"
    assert "no I2C bus /dev/i2c-1" in result["message"]
    assert "sudo raspi-config nonint do_i2c 0" in result["message"]


def test_world_not_in_the_i2c_group(world):
    world.user["groups"] = [GROUPS["hat-video"], GROUPS["hat-input"]]

    result = _failed(world.open("i2c"))

    assert result["cause"] == "PermissionError"
    assert result["message"].startswith(
        "permission denied opening the I2C bus /dev/i2c-1 as ggc_user: add the user to the "
        "i2c group (`sudo usermod -aG i2c ggc_user`"
    )


def test_world_on_a_pi_without_the_hat_is_an_error_not_a_fake(world):
    world.chip = chips(hts221={"present": False}, lps25h={"present": False})

    result = _failed(world.run({"do": "open_sensor"})["results"][0])

    assert result["error"] == "SensorError"
    assert "no answer from the HTS221" in result["message"]
