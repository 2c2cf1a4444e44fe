"""The Sense HAT backend over the installed ``sense_hat`` library, on a Pi built in a namespace.

Each test builds the machine the library looks at (sysfs names, device files,
the run-as user's passwd entry and home, ``/etc/RTIMULib.ini``) in a private
mount namespace and runs the agent there as an unprivileged user. The library
is the real package; only the ``RTIMU`` C extension under it is a stand-in:
RTIMULib's drivers over a register-level model of the HTS221 and LPS25H, whose
conversions take the time the datasheets give. See ``sense_hat_world.py``.
The ``i2c`` backend's own tests in that world are in ``test_i2c_sensor.py``.
"""

from __future__ import annotations

import pytest
from sense_hat_world import GROUPS, SYSTEM_INI, UID, HatWorld, chips

# The chips' resolution through their calibration is a few thousandths; the rest is rounding.
approx = pytest.approx
CLOSE = 0.01


@pytest.fixture
def world(tmp_path) -> HatWorld:
    return HatWorld(tmp_path)


def _failed(result):
    assert "error" in result, "expected the sensor to fail, it opened: {}".format(result)
    return result


def _says(result, text: str) -> bool:
    """Whether the error message says ``text`` (the hint's sentences start capitalised)."""
    return text.lower() in result["message"].lower()


# -- a healthy Pi ---------------------------------------------------------------


def test_reads_through_the_installed_library(world):
    world.chip = chips(environment={"temperature": 21.5, "humidity": 41.0, "pressure": 1012.0})

    result = world.open(
        script=[
            "read",
            # The chips convert every 80 ms (HTS221) and 40 ms (LPS25H): wait for the next sample.
            {"environment": {"humidity": 120.0}, "wait": 0.2},  # impossible: no reading
            "read",
            {"environment": {"humidity": 43.0, "pressure": 50.0}, "wait": 0.2},
            "read",
        ]
    )

    assert result["backend"] == "SenseHatSensor"
    first, impossible_humidity, impossible_pressure = result["readings"]
    assert first == [approx(21.5, abs=CLOSE), approx(41.0, abs=CLOSE), approx(1012.0, abs=CLOSE)]
    assert impossible_humidity == [approx(21.5, abs=CLOSE), None, approx(1012.0, abs=CLOSE)]
    assert impossible_pressure == [approx(21.5, abs=CLOSE), approx(43.0, abs=CLOSE), None]


def test_a_cold_start_never_publishes_an_empty_reading(world):
    # RTIMULib powers each chip up on first use; the first sample comes 80 ms (HTS221) and
    # 40 ms (LPS25H) later, and until then the library answers 0 for every value.
    world.chip = chips(environment={"temperature": 19.25, "humidity": 63.5, "pressure": 998.0})

    result = world.open(reads=1)

    assert result["readings"] == [
        [approx(19.25, abs=CLOSE), approx(63.5, abs=CLOSE), approx(998.0, abs=CLOSE)]
    ]


def test_an_impossible_value_at_start_is_a_missing_reading_not_a_failed_start(world):
    world.chip = chips(environment={"humidity": 104.0})  # condensation: past H1, unclamped

    result = world.open(reads=1)

    assert result["readings"] == [[approx(21.5, abs=CLOSE), None, approx(1012.0, abs=CLOSE)]]


def test_a_chip_that_never_converts_is_an_error_not_empty_readings(world):
    world.chip = chips(hts221={"stuck": True})

    result = _failed(world.open(reads=1))

    assert result["error"] == "SensorError"
    assert _says(result, "gave no valid temperature or humidity within 1 s of start")


def test_settings_go_under_the_passwd_home_not_home(world):
    report = world.run({"do": "sensor", "reads": 1})

    assert "error" not in report["results"][0], report["results"][0]
    # The library copied /etc/RTIMULib.ini into the passwd home of the run-as user...
    assert report["passwd_home_files"] == [".config/sense_hat/RTIMULib.ini"]
    assert report["passwd_home_settings"] == SYSTEM_INI
    # ...and ignored $HOME.
    assert report["environ_home_files"] == []


def test_noise_is_the_chips_and_stays_in_range(world):
    world.chip = chips(noise=0.2, seed=7)

    readings = world.open(reads=10, interval=0.1)["readings"]  # a new sample every 80 ms

    temperatures = [t for t, _, _ in readings]
    humidities = [h for _, h, _ in readings]
    assert len(set(temperatures)) > 5 and len(set(humidities)) > 5
    assert all(abs(t - 21.5) < 1.5 for t in temperatures)
    assert all(abs(h - 41.0) < 1.5 for h in humidities)


def test_cpu_heat_is_compensated_from_the_thermal_zone(world):
    world.chip = chips(environment={"temperature": 30.0, "humidity": 40.0})
    world.cpu_millidegrees = 46000

    result = world.open(reads=1, compensation_factor=2.0)

    assert result["readings"][0][0] == approx(30.0 - (46.0 - 30.0) / 2.0, abs=CLOSE)


def test_without_a_cpu_temperature_it_warns_once_and_reads_on(world):
    world.chip = chips(environment={"temperature": 30.0, "humidity": 40.0})

    report = world.run({"do": "sensor", "options": {"compensation_factor": 2.0}, "reads": 3})

    expected = [approx(30.0, abs=CLOSE), approx(40.0, abs=CLOSE), approx(1012.0, abs=CLOSE)]
    assert report["results"][0]["readings"] == [expected] * 3
    assert [w for w in report["warnings"] if "not compensated" in w] == [
        "cannot read the CPU temperature from /sys/class/thermal/thermal_zone0/temp "
        "([Errno 2] No such file or directory: '/sys/class/thermal/thermal_zone0/temp'); "
        "temperature is not compensated"
    ]


