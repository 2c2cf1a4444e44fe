"""Child of :mod:`sense_hat_world`: builds a Raspberry Pi's view of the Sense HAT, then reads it.

Runs as root inside a private mount namespace (``unshare --mount``), so every
mount below is seen by this process only and the machine's own ``/sys``,
``/dev``, ``/etc`` and ``/home`` are left alone:

* ``/sys/class``: a tmpfs with the ``graphics/fbN/name``,
  ``input/eventN/device/name`` and ``thermal`` files the spec describes;
* ``/dev``: a tmpfs with ``null``/``zero``/``urandom``/``random`` and the
  spec's device files (owner group and mode as on a Pi), and a fresh ``shm``;
* ``/etc``: an overlay adding the run-as user to ``passwd`` and the
  ``RTIMULib.ini`` that python3-sense-hat installs;
* ``/home``: a tmpfs with the user's home as the spec prepares it;
* any directory on the way to the interpreter or the code that the user could
  not traverse: an overlay whose top is world-searchable.

Then it imports what it needs, drops to the user's uid, gid and groups, sets
``$HOME`` somewhere else than the passwd home, runs the spec's actions with the
installed ``sense_hat`` (on the ``RTIMU`` stand-in) and prints one JSON line.
"""

import json
import os
import stat
import subprocess
import sys
import traceback


def _mount(*args):
    subprocess.run(("mount",) + args, check=True)


