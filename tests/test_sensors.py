"""The sensor shim: Sense HAT backend against a simulated chip, fake scenarios, replay, the seam."""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import List

import pytest

from agent.clock import VirtualClock
from agent.errors import BadSensorBackend, ConfigError, SensorError
from agent.sensors import Reading, Sensor, open_sensor
from agent.sensors.fake import SCENARIOS, FakeSensor
from agent.sensors.replay import ReplayFinished, ReplaySensor
from agent.sensors.sensehat import SenseHatSensor, chip_value

# --- Sense HAT backend -------------------------------------------------------
# Over the installed sense_hat library in a namespace: see test_sense_hat_library.py.


def test_chip_zero_is_no_reading_and_impossible_values_are_none():
    assert chip_value(0, "temperature") is None  # the library's "invalid" answer
    assert chip_value(0.0, "humidity") is None
    assert chip_value(21.5, "temperature") == 21.5
    assert chip_value(120.0, "humidity") is None
    assert chip_value(50.0, "pressure") is None
    assert chip_value(float("nan"), "temperature") is None
    assert chip_value(True, "humidity") is None


def test_missing_library_is_bad_backend_with_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sense_hat", None)
    with pytest.raises(BadSensorBackend, match="python3-sense-hat") as info:
        SenseHatSensor()
    assert isinstance(info.value, ImportError)


def test_bad_compensation_factor():
    with pytest.raises(ConfigError):
        SenseHatSensor(compensation_factor=0)


# --- fake backend ------------------------------------------------------------


def play(sensor: Sensor, clock: VirtualClock, seconds: float, step: float = 5.0) -> List[Reading]:
    readings = []
    for _ in range(int(seconds / step)):
        readings.append(sensor.read())
        clock.advance(step)
    return readings


def test_scenarios_are_exported_with_durations():
    assert set(SCENARIOS) >= {
        "steady",
        "ramp",
        "humid-spell",
        "heat-spike",
        "flapping",
        "noisy",
        "stuck",
        "invalid-zeros",
        "io-errors",
    }
    assert all(SCENARIOS[name].duration > 0 for name in SCENARIOS)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenarios_are_deterministic_by_seed(name):
    def run(seed: int) -> List[object]:
        clock = VirtualClock()
        sensor = FakeSensor(name, seed=seed, clock=clock)
        out: List[object] = []
        for _ in range(100):
            try:
                out.append(sensor.read())
            except SensorError as exc:
                out.append(str(exc))
            clock.advance(5)
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_steady(clock):
    readings = play(FakeSensor("steady", seed=1, clock=clock), clock, 600)
    assert all(21.7 < r.temperature < 22.3 and 39 < r.humidity < 41 for r in readings)
    assert all(1010 < r.pressure < 1016 for r in readings)
    assert len({r.temperature for r in readings}) > 100  # noise is real


def test_humid_spell_is_about_ten_minutes_above_the_band(clock):
    sensor = FakeSensor("humid-spell", seed=3, clock=clock)
    readings = play(sensor, clock, SCENARIOS["humid-spell"].duration)
    seconds_above = 5 * len([r for r in readings if r.humidity > 51])
    assert 600 <= seconds_above <= 660
    assert readings[0].humidity < 41 and readings[-1].humidity < 41
    assert max(r.humidity for r in readings) < 64
    assert all(r.temperature < 29 for r in readings)


def test_ramp_crosses_the_temperature_limit_and_holds(clock):
    readings = play(FakeSensor("ramp", seed=1, noise=0, clock=clock), clock, 900)
    assert readings[0].temperature == 22.0
    assert readings[60].temperature == pytest.approx(29.0)  # t = 300 s
    assert readings[120].temperature == 36.0 and readings[-1].temperature == 36.0


def test_heat_spike_lasts_sixty_seconds(clock):
    readings = play(FakeSensor("heat-spike", seed=1, clock=clock), clock, 600)
    assert len([r for r in readings if r.temperature > 31]) == 12


def test_flapping_stays_inside_the_hysteresis_band(clock):
    readings = play(FakeSensor("flapping", seed=5, clock=clock), clock, 600)
    assert all(49 < r.humidity < 51 for r in readings)
    assert any(r.humidity > 50 for r in readings) and any(r.humidity < 50 for r in readings)
    noisy = play(FakeSensor("flapping", seed=5, noise=10, clock=clock), clock, 600)
    assert all(49 < r.humidity < 51 for r in noisy)


