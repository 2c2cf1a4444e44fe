"""The V2 components on a Raspberry Pi's own userland, installed with the network cut.

What ``deploy v2 plan --out DIR`` writes (the recipes, ``deployment.json`` and the
artifact files their URIs name, with the real aarch64 wheels from PyPI) is laid out in
a Debian 12 arm64 root (``pi_userland``: 64-bit Raspberry Pi OS's base, under
qemu-user) as the nucleus lays it out (``nucleus_lifecycle``: the aarch64 manifest,
artifacts unpacked, placeholders filled, ``Setenv`` applied). Its ``Install`` runs there
with no route anywhere (``unshare --net``), on the OS's Python 3.11; then the sensor
component's ``Run`` starts there against the nucleus stand-in (its socket inside the
root), under the access control the deployment gives it, with the chip model as the
Sense HAT on ``/dev/i2c-1``; its first reading reaches IoT Core with all three values.

Marked slow: a cold root takes ~10 min to build (cached in ``/var/cache/edge-agent-arm64``
afterwards); the checks themselves take about a minute under emulation. CI sets
``EDGE_AGENT_REQUIRE_ARM64=1``: there a missing tool fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pi_userland
import pytest
from helpers import wait_until
from nucleus_lifecycle import NucleusLayout, load_plan

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
SENSOR = "com.edgeagent.sensor"
ANOMALY = "com.edgeagent.anomaly"
ENVIRONMENT = {"temperature": 23.75, "humidity": 47.5, "pressure": 1008.25}


@pytest.fixture(scope="module")
def userland(tmp_path_factory):
    reason = pi_userland.unavailable()
    if reason:
        if os.environ.get("EDGE_AGENT_REQUIRE_ARM64") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    log = tmp_path_factory.mktemp("debootstrap") / "debootstrap.log"
    root, seconds = pi_userland.ensure_root(log)
    if seconds:
        print("built the arm64 userland in {:.0f} s: {}".format(seconds, root))
    return root


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """``deploy v2 plan --out DIR`` as an operator runs it: the aarch64 wheels from PyPI
    (cached after the first resolution), the armv7l manifest without wheels."""
    from deploy.cli import main

    out = tmp_path_factory.mktemp("plan")
    argv = ["v2", "plan", "--out", str(out), "--state", str(out / "state.json")]
    argv += ["--package-dir", str(tmp_path_factory.mktemp("package"))]
    argv += ["--device-arch", "aarch64", "--device-arch", "armv7l"]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def device(userland):
    """A folder of the userland for these tests (``/tmp/edge-agent-…`` there), removed after."""
    name = "tmp/edge-agent-{}".format(uuid.uuid4().hex[:8])
    folder = userland / name
    folder.mkdir(parents=True)
    yield "/" + name
    shutil.rmtree(folder, ignore_errors=True)


def _layout(userland, plan, device, component, architecture="aarch64"):
    return NucleusLayout(
        userland,
        plan,
        component,
        architecture,
        user=COMPONENT_USER,
        greengrass=device + "/greengrass/v2",
    )


# The nucleus runs components as ggc_user; any unprivileged uid shows the same.
COMPONENT_USER = (1000, 1000)


def _step(userland, layout, step, extra_env=None, timeout=900):
    env = layout.environ(extra_env)
    return pi_userland.run(
        userland,
        ["/bin/sh", "-c", layout.script(step)],
        env=env,
        cwd=layout.paths["work:path"],
        user=COMPONENT_USER,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def installed(userland, plan, device):
    """Both components laid out and their ``Install`` run once, with the network cut:
    component -> (layout, the step's result, seconds it took)."""
    results = {}
    for component in (SENSOR, ANOMALY):
        layout = _layout(userland, plan, device, component)
        started = time.monotonic()
        done = _step(userland, layout, "Install")
        results[component] = (layout, done, time.monotonic() - started)
    return results


def test_the_userland_is_a_pi_with_no_network(userland):
    shown = pi_userland.run(
        userland,
        [
            "python3",
            "-c",
            "import platform, socket; print(platform.machine(), platform."
            "python_version()); socket.create_connection(('151.101.0.223', 443), timeout=5)",
        ],
    )
    machine, version = shown.stdout.split()
    assert machine == "aarch64" and version.startswith("3.11.")
    assert "Network is unreachable" in shown.stderr


def test_both_components_install_offline_on_the_pi_and_a_restart_skips_it(userland, installed):
    assert sorted(installed) == [ANOMALY, SENSOR]
    for layout, done, took in installed.values():
        log = layout.host(layout.paths["work:path"]) / "install.log"
        details = log.read_text() if log.exists() else ""
        assert done.returncode == 0, done.stderr + details
        assert done.stderr == "" and done.stdout == ""
        venv = layout.paths["work:path"] + "/venv/bin/python"
        shown = pi_userland.run(
            userland,
            [
                venv,
                "-c",
                "import awscrt, awsiot.greengrasscoreipc.clientv2, platform; "
                "print(platform.machine(), awscrt.__file__)",
            ],
            user=COMPONENT_USER,
        )
        assert shown.returncode == 0, shown.stderr
        machine, where = shown.stdout.split()
        assert machine == "aarch64" and where.startswith(layout.paths["work:path"] + "/venv/")
        # The nucleus runs Install at every start: the next one must be a no-op, fast.
        started = time.monotonic()
        again = _step(userland, layout, "Install")
        assert again.returncode == 0 and again.stderr == ""
        assert time.monotonic() - started < max(took / 3, 5.0)


def test_armv7l_install_in_the_userland_is_one_line_naming_cause_and_remedy(userland, plan, device):
    layout = _layout(userland, plan, device + "/armv7l", SENSOR, architecture="arm")
    done = _step(userland, layout, "Install")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("edge-agent install: PyPI has no armv7l")
    assert "64-bit Raspberry Pi OS" in done.stderr and "--wheelhouse" in done.stderr


def test_the_installed_sensor_component_publishes_a_full_first_reading(
    userland, plan, device, installed
):
    from function_child import peak_rss_kb
    from v2_nucleus import FakeNucleus

    recipes, deployment = load_plan(plan)
    layout, done, _ = installed[SENSOR]
    assert done.returncode == 0, done.stderr
    # The chip model as smbus2, before the artifact's own (stand_ins/sense_hat_chips.py
    # says how), on /dev/i2c-1 of the test's folder.
    host = userland / device.lstrip("/")
    chips = host / "chips"
    chips.mkdir()
    shutil.copy(HERE / "stand_ins" / "sense_hat_chips.py", chips)
    shutil.copy(HERE / "stand_ins" / "i2c_bus" / "smbus2.py", chips)
    (host / "dev").mkdir()
    (host / "dev" / "i2c-1").write_bytes(b"")
    for path in (host, chips, host / "dev", host / "dev" / "i2c-1"):
        os.chown(path, *COMPONENT_USER)
    # The deployment's merge, as an operator's would: where the state goes, the name.
    layout.configuration.update(stateDir=device + "/state", deviceId="pi-arm64")
    with FakeNucleus(socket_dir=str(host)) as nucleus:
        os.chown(nucleus._dir, *COMPONENT_USER)
        os.chown(nucleus.socket_path, *COMPONENT_USER)
        nucleus.deploy({"deployment": deployment, "recipes": recipes})
        ipc = nucleus.environ(SENSOR)
        ipc["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"] = "/" + str(
            Path(nucleus.socket_path).relative_to(userland)
        )
        env = layout.environ(ipc)
        env["PYTHONPATH"] = device + "/chips:" + env["PYTHONPATH"]
        env["EDGE_AGENT_TEST_I2C"] = json.dumps(
            {"dev": device + "/dev", "environment": ENVIRONMENT}
        )
        component = pi_userland.start(
            userland,
            ["/bin/sh", "-c", layout.script("Run")],
            env=env,
            cwd=layout.paths["work:path"],
            user=COMPONENT_USER,
        )
        try:
            wait_until(
                lambda: (
                    len(nucleus.iot_core["IoTBlog/sensorData"]) >= 3 or component.poll() is not None
                ),
                timeout=120,
            )
            peak = peak_rss_kb(component.pid)
        finally:
            stderr = pi_userland.stop(component)
        readings = [p.json() for p in nucleus.iot_core["IoTBlog/sensorData"]]
    assert readings, "no reading; the component said: " + stderr[-3000:]
    first = readings[0]
    assert first["device"] == "pi-arm64"
    values = {k: first.get(k) for k in ENVIRONMENT}
    assert values == {
        "temperature": pytest.approx(ENVIRONMENT["temperature"], abs=0.01),
        "humidity": pytest.approx(ENVIRONMENT["humidity"], abs=0.01),
        "pressure": pytest.approx(ENVIRONMENT["pressure"], abs=0.001),
    }, first
    _check_memory(userland, layout, peak)


def _check_memory(userland, layout, peak_kb):
    """The component's peak RSS here is qemu's: the emulator's memory and translated code
    come on top of the aarch64 process. What the component adds to a bare interpreter under
    the same emulator, plus a bare interpreter's size run natively, is an upper bound of its
    figure on a Pi: that must be under its limit, with the memory tests' margin."""
    import subprocess
    import sys

    from test_function_memory import MARGIN

    from agent.topology import SENSOR_FUNCTION_ID, default_topology

    hwm = "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
    venv = layout.paths["work:path"] + "/venv/bin/python"
    bare_emulated = int(pi_userland.run(userland, [venv, "-c", hwm]).stdout)
    bare_native = int(subprocess.run([sys.executable, "-c", hwm], capture_output=True).stdout)
    estimate = peak_kb - bare_emulated + bare_native
    limit = default_topology().function(SENSOR_FUNCTION_ID).memory_kb
    print(
        "sensor component, aarch64 under qemu, i2c: peak RSS {:.1f} MB, a bare interpreter "
        "{:.1f} MB there, {:.1f} MB natively: {:.1f} MB at most on a Pi".format(
            *(kb / 1024 for kb in (peak_kb, bare_emulated, bare_native, estimate))
        )
    )
    assert estimate * MARGIN < limit, "{:.1f} MB, over {:.1f} MB / {}".format(
        estimate / 1024, limit / 1024, MARGIN
    )