def _write(path, text, mode=0o644, uid=0, gid=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def _overlay(target, scratch, name, top_mode=None):
    upper = os.path.join(scratch, name, "upper")
    work = os.path.join(scratch, name, "work")
    os.makedirs(upper)
    os.makedirs(work)
    if top_mode is not None:
        st = os.stat(target)
        os.chown(upper, st.st_uid, st.st_gid)
        os.chmod(upper, top_mode)
    _mount(
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir={target},upperdir={upper},workdir={work}",
        target,
    )


def _open_ancestors(paths, scratch):
    """Overlay every directory on the way to ``paths`` that others cannot traverse."""
    closed = []
    for path in paths:
        parts = os.path.realpath(path).split(os.sep)
        for i in range(2, len(parts) + 1):
            directory = os.sep.join(parts[:i])
            searchable = not os.path.isdir(directory) or os.stat(directory).st_mode & stat.S_IXOTH
            if not searchable and directory not in closed:
                closed.append(directory)
    for n, directory in enumerate(sorted(closed, key=len)):
        mode = stat.S_IMODE(os.stat(directory).st_mode) | 0o055
        _overlay(directory, scratch, f"open-{n}", top_mode=mode)


def build(spec):
    scratch = spec["scratch"]
    _open_ancestors(spec["readable"], scratch)

    _mount("-t", "tmpfs", "-o", "mode=755,size=1m", "tmpfs", "/sys/class")
    for entry in spec["framebuffers"]:
        _write(f"/sys/class/graphics/{entry['sys']}/name", entry["name"] + "\n")
    for entry in spec["inputs"]:
        _write(f"/sys/class/input/{entry['sys']}/device/name", entry["name"] + "\n")
    if spec.get("cpu_millidegrees") is not None:
        _write("/sys/class/thermal/thermal_zone0/temp", "%d\n" % spec["cpu_millidegrees"])

    _mount("-t", "tmpfs", "-o", "mode=755,size=4m", "tmpfs", "/dev")
    for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
        os.mknod("/dev/" + name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    os.makedirs("/dev/shm")
    os.chmod("/dev/shm", 0o1777)
    for node in spec["nodes"]:
        # A regular file where the Pi has a character device: the library only
        # checks it exists (framebuffer) or opens it (joystick, I2C bus).
        _write(node["path"], "", mode=node["mode"], gid=node["gid"])

    _overlay("/etc", scratch, "etc")
    user = spec["user"]
    if user["in_passwd"]:
        with open("/etc/passwd", "a") as handle:
            handle.write("{name}:x:{uid}:{gid}::{home}:/usr/sbin/nologin\n".format(**user))
    with open("/etc/group", "a") as handle:
        for name, gid in spec["groups"].items():
            handle.write(f"{name}:x:{gid}:{user['name']}\n")
    if spec["system_ini"] is not None:
        _write("/etc/RTIMULib.ini", spec["system_ini"])

    _mount("-t", "tmpfs", "-o", "mode=755,size=1m", "tmpfs", "/home")
    if spec.get("model") is not None:
        _write("/home/device-tree-model", spec["model"] + "\0")
    home = spec["home"]
    if home["exists"]:
        owner = user["uid"] if home["owner"] == "user" else 0
        os.makedirs(user["home"])
        if home["settings"]:
            folder = os.path.join(user["home"], ".config", "sense_hat")
            _write(os.path.join(folder, "RTIMULib.ini"), home["settings"], uid=owner, gid=owner)
            for directory in (folder, os.path.dirname(folder)):
                os.chown(directory, owner, owner)
        os.chown(user["home"], owner, owner)
        os.chmod(user["home"], home["mode"])


def run(actions, environ_home):
    if actions and actions[0]["do"] == "function":
        # A deployed function, until the parent kills it; nothing else loaded: its peak
        # memory is measured.
        import function_child

        os.environ.update(actions[0]["environ"])
        function_child.run(actions[0]["function"])
        return {"results": [], "warnings": [], "environ_home_files": []}
    # Everything is imported as root: the user may not read the interpreter's files.
    import logging

    import sense_hat  # noqa: F401  the installed library, on the RTIMU stand-in

    from agent.sensors import open_sensor
    from agent.sensors.sensehat_devices import diagnose, locate

    warnings = []

    class Collect(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logging.getLogger("agent").addHandler(Collect(logging.WARNING))
    results = []
    for action in actions:
        kind = action["do"]
        try:
            if kind == "diagnose":
                nodes = locate()
                results.append(
                    {
                        "problems": diagnose(),
                        "nodes": [nodes.framebuffer, nodes.joystick, nodes.i2c],
                    }
                )
                continue
            if kind == "emulator":
                results.append(_emulator(action))
                continue
            if kind == "sensor":
                # The seam, with the backend named, as --sensor or EDGE_AGENT_SENSOR names it.
                sensor = open_sensor(action.get("backend", "sensehat"), **action.get("options", {}))
            else:  # "open_sensor": the seam, as the sensor function calls it
                sensor = open_sensor(environ={}, model_path="/home/device-tree-model")
            readings = _play(sensor, action)
            sensor.close()
            result = {"backend": type(sensor).__name__, "readings": readings}
            if action.get("read_after_close"):
                try:
                    sensor.read()
                except Exception as exc:
                    result["after_close"] = "{}: {}".format(type(exc).__name__, exc)
            results.append(result)
        except Exception as exc:  # reported to the test, which asserts on it
            cause = exc.__cause__
            results.append(
                {
                    "error": type(exc).__name__,
                    "message": str(exc),
                    "cause": type(cause).__name__ if cause else None,
                    "traceback": traceback.format_exc(),
                }
            )
    return {
        "results": results,
        "warnings": warnings,
        "environ_home_files": _files(environ_home),
    }


def _play(sensor, action):
    """Read ``reads`` times ``interval`` s apart, then follow ``script``: ``"read"``, or
    ``{"environment": {...}, "wait": s}`` (the chips' environment changes, then ``wait``)."""
    import time

    import sense_hat_chips

    readings = []

    def read():
        reading = sensor.read()
        readings.append([reading.temperature, reading.humidity, reading.pressure])

    for n in range(action.get("reads", 0)):
        if n:
            time.sleep(action.get("interval", 0.0))
        read()
    for step in action.get("script", []):
        if step == "read":
            read()
        else:
            sense_hat_chips.current().environment.update(**step["environment"])
            time.sleep(step.get("wait", 0.0))
    return readings


def _emulator(action):
    """Play steps of a scenario through the emulator backend, in virtual scenario time."""
    import time
    import warnings

    from agent.clock import VirtualClock
    from agent.sensors import open_sensor

    clock = VirtualClock()
    steps = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sensor = open_sensor("emulator", clock=clock, environ=action.get("environ", {}))
        driven = sensor.driver is not None
        for step in action["steps"]:
            clock.advance(step["advance"])
            time.sleep(step.get("sleep", 0.0))
            metric, (low, high) = step["metric"], step["between"]
            deadline = time.monotonic() + step.get("within", 8.0)
            while True:
                reading = sensor.read()
                value = getattr(reading, metric)
                if (value is not None and low <= value <= high) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            steps.append([reading.temperature, reading.humidity, reading.pressure])
        sensor.close()
    return {
        "steps": steps,
        "headless": driven,
        "warnings": [str(w.message) for w in caught],
        "lock_left": os.path.exists("/dev/shm/rpi-sense-emu-pid"),
        "shm": sorted(os.listdir("/dev/shm")),
    }


def _files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def main():
    spec = json.loads(sys.stdin.read())
    build(spec)
    if spec["chip"] is not None:
        os.environ["EDGE_AGENT_TEST_I2C"] = spec["chip"]
    if spec["smbus2"] == "absent":
        sys.modules["smbus2"] = None  # not installed: import smbus2 raises ImportError
    else:
        import smbus2  # noqa: F401  the chip model's stand-in, imported before the privileges go
    user = spec["user"]
    # $HOME says one place, the passwd entry another: the library must use the passwd home.
    environ_home = spec["environ_home"]
    os.makedirs(environ_home)
    os.chown(environ_home, user["uid"], user["gid"])
    os.environ["HOME"] = environ_home
    backends = {a.get("environ", {}).get("EDGE_AGENT_SENSOR") for a in spec["actions"]}
    if any(a["do"] != "function" for a in spec["actions"]) or "sensehat" in backends:
        # A function loads only what its backend needs: its peak memory is measured.
        import sense_hat  # noqa: F401
        import sense_hat_chips  # noqa: F401

        import agent.sensors.i2c  # noqa: F401  before the privileges go
        import agent.sensors.sensehat  # noqa: F401
        import agent.sensors.sensehat_devices  # noqa: F401

    os.setgroups(user["groups"])
    os.setgid(user["gid"])
    os.setuid(user["uid"])
    report = run(spec["actions"], environ_home)
    report["passwd_home_files"] = _files(user["home"])
    settings = os.path.join(user["home"], ".config", "sense_hat", "RTIMULib.ini")
    if os.path.isfile(settings):
        with open(settings) as handle:
            report["passwd_home_settings"] = handle.read()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