def test_noisy_has_big_noise_and_outliers(clock):
    readings = play(FakeSensor("noisy", seed=11, clock=clock), clock, 3000)
    temperatures = [r.temperature for r in readings]
    assert max(temperatures) - min(temperatures) > 4
    outliers = [r for r in readings if abs(r.temperature - 22) > 7 or abs(r.humidity - 40) > 7]
    assert 0 < len(outliers) < 0.06 * len(readings)


def test_stuck_repeats_one_exact_reading(clock):
    readings = play(FakeSensor("stuck", seed=2, clock=clock), clock, 600)
    values = [(r.temperature, r.humidity, r.pressure) for r in readings]
    frozen = values[24]  # t = 120 s
    assert values[24:84] == [frozen] * 60  # until 420 s
    assert values[84] != frozen and values[23] != frozen
    assert len(set(values[:24])) == 24


def test_invalid_zeros_give_none(clock):
    readings = play(FakeSensor("invalid-zeros", seed=4, clock=clock), clock, 600)
    missing = [r for r in readings if r.temperature is None or r.humidity is None]
    assert 0 < len(missing) < len(readings) / 4
    assert all(r.pressure is not None for r in readings)


def test_io_errors_raise_sometimes(clock):
    sensor = FakeSensor("io-errors", seed=9, clock=clock)
    errors = 0
    for _ in range(200):
        try:
            sensor.read()
        except SensorError as exc:
            assert isinstance(exc, OSError)
            errors += 1
        clock.advance(5)
    assert 5 < errors < 50


def test_faults_layer_on_any_scenario(clock):
    sensor = FakeSensor("humid-spell", seed=1, clock=clock, faults={"io-errors": 0.5})
    with pytest.raises(SensorError):
        play(sensor, clock, 600)
    sensor = FakeSensor("ramp", seed=1, clock=clock, faults=("stuck",))
    readings = play(sensor, clock, 3000)
    assert any(a.temperature == b.temperature for a, b in zip(readings, readings[1:]))


def test_unknown_scenario_or_fault():
    with pytest.raises(ConfigError, match="humid-spell"):
        FakeSensor("monsoon")
    with pytest.raises(ConfigError, match="io-errors"):
        FakeSensor(faults=("gremlins",))


def test_fake_plays_from_its_start(clock):
    sensor = FakeSensor("heat-spike", seed=1, clock=clock, start=clock.time() - 150)
    assert sensor.read().temperature > 37
    assert sensor.read().ts == clock.time()


# --- replay backend ----------------------------------------------------------


def write(tmp_path, text: str):
    path = tmp_path / "log.csv"
    path.write_text(text)
    return path


def test_replay_epoch_rows_and_missing_cells(tmp_path):
    path = write(
        tmp_path,
        "timestamp,temperature,humidity,pressure\n"
        "1790000000,21.5,40.1,1013.2\n"
        "1790000005,,40.3,\n"
        "1790000010,oops,40.5,1013.1\n"
        "1790000020,22.0,40.7,1013.0\n",
    )
    sensor = ReplaySensor(path)
    readings = [sensor.read() for _ in range(4)]
    assert readings[0] == Reading(1_790_000_000.0, 21.5, 40.1, 1013.2)
    assert readings[1] == Reading(1_790_000_005.0, None, 40.3, None)
    assert readings[2].temperature is None
    assert readings[3].ts == 1_790_000_020.0
    assert sensor.period_hint == 5.0
    with pytest.raises(ReplayFinished) as info:
        sensor.read()
    assert isinstance(info.value, EOFError) and isinstance(info.value, SensorError)


def test_replay_iso_timestamps_without_pressure(tmp_path):
    path = write(
        tmp_path,
        "Timestamp, Temperature, Humidity\n"
        "2026-09-21T12:00:00Z,22.1,45\n"
        "2026-09-21T12:00:10+00:00,22.2,46\n"
        "2026-09-21 12:00:20,22.3,47\n",
    )
    sensor = ReplaySensor(str(path))
    readings = [sensor.read() for _ in range(3)]
    start = datetime(2026, 9, 21, 12, tzinfo=timezone.utc).timestamp()
    assert [r.ts for r in readings] == [start, start + 10, start + 20]
    assert readings[0].pressure is None
    assert sensor.period_hint == 10.0


