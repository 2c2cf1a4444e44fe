"""The Sense HAT backend over the installed ``sense_hat`` library, on a Pi built in a namespace.

Each test builds the machine the library looks at (sysfs names, device files,
the run-as user's passwd entry and home, ``/etc/RTIMULib.ini``) in a private
mount namespace and runs the agent there as an unprivileged user. The library
is the real package; only the ``RTIMU`` C extension under it is a stand-in
that answers as the HTS221 and LPS25H do. See ``sense_hat_world.py``.
"""

from __future__ import annotations

import pytest
from sense_hat_world import GROUPS, SYSTEM_INI, UID, HatWorld, hts221, lps25h


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
    # Each reading asks the HTS221 twice (temperature, then humidity) and the LPS25H once.
    world.chip = {
        "hts221": hts221(
            [0, 0, 0, 0],  # warm-up: no sample yet after init
            [1, 41.0, 1, 21.5],
            [1, 41.0, 1, 21.5],  # reading 1
            [1, 41.0, 1, 21.5],
            [1, 42.0, 0, 0],  # reading 2: temperature flagged invalid
            [1, 42.0, 1, 22.0],
            [1, 120.0, 1, 22.0],  # reading 3: humidity impossible
            [1, 120.0, 1, 22.0],
        ),
        "lps25h": lps25h([0, 0, 0, 0], [1, 1012.0, 1, 20.0], [0, 0, 0, 0], [1, 50.0, 1, 20.0]),
    }

    result = world.open(reads=3)

    assert result == {
        "backend": "SenseHatSensor",
        "readings": [[21.5, 41.0, 1012.0], [None, 42.0, None], [22.0, None, None]],
    }


def test_settings_go_under_the_passwd_home_not_home(world):
    report = world.run({"do": "sensor", "reads": 1})

    assert "error" not in report["results"][0], report["results"][0]
    # The library copied /etc/RTIMULib.ini into the passwd home of the run-as user...
    assert report["passwd_home_files"] == [".config/sense_hat/RTIMULib.ini"]
    assert report["passwd_home_settings"] == SYSTEM_INI
    # ...and ignored $HOME.
    assert report["environ_home_files"] == []


def test_noise_is_the_chips_and_stays_in_range(world):
    world.chip = {"noise": 0.2, "seed": 7}

    readings = world.open(reads=10)["readings"]

    temperatures = [t for t, _, _ in readings]
    humidities = [h for _, h, _ in readings]
    assert len(set(temperatures)) > 5 and len(set(humidities)) > 5
    assert all(abs(t - 21.5) < 1.5 for t in temperatures)
    assert all(abs(h - 41.0) < 1.5 for h in humidities)


def test_cpu_heat_is_compensated_from_the_thermal_zone(world):
    world.chip = {"hts221": hts221([0, 0, 0, 0], [1, 40.0, 1, 30.0])}
    world.cpu_millidegrees = 46000

    result = world.open(reads=1, compensation_factor=2.0)

    assert result["readings"][0][0] == pytest.approx(30.0 - (46.0 - 30.0) / 2.0)


def test_without_a_cpu_temperature_it_warns_once_and_reads_on(world):
    world.chip = {"hts221": hts221([0, 0, 0, 0], [1, 40.0, 1, 30.0])}

    report = world.run({"do": "sensor", "options": {"compensation_factor": 2.0}, "reads": 3})

    assert report["results"][0]["readings"] == [[30.0, 40.0, 1012.0]] * 3
    assert [w for w in report["warnings"] if "not compensated" in w] == [
        "cannot read the CPU temperature from /sys/class/thermal/thermal_zone0/temp "
        "([Errno 2] No such file or directory: '/sys/class/thermal/thermal_zone0/temp'); "
        "temperature is not compensated"
    ]


def test_without_pressure_the_lps25h_is_left_alone(world):
    world.chip = {"lps25h": {"init": False, "answers": [[0, 0, 0, 0]]}}

    assert world.open(reads=1, with_pressure=False)["readings"] == [[21.5, 41.0, None]]
    assert "Pressure Init Failed" in _failed(world.open(reads=1))["message"]


def test_reading_after_close_is_a_sensor_error(world):
    [result] = world.run({"do": "sensor", "reads": 1, "read_after_close": True})["results"]

    assert result["after_close"] == "SensorError: the sensehat sensor is closed"


def test_an_operator_prepared_settings_folder_works_in_a_read_only_home(world):
    # The README's step: the folder and RTIMULib.ini exist; nothing is written at start.
    world.home = {"exists": True, "owner": "root", "mode": 0o555, "settings": SYSTEM_INI}

    result = world.open(reads=1)

    assert result["readings"] == [[21.5, 41.0, 1012.0]]


def test_on_a_pi_the_seam_opens_the_sense_hat(world):
    result = world.run({"do": "open_sensor", "reads": 1})["results"][0]

    assert result == {"backend": "SenseHatSensor", "readings": [[21.5, 41.0, 1012.0]]}


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


def test_i2c_bus_not_accessible_fails_the_chip_init(world):
    world.user["groups"] = [GROUPS["hat-video"], GROUPS["hat-input"]]

    result = _failed(world.open())

    assert _says(result, "Humidity Init Failed")
    assert _says(result, "HTS221") and "group i2c" in result["message"]


def test_a_silent_humidity_chip(world):
    world.chip = {"hts221": {"init": False, "answers": [[0, 0, 0, 0]]}}

    result = _failed(world.open())

    assert result["error"] == "SensorError" and result["cause"] == "OSError"
    assert _says(result, "Humidity Init Failed") and "HTS221" in result["message"]


def test_on_a_pi_a_missing_hat_is_an_error_not_a_fake(world):
    world.framebuffers = []

    result = _failed(world.run({"do": "open_sensor"})["results"][0])

    assert result["error"] == "SensorError"
    assert _says(result, "Cannot detect RPi-Sense FB device")


def test_diagnose_names_nothing_on_a_healthy_pi(world):
    [diagnosis] = world.run({"do": "diagnose"})["results"]

    assert diagnosis == {"problems": [], "nodes": ["/dev/fb1", "/dev/input/event0", "/dev/i2c-1"]}
