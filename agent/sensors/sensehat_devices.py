"""What the ``sense_hat`` library needs from the machine, found the way the library finds it.

sense-hat 2.6 (``sense_hat/sense_hat.py``, ``stick.py``) looks for:

* the framebuffer whose ``/sys/class/graphics/fbN/name`` is ``RPi-Sense FB``, then
  checks that ``/dev/fbN`` exists;
* any ``/dev/i2c*`` (RTIMULib then opens ``/dev/i2c-1`` for the HTS221 and LPS25H);
* the joystick whose ``/sys/class/input/eventN/device/name`` is ``Raspberry Pi
  Sense HAT Joystick``, and opens ``/dev/input/eventN`` for reading;
* its RTIMU settings folder ``<passwd home of the process uid>/.config/sense_hat``
  (``pwd.getpwuid(os.getuid())``, not ``$HOME``), created if missing, into which
  it copies ``/etc/RTIMULib.ini``.

:func:`diagnose` repeats those look-ups and names each thing that is absent or
not accessible, with what to do about it, so a failed ``SenseHat()`` becomes an
error a person can act on. :func:`locate` gives the device nodes it found, for a
deployment that maps them into a Greengrass container.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import List, Optional

FRAMEBUFFER_NAME = "RPi-Sense FB"
JOYSTICK_NAME = "Raspberry Pi Sense HAT Joystick"
SETTINGS_FOLDER = os.path.join(".config", "sense_hat")
SETTINGS_FILE = "RTIMULib.ini"
SYSTEM_SETTINGS = "/etc/RTIMULib.ini"
I2C_BUS = "/dev/i2c-1"

_CONTAINER_HINT = (
    "in a Greengrass V1 container it must be a local device resource of the sensor function "
    "(deploy --framebuffer/--joystick name the nodes)"
)


@dataclass(frozen=True)
class SenseHatNodes:
    """Device nodes of the Sense HAT as sysfs names them (``None``: not found by name)."""

    framebuffer: Optional[str]
    joystick: Optional[str]
    i2c: Optional[str]


def _read_name(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _by_name(pattern: str, name_file: str, wanted: str, dev_dir: str) -> Optional[str]:
    for entry in sorted(glob.glob(pattern)):
        if _read_name(os.path.join(entry, name_file)) == wanted:
            return os.path.join(dev_dir, os.path.basename(entry))
    return None


def locate(sys_class: str = "/sys/class", dev: str = "/dev") -> SenseHatNodes:
    """The framebuffer and joystick nodes sysfs names as the Sense HAT's, and the I2C bus."""
    framebuffer = _by_name(
        os.path.join(sys_class, "graphics", "fb*"), "name", FRAMEBUFFER_NAME, dev
    )
    joystick = _by_name(
        os.path.join(sys_class, "input", "event*"),
        os.path.join("device", "name"),
        JOYSTICK_NAME,
        os.path.join(dev, "input"),
    )
    i2c = os.path.join(dev, "i2c-1")
    return SenseHatNodes(framebuffer, joystick, i2c if os.path.exists(i2c) else None)


def settings_folder(uid: Optional[int] = None) -> str:
    """``<passwd home>/.config/sense_hat`` for ``uid``; KeyError if the uid has no passwd entry."""
    import pwd

    uid = os.getuid() if uid is None else uid
    return os.path.join(pwd.getpwuid(uid).pw_dir, SETTINGS_FOLDER)


def diagnose(sys_class: str = "/sys/class", dev: str = "/dev") -> List[str]:
    """Everything the library needs that this process cannot find or use; empty if all is there."""
    problems: List[str] = []
    nodes = locate(sys_class, dev)
    problems.extend(_framebuffer_problems(nodes, sys_class))
    problems.extend(_i2c_problems(dev))
    problems.extend(_joystick_problems(nodes, sys_class))
    problems.extend(_settings_problems())
    return problems


def _framebuffer_problems(nodes: SenseHatNodes, sys_class: str) -> List[str]:
    if nodes.framebuffer is None:
        return [
            "no framebuffer named {!r}: no {}/graphics/fb*/name says so (is the HAT seated and "
            "its overlay loaded? in a Greengrass container, the sensor function needs sysfs "
            "access)".format(FRAMEBUFFER_NAME, sys_class)
        ]
    if not os.path.exists(nodes.framebuffer):
        return [
            "the Sense HAT framebuffer is {} (sysfs names it {!r}) but {} does not exist "
            "here: {}".format(
                nodes.framebuffer, FRAMEBUFFER_NAME, nodes.framebuffer, _CONTAINER_HINT
            )
        ]
    return []


def _i2c_problems(dev: str) -> List[str]:
    bus = os.path.join(dev, "i2c-1")
    if not glob.glob(os.path.join(dev, "i2c*")):
        return [
            "no {}/i2c* device: enable I2C (`sudo raspi-config nonint do_i2c 0`, or "
            "raspi-config > Interface Options > I2C); in a Greengrass container {} must be a "
            "local device resource".format(dev, bus)
        ]
    if os.path.exists(bus) and not os.access(bus, os.R_OK | os.W_OK):
        return [
            "{} is not readable and writable by uid {}: add the user to the i2c group "
            "(`sudo usermod -aG i2c USER`, then log in again or restart the Greengrass "
            "core)".format(bus, os.getuid())
        ]
    return []


def _joystick_problems(nodes: SenseHatNodes, sys_class: str) -> List[str]:
    if nodes.joystick is None:
        return [
            "no input device named {!r}: no {}/input/event*/device/name says so (in a Greengrass "
            "container, the sensor function needs sysfs access)".format(JOYSTICK_NAME, sys_class)
        ]
    if not os.path.exists(nodes.joystick):
        return [
            "the Sense HAT joystick is {} (sysfs names it {!r}) but {} does not exist here: "
            "{}".format(nodes.joystick, JOYSTICK_NAME, nodes.joystick, _CONTAINER_HINT)
        ]
    if not os.access(nodes.joystick, os.R_OK):
        return [
            "the Sense HAT joystick {} is not readable by uid {}: add the user to group "
            "input".format(nodes.joystick, os.getuid())
        ]
    return []


def _settings_problems() -> List[str]:
    uid = os.getuid()
    try:
        folder = settings_folder(uid)
    except KeyError:
        return [
            "uid {} has no entry in /etc/passwd, and sense_hat keeps its RTIMU settings under "
            "that entry's home: create the user (e.g. useradd --system --create-home) or run "
            "as one that exists".format(uid)
        ]
    settings = os.path.join(folder, SETTINGS_FILE)
    if os.path.isfile(settings) and os.access(settings, os.R_OK):
        return []  # prepared by the operator: the library writes nothing
    parent = folder
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if os.path.isdir(folder):
        if not os.access(folder, os.W_OK | os.X_OK):
            return [_settings_hint(folder, uid, "is not writable")]
    elif not os.access(parent, os.W_OK | os.X_OK):
        return [_settings_hint(folder, uid, "does not exist and {} is not writable".format(parent))]
    return []


def _settings_hint(folder: str, uid: int, what: str) -> str:
    return (
        "sense_hat's settings folder {} (under the passwd home of uid {}, not $HOME) {}: create "
        "it owned by that user and copy {} into it".format(folder, uid, what, SYSTEM_SETTINGS)
    )