def test_replay_loops_with_time_moving_on(tmp_path):
    path = write(tmp_path, "timestamp,temperature,humidity\n100,20,40\n105,21,41\n")
    sensor = ReplaySensor(path, loop=True)
    assert [sensor.read().ts for _ in range(5)] == [100, 105, 110, 115, 120]


def test_replay_bad_header_names_file_and_columns(tmp_path):
    path = write(tmp_path, "time,temp,hum\n1,2,3\n")
    with pytest.raises(ConfigError, match="timestamp,temperature,humidity") as info:
        ReplaySensor(path)
    assert str(path) in str(info.value)


def test_replay_missing_or_empty_file(tmp_path):
    with pytest.raises(ConfigError):
        ReplaySensor(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="no data rows"):
        ReplaySensor(write(tmp_path, "timestamp,temperature,humidity\n"))


# --- the seam ----------------------------------------------------------------


@pytest.fixture
def not_a_pi(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"QEMU Virtual Machine\x00")
    return str(model)


@pytest.fixture
def a_pi(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    return str(model)


def test_backend_by_argument(clock, not_a_pi):
    sensor = open_sensor("fake", clock=clock, environ={}, model_path=not_a_pi, scenario="ramp")
    assert isinstance(sensor, FakeSensor) and sensor.scenario.name == "ramp"


def test_backend_and_options_from_environment(tmp_path, not_a_pi):
    path = write(tmp_path, "timestamp,temperature,humidity\n1,20,40\n")
    env = {"EDGE_AGENT_SENSOR": "replay", "EDGE_AGENT_REPLAY": str(path)}
    assert isinstance(open_sensor(environ=env, model_path=not_a_pi), ReplaySensor)

    env = {"EDGE_AGENT_SENSOR": "fake", "EDGE_AGENT_SCENARIO": "noisy", "EDGE_AGENT_SEED": "3"}
    a = open_sensor(environ=env, model_path=not_a_pi, clock=VirtualClock())
    b = open_sensor(environ=env, model_path=not_a_pi, clock=VirtualClock())
    assert a.scenario.name == "noisy" and a.read() == b.read()
    # Explicit arguments win over the environment.
    c = open_sensor("fake", environ=env, model_path=not_a_pi, scenario="steady")
    assert c.scenario.name == "steady"


def test_process_environment_is_the_default(monkeypatch, not_a_pi):
    monkeypatch.setenv("EDGE_AGENT_SENSOR", "fake")
    monkeypatch.setenv("EDGE_AGENT_SCENARIO", "flapping")
    assert open_sensor(model_path=not_a_pi).scenario.name == "flapping"


def test_unknown_backend_lists_valid_names():
    with pytest.raises(BadSensorBackend, match="sensehat, emulator, fake, replay") as info:
        open_sensor("thermometer", environ={})
    assert isinstance(info.value, ImportError)


def test_bad_seed_or_missing_replay_path(not_a_pi):
    with pytest.raises(ConfigError, match="EDGE_AGENT_SEED"):
        open_sensor("fake", environ={"EDGE_AGENT_SEED": "x"}, model_path=not_a_pi)
    with pytest.raises(ConfigError, match="EDGE_AGENT_REPLAY"):
        open_sensor("replay", environ={}, model_path=not_a_pi)


def test_off_a_pi_default_is_fake_with_a_warning(not_a_pi, caplog):
    with caplog.at_level(logging.WARNING, logger="agent.sensors"):
        sensor = open_sensor(environ={}, model_path=not_a_pi)
    assert isinstance(sensor, FakeSensor)
    assert any("FAKE sensor" in r.getMessage() for r in caplog.records)


def test_no_model_file_means_not_a_pi(tmp_path):
    assert isinstance(open_sensor(environ={}, model_path=str(tmp_path / "none")), FakeSensor)


def test_on_a_pi_a_missing_library_is_an_error_not_a_fake(monkeypatch, a_pi, caplog):
    # Without smbus2 the Pi's default is the sense_hat library (with it: test_i2c_sensor.py).
    monkeypatch.setitem(sys.modules, "smbus2", None)
    monkeypatch.setitem(sys.modules, "sense_hat", None)
    with pytest.raises(BadSensorBackend):
        open_sensor(environ={}, model_path=a_pi)
    assert not any("FAKE" in r.getMessage() for r in caplog.records)
