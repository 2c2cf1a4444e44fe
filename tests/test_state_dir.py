"""One process per function and state directory; an unusable directory is a clear error.

Two real processes compete for a state directory; the unwritable directories are real
too: a read-only tmpfs, a path under a file, and a root-owned directory seen by a
process that dropped to another uid.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import secret_json
from faults import AnomalyProcess, tmpfs
from helpers import wait_until
from test_sensor_service import ScriptedSensor

from agent import startup, state_dir
from agent.anomaly_service import AnomalyService
from agent.config import AnomalySettings, SensorSettings
from agent.greengrass.local import LocalCore
from agent.sensor_service import SensorService
from agent.state_dir import StateDirError, StateDirLocked
from agent.topology import ANOMALY_FUNCTION_ID
from functions import anomaly_function

NOBODY = 65534
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def secret_file(tmp_path, password):
    path = tmp_path / "secret.json"
    path.write_text(secret_json(password))
    return str(path)


@pytest.fixture
def shared_tmp():
    """A directory other users can reach (pytest's own tmp_path is root-only)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="edge-agent-shared-")
    os.chmod(path, 0o755)
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def quick_lock(monkeypatch):
    # A conflict is waited out this long before it counts (the real grace is 3 s).
    monkeypatch.setattr(state_dir, "LOCK_GRACE_SECONDS", 0.2)


def _anomaly(url, directory):
    settings = AnomalySettings.from_mapping({"snowUrl": url, "stateDir": str(directory)})
    return AnomalyService(settings, LocalCore().runtime_for(ANOMALY_FUNCTION_ID))


def _sensor(directory, device="pi"):
    from agent.clock import VirtualClock

    settings = SensorSettings.from_mapping({"stateDir": str(directory), "deviceId": device})
    clock = VirtualClock()
    return SensorService(
        ScriptedSensor([40.0], clock), LocalCore().runtime_for("sensor"), settings, clock=clock
    )


def test_a_second_anomaly_process_exits_naming_the_state_dir_and_the_pid(
    standin, tmp_path, secret_file
):
    state = str(tmp_path / "state")
    first = AnomalyProcess(standin.url, state, secret_file)
    try:
        second = AnomalyProcess(standin.url, state, secret_file, wait=False)
        try:
            assert second.proc.wait(30) == 2
            assert second.first_line.startswith("START-FAILED")
            assert "another anomaly function process (PID {}".format(first.pid) in (
                second.first_line
            )
            assert "stateDir {}".format(state) in second.first_line
        finally:
            second.kill()
        assert first.quit() == 0
    finally:
        first.kill()
    # The lock goes with its process: the directory is free again.
    third = AnomalyProcess(standin.url, state, secret_file)
    assert third.quit() == 0


def test_a_second_sensor_process_on_its_v2_entry_point_exits_with_a_clear_message(tmp_path):
    env = dict(
        os.environ,
        EDGE_AGENT_RUNTIME="local",
        EDGE_AGENT_SENSOR="fake",
        stateDir=str(tmp_path),
        deviceId="pi-lock",
        period="0.5",
    )
    command = [sys.executable, "-m", "functions.sensor_function"]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        lock = tmp_path / "sensor-state-pi-lock.lock"
        assert wait_until(lambda: lock.exists() and str(first.pid) in lock.read_text(), 20)
        second = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2
        assert "another sensor function process (PID {}".format(first.pid) in second.stderr
        assert "stateDir {}".format(tmp_path) in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        first.stderr.close()


def test_the_two_functions_share_a_directory_but_not_with_a_twin(
    standin, tmp_path, secret_file, quick_lock
):
    state = tmp_path / "state"
    other = AnomalyProcess(standin.url, str(state), secret_file)
    try:
        sensor = _sensor(state)  # the sensor's own lock: no conflict with the anomaly process
        sensor.close()
        with pytest.raises(StateDirLocked) as caught:
            _anomaly(standin.url, state)
        assert "(PID {}".format(other.pid) in str(caught.value)
        assert caught.value.holder["pid"] == other.pid
    finally:
        other.quit()


def test_on_a_v1_core_a_lock_conflict_is_logged_plainly_and_retried(
    standin, tmp_path, secret_file, quick_lock, monkeypatch, caplog
):
    delays = []

    class RecordingTimer:
        def __init__(self, delay, function, args=()):
            delays.append(delay)
            self.daemon = False

        def start(self):
            pass

    monkeypatch.setattr(startup.threading, "Timer", RecordingTimer)
    state = tmp_path / "state"
    other = AnomalyProcess(standin.url, str(state), secret_file)
    try:
        installed = []
        startup.start_on_core(
            lambda: anomaly_function.create_app(
                environ={"snowUrl": standin.url, "stateDir": str(state)},
                runtime=LocalCore().runtime_for(ANOMALY_FUNCTION_ID),
            ),
            installed.append,
            "anomaly",
        )
    finally:
        other.quit()
    assert installed == [] and delays == [5.0]
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is None  # no traceback for a conflict a person must resolve
    message = record.getMessage()
    assert "anomaly function could not start: another anomaly function process" in message
    assert "(PID {}".format(other.pid) in message and str(state) in message
    assert "Trying again in 5s" in message


def test_a_read_only_state_dir_names_the_path_for_both_functions(standin):
    with tmpfs("1m", "ro") as readonly:
        for directory in (readonly, os.path.join(readonly, "sub")):
            with pytest.raises(StateDirError) as anomaly_error:
                _anomaly(standin.url, directory)
            with pytest.raises(StateDirError) as sensor_error:
                _sensor(directory)
            for error, function in ((anomaly_error, "anomaly"), (sensor_error, "sensor")):
                text = str(error.value)
                assert text.startswith("{} function cannot write".format(function))
                assert readonly in text and "Read-only file system" in text
                assert "set stateDir to a writable directory" in text


def test_a_state_dir_under_a_file_is_a_clear_error(standin, tmp_path):
    afile = tmp_path / "not-a-dir"
    afile.write_text("")
    with pytest.raises(StateDirError, match="cannot write its stateDir {}/x".format(afile)):
        _anomaly(standin.url, afile / "x")


def test_a_state_dir_another_user_owns_fails_with_what_to_do(standin, shared_tmp, secret_file):
    owned_by_root = shared_tmp / "root-only"
    owned_by_root.mkdir(mode=0o755)
    worker = AnomalyProcess(
        standin.url, str(owned_by_root / "state"), secret_file, "--uid", str(NOBODY), wait=False
    )
    try:
        assert worker.proc.wait(30) == 2
    finally:
        worker.kill()
    message = worker.first_line
    assert message.startswith("START-FAILED anomaly function cannot write its stateDir")
    assert str(owned_by_root / "state") in message and "Permission denied" in message
    assert "uid {}".format(NOBODY) in message
    assert "sudo install -d -o {} -m 0750 {}".format(NOBODY, owned_by_root / "state") in message
    assert "sqlite3" not in message and "Traceback" not in worker.log_text()


def test_an_outbox_file_left_by_root_is_named_with_what_to_do(standin, shared_tmp, secret_file):
    state = shared_tmp / "state"
    _anomaly(standin.url, state).close()  # run once as root: its files belong to root
    os.chmod(str(state), 0o777)
    worker = AnomalyProcess(standin.url, str(state), secret_file, "--uid", str(NOBODY), wait=False)
    try:
        assert worker.proc.wait(30) == 2
    finally:
        worker.kill()
    assert "cannot write {}".format(state / "outbox.lock") in worker.first_line
    assert "Permission denied" in worker.first_line
    assert "sudo chown -R {} {}".format(NOBODY, state) in worker.first_line
    os.unlink(str(state / "outbox.lock"))  # now the database file itself is the obstacle
    worker = AnomalyProcess(standin.url, str(state), secret_file, "--uid", str(NOBODY), wait=False)
    try:
        assert worker.proc.wait(30) == 2
    finally:
        worker.kill()
    assert "cannot write its outbox file {}".format(state / "outbox.sqlite3") in worker.first_line


def test_two_edge_agent_run_processes_on_one_state_dir(tmp_path):
    command = [
        sys.executable,
        "-m",
        "devtools.cli",
        "run",
        "--sensor",
        "fake",
        "--thing",
        "pi-twin",
        "--state-dir",
        str(tmp_path),
    ]
    first = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 30:
            line = first.stderr.readline()
            if "running as" in line or not line:
                break
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "edge-agent run: another sensor function process (PID {}".format(first.pid) in (
            second.stderr
        )
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        first.stderr.close()