def test_without_pressure_the_lps25h_is_left_alone(world):
    world.chip = chips(lps25h={"present": False})

    assert world.open(reads=1, with_pressure=False)["readings"] == [
        [approx(21.5, abs=CLOSE), approx(41.0, abs=CLOSE), None]
    ]
    assert "Pressure Init Failed" in _failed(world.open(reads=1))["message"]


def test_reading_after_close_is_a_sensor_error(world):
    [result] = world.run({"do": "sensor", "reads": 1, "read_after_close": True})["results"]

    assert result["after_close"] == "SensorError: the sensehat sensor is closed"


def test_an_operator_prepared_settings_folder_works_in_a_read_only_home(world):
    # The README's step: the folder and RTIMULib.ini exist; nothing is written at start.
    world.home = {"exists": True, "owner": "root", "mode": 0o555, "settings": SYSTEM_INI}

    result = world.open(reads=1)

    assert result["readings"] == [[approx(21.5, abs=CLOSE), approx(41.0, abs=CLOSE), 1012.0]]


def test_on_a_pi_without_smbus2_the_seam_opens_the_library(world):
    # A Pi that has the OS's python3-sense-hat but not smbus2; with smbus2 the default is
    # the i2c backend (test_i2c_sensor.py).
    world.smbus2 = "absent"

    result = world.run({"do": "open_sensor", "reads": 1})["results"][0]

    assert result["backend"] == "SenseHatSensor"
    assert result["readings"] == [[approx(21.5, abs=CLOSE), approx(41.0, abs=CLOSE), 1012.0]]


# -- what is missing, named ------------------------------------------------------


def test_no_framebuffer_with_the_sense_hat_name(world):
    world.framebuffers = [{"sys": "fb0", "name": "vc4drmfb"}]

    result = _failed(world.open())

    assert result["error"] == "SensorError" and result["cause"] == "OSError"
    assert _says(result, "Cannot detect RPi-Sense FB device")
    assert _says(result, "no framebuffer named 'RPi-Sense FB'")
    assert _says(result, "/sys/class/graphics/fb*/name")


def test_framebuffer_found_by_name_but_its_node_is_not_mapped(world):
    # This Pi names fb0 the Sense HAT's; the container got the default /dev/fb1.
    world.framebuffers = [{"sys": "fb0", "name": "RPi-Sense FB"}]

    result = _failed(world.open())

    assert _says(result, "/dev/fb0 does not exist")
    assert _says(result, "local device resource")


def test_no_joystick_is_a_sensor_error_not_a_runtime_error(world):
    world.inputs = [{"sys": "event1", "name": "vc4-hdmi"}]

    result = _failed(world.open())

    assert result["error"] == "SensorError" and result["cause"] == "RuntimeError"
    assert _says(result, "unable to locate SenseHAT joystick device")
    assert _says(result, "no input device named 'Raspberry Pi Sense HAT Joystick'")


def test_joystick_not_readable_names_the_input_group(world):
    world.user["groups"] = [GROUPS["hat-video"], GROUPS["hat-i2c"]]

    result = _failed(world.open())

    assert result["cause"] == "PermissionError"
    assert _says(result, "/dev/input/event0 is not readable by uid {}".format(UID))
    assert _says(result, "group input")


def test_a_uid_without_passwd_entry_is_a_sensor_error_not_a_key_error(world):
    world.user["in_passwd"] = False

    result = _failed(world.open())

    assert result["error"] == "SensorError" and result["cause"] == "KeyError"
    assert _says(result, "uid {} has no entry in /etc/passwd".format(UID))


def test_a_settings_folder_the_user_cannot_create(world):
    world.home = {"exists": True, "owner": "root", "mode": 0o755, "settings": ""}

    result = _failed(world.open())

    assert result["cause"] == "PermissionError"
    assert _says(result, "/home/ggc_user/.config/sense_hat")
    assert _says(result, "passwd home of uid {}, not $HOME".format(UID))
    assert _says(result, "copy /etc/RTIMULib.ini")


def test_no_i2c_bus(world):
    world.without_node("/dev/i2c-1")

    result = _failed(world.open())

    assert _says(result, "Cannot access I2C")
    assert _says(result, "no /dev/i2c* device")
    assert "sudo raspi-config nonint do_i2c 0" in result["message"]


def test_i2c_bus_not_accessible_fails_the_chip_init(world):
    world.user["groups"] = [GROUPS["hat-video"], GROUPS["hat-input"]]

    result = _failed(world.open())

    assert _says(result, "Humidity Init Failed")
    assert _says(result, "HTS221") and "the i2c group" in result["message"]
    assert "sudo usermod -aG i2c" in result["message"]


def test_a_silent_humidity_chip(world):
    world.chip = chips(hts221={"present": False})

    result = _failed(world.open())

    assert result["error"] == "SensorError" and result["cause"] == "OSError"
    assert _says(result, "Humidity Init Failed") and "HTS221" in result["message"]


def test_on_a_pi_a_missing_hat_is_an_error_not_a_fake(world):
    world.framebuffers = []
    world.smbus2 = "absent"  # the library's error; the i2c backend's: test_i2c_sensor.py

    result = _failed(world.run({"do": "open_sensor"})["results"][0])

    assert result["error"] == "SensorError"
    assert _says(result, "Cannot detect RPi-Sense FB device")


def test_diagnose_names_nothing_on_a_healthy_pi(world):
    [diagnosis] = world.run({"do": "diagnose"})["results"]

    assert diagnosis == {"problems": [], "nodes": ["/dev/fb1", "/dev/input/event0", "/dev/i2c-1"]}
