"""A deleted, damaged, rolled-back or replaced outbox is never silently replaced.

Each test breaks the real file: deletes it between runs, writes bad bytes into the
database or its write-ahead log after a real process was SIGKILLed, deletes the WAL,
or replaces the file under a running agent. The agent must say how many actions may
be lost (CRITICAL), keep the broken files (moved aside, never deleted), carry over
what it can still read, keep running on a fresh outbox, and `edge-agent outbox` must
show it and exit 3 until someone acknowledges it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys

import pytest
from conftest import secret_json
from faults import AnomalyProcess, moved_aside
from helpers import anomaly, wait_until

from agent.anomaly_service import AnomalyService
from agent.config import AnomalySettings
from agent.servicenow import outbox_guard
from agent.servicenow.outbox import Outbox
from agent.standalone.exit_codes import OUTBOX_PENDING
from agent.topology import ANOMALY_FUNCTION_ID

FRAME = 24 + 4096


def _service(url, state_dir, core, clock=None):
    settings = AnomalySettings.from_mapping({"snowUrl": url, "stateDir": str(state_dir)})
    return AnomalyService(settings, core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock)


def _breach(i):
    return anomaly("breach", 0, "pi-box:humidity:upper:{}".format(1_790_000_000 + i))


def _outbox_cli(state_dir, *extra):
    return subprocess.run(
        [sys.executable, "-m", "devtools.cli", "outbox", "--state-dir", str(state_dir), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _report(state_dir):
    (folder,) = moved_aside(str(state_dir))
    with open(os.path.join(str(state_dir), folder, "report.json")) as handle:
        return folder, json.load(handle)


def _critical(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]


def _closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "http://127.0.0.1:{}".format(sock.getsockname()[1])


@pytest.fixture(scope="module")
def crashed_original(tmp_path_factory):
    """A state dir left by a real anomaly process SIGKILLed with 10 actions it could not deliver.

    Made once (it takes a few seconds); each test works on its own copy.
    """
    base = tmp_path_factory.mktemp("crashed")
    secret = base / "secret.json"
    secret.write_text(secret_json("pw-not-used-no-servicenow-is-reached"))
    state = base / "state"
    process = AnomalyProcess(_closed_port_url(), str(state), str(secret))
    try:
        for i in range(10):
            process.send(_breach(i))
        marker = state / outbox_guard.MARKER_FILE
        # The worker refreshes the marker within CHECK_INTERVAL, without an fsync per action.
        assert wait_until(
            lambda: json.loads(marker.read_text()).get("pending") == 10,
            timeout=3 * outbox_guard.CHECK_INTERVAL,
        ), marker.read_text()
    finally:
        process.kill()  # SIGKILL: no clean close, the WAL stays as it was
    assert (state / "outbox.sqlite3-wal").stat().st_size > 32
    return state


@pytest.fixture
def crashed(crashed_original, tmp_path):
    state = tmp_path / "state"
    shutil.copytree(str(crashed_original), str(state))
    return state


def test_a_deleted_outbox_is_reported_kept_track_of_and_replaced_by_a_fresh_one(
    tmp_path, core, standin, caplog
):
    state = tmp_path / "state"
    standin.faults.down = True
    service = _service(standin.url, state, core)
    for i in range(3):
        service.handle(_breach(i))
    service.pump()  # the worker's turn: delivery fails, the marker learns of 3 pending
    service.close()
    os.unlink(str(state / "outbox.sqlite3"))

    before_restart = _outbox_cli(state)
    assert before_restart.returncode == 3
    assert "outbox {} is missing; 3 pending at".format(state / "outbox.sqlite3") in (
        before_restart.stderr
    )

    standin.faults.down = False
    again = _service(standin.url, state, core)
    (critical,) = _critical(caplog)
    assert "is missing: up to 3 queued ServiceNow actions may be lost" in critical
    assert "--acknowledge" in critical
    folder, report = _report(state)
    assert report["reason"] == "missing" and report["possibly_lost"] == 3
    assert folder in critical
    # It keeps working on a fresh outbox.
    assert again.handle(_breach(7)) is True
    assert again.pump() == 1
    again.close()

    result = _outbox_cli(state)
    assert result.returncode == 3
    assert "ACTIONS MAY BE LOST" in result.stderr and folder in result.stderr
    assert json.loads(result.stdout)["status"] == "loss"
    assert _outbox_cli(state, "--acknowledge").returncode == 0
    assert moved_aside(str(state)) == [folder]  # acknowledged, not deleted


def test_a_database_file_that_is_not_a_database_is_moved_aside(tmp_path, core, standin, caplog):
    state = tmp_path / "state"
    standin.faults.down = True
    service = _service(standin.url, state, core)
    service.handle(_breach(0))
    service.handle(_breach(1))
    service.pump()
    service.close()
    path = state / "outbox.sqlite3"
    damaged = b"this is not SQLite" + path.read_bytes()[18:]
    path.write_bytes(damaged)

    assert "file is not a database" in _outbox_cli(state).stderr
    again = _service(standin.url, state, core)
    (critical,) = _critical(caplog)
    assert "file is not a database" in critical
    assert "up to 2 queued ServiceNow actions may be lost" in critical
    folder, report = _report(state)
    assert (state / folder / "outbox.sqlite3").read_bytes() == damaged  # kept as it was
    assert again.outbox.counts()["pending"] == 0
    again.close()
    assert _outbox_cli(state).returncode == 3


def test_a_damaged_page_fails_the_integrity_check_and_readable_rows_are_carried_over(
    tmp_path, core, caplog
):
    state = tmp_path / "state"
    service = _service(_closed_port_url(), state, core)
    for i in range(120):  # enough rows for several b-tree pages
        service.handle(_breach(i))
    service.pump()
    service.close()
    with open(str(state / "outbox.sqlite3"), "r+b") as handle:
        handle.seek(4096 * 5)  # the header of an interior page of the pending table
        handle.write(b"\xff" * 16)

    again = _service(_closed_port_url(), state, core)
    (critical,) = _critical(caplog)
    assert "is damaged" in critical
    _, report = _report(state)
    carried = report["carried_over"]["pending"]
    assert again.outbox.counts()["pending"] == carried
    assert report["possibly_lost"] == 120 - carried
    # What was carried over is intact and deliverable: its fields parse.
    assert all(q.action.fields for q in again.outbox.due(float("inf"), limit=1000))
    again.close()


def _damage_a_middle_frame(state):
    wal = state / "outbox.sqlite3-wal"
    frames = (wal.stat().st_size - 32) // FRAME
    assert frames > 10
    with open(str(wal), "r+b") as handle:  # bad bytes in the page of a middle frame
        handle.seek(32 + (frames // 2) * FRAME + 24 + 100)
        handle.write(b"\xde\xad\xbe\xef")
    return wal.read_bytes()


def test_outbox_check_finds_what_a_damaged_wal_hides_from_sqlite(crashed):
    state = crashed
    # A crash alone: nothing hidden, the 10 actions only pending (exit 5, not 3).
    assert _outbox_cli(state, "--check").returncode == OUTBOX_PENDING
    _damage_a_middle_frame(state)
    evidence = ("outbox.sqlite3", "outbox.sqlite3-wal")  # (-shm is SQLite's index of the WAL)
    before = {name: (state / name).read_bytes() for name in evidence}
    result = _outbox_cli(state, "--check")
    assert result.returncode == 3, result.stderr
    assert "committed transactions in its write-ahead log follow a damaged frame" in (result.stderr)
    (lost,) = json.loads(result.stdout)["wal"].values()
    assert lost > 0  # transactions: enqueues, and the retries the worker recorded
    assert {name: (state / name).read_bytes() for name in evidence} == before  # read only


def test_a_damaged_wal_is_reported_at_start_by_the_marker_and_kept_for_the_check(
    crashed, core, caplog
):
    state = crashed
    damaged = _damage_a_middle_frame(state)
    hidden = json.loads(_outbox_cli(state, "--check").stdout)["wal"]
    (lost,) = hidden.values()

    again = _service(_closed_port_url(), state, core)
    (critical,) = _critical(caplog)
    assert "lost committed transactions" in critical
    folder, report = _report(state)
    assert report["reason"] == "rolled back" and folder in critical
    carried = again.outbox.counts()["pending"]
    assert carried < 10 and report["possibly_lost"] == 10 - carried
    assert "up to {} queued ServiceNow actions may be lost".format(10 - carried) in critical
    # The evidence is kept: the log as it was, which --check reads again after the restart.
    assert (state / folder / "outbox.sqlite3-wal").read_bytes() == damaged
    again.close()
    result = _outbox_cli(state, "--check")
    assert result.returncode == 3  # the report, until acknowledged
    assert json.loads(result.stdout)["wal"][str(state / folder / "outbox.sqlite3")] == lost
    assert "the copy kept in" in result.stderr


def test_outbox_check_waits_for_the_agent_to_stop(tmp_path, core, standin):
    service = _service(standin.url, tmp_path / "state", core)
    try:
        result = _outbox_cli(tmp_path / "state", "--check")
        assert result.returncode == 1
        assert "stop the function first" in result.stderr
    finally:
        service.close()


def test_a_database_deleted_after_a_crash_leaves_its_wal_which_is_kept_aside(crashed, core, caplog):
    state = crashed
    crashed_wal_bytes = (state / "outbox.sqlite3-wal").read_bytes()
    os.unlink(str(state / "outbox.sqlite3"))  # its -wal and -shm stay behind
    again = _service(_closed_port_url(), state, core)
    (critical,) = _critical(caplog)
    assert "is missing: up to 10 queued ServiceNow actions may be lost" in critical
    folder, report = _report(state)
    assert sorted(report["moved"]) == ["outbox.sqlite3-shm", "outbox.sqlite3-wal"]
    assert folder in critical
    # The stale WAL holds the lost actions: kept as evidence, not overwritten by the new
    # outbox's own WAL, and nothing of it mixed into the new database.
    kept = state / folder / "outbox.sqlite3-wal"
    assert kept.read_bytes() == (crashed_wal_bytes)
    assert again.outbox.counts()["pending"] == 0
    assert again.handle(_breach(11)) is True
    again.close()


def test_a_crash_alone_is_not_mistaken_for_damage(crashed, core, caplog):
    state = crashed
    again = _service(_closed_port_url(), state, core)
    assert _critical(caplog) == []
    assert moved_aside(str(state)) == []
    assert again.outbox.counts()["pending"] == 10
    again.close()
    assert _outbox_cli(state).returncode == OUTBOX_PENDING  # pending, no sign of loss


def test_a_deleted_wal_is_reported_as_lost_transactions(crashed, core, caplog):
    state = crashed
    os.unlink(str(state / "outbox.sqlite3-wal"))
    os.unlink(str(state / "outbox.sqlite3-shm"))
    assert "lost committed transactions" in _outbox_cli(state).stderr

    again = _service(_closed_port_url(), state, core)
    (critical,) = _critical(caplog)
    assert "lost committed transactions" in critical
    assert "up to 10 queued ServiceNow actions may be lost" in critical
    _, report = _report(state)
    assert report["reason"] == "rolled back"
    assert again.handle(_breach(50)) is True  # ids go on past the marker's: no false alarm
    again.close()
    caplog.clear()
    _service(_closed_port_url(), state, core).close()
    assert _critical(caplog) == []


def test_an_outbox_replaced_under_the_running_agent_is_moved_aside_and_nothing_of_its_own_lost(
    tmp_path, core, standin, caplog
):
    state = tmp_path / "state"
    standin.faults.down = True
    service = _service(standin.url, state, core)
    service.handle(_breach(0))
    service.handle(_breach(1))
    # Someone puts another outbox (one pending action of its own) in its place.
    foreign = Outbox(str(tmp_path / "other.sqlite3"))
    foreign.enqueue(anomaly_action(99), 1.0)
    foreign.close()
    os.replace(str(tmp_path / "other.sqlite3"), str(state / "outbox.sqlite3"))

    service.guard.maintain(service.outbox, force=True)  # the worker's periodic check
    (critical,) = _critical(caplog)
    assert "was replaced by another file while the agent ran" in critical
    assert "no queued ServiceNow action of this agent was lost" in critical
    assert "its 2 pending actions were carried over" in critical
    assert "(1 pending actions this agent will not send)" in critical
    folder, report = _report(state)
    assert _pending_in(state / folder / "outbox.sqlite3") == 1  # the stranger's, kept
    standin.faults.down = False
    service.handle(_breach(2))
    service.deliverer.pause.servicenow_until = 0  # ServiceNow is back: skip the probe wait
    assert service.pump() == 3  # its own two, carried over, and the new one
    assert len(standin.incidents()) == 3
    assert service.health()["outbox_problems"] == [report["detail"]]
    service.close()


def test_the_marker_costs_no_fsync_in_the_handler(tmp_path, core, monkeypatch):
    service = _service(_closed_port_url(), tmp_path / "state", core)
    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(fd) or real_fsync(fd))
    for i in range(50):
        service.handle(_breach(i))
    assert calls == []  # the outbox's own commit is synced by SQLite; nothing else
    service.close()


def anomaly_action(i):
    from agent.servicenow.incidents import Action

    return Action("open", "stranger#{}".format(i), "stranger", {"short_description": "x"})


def _pending_in(path):
    db = sqlite3.connect(str(path))
    try:
        return db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_real_process_survives_its_outbox_being_deleted_or_replaced(
    tmp_path, password, standin, how
):
    secret = tmp_path / "secret.json"
    secret.write_text(secret_json(password))
    state = tmp_path / "state"
    standin.faults.down = True
    process = AnomalyProcess(standin.url, str(state), str(secret))
    try:
        for i in range(3):
            process.send(_breach(i))
        path = state / "outbox.sqlite3"
        if how == "deleted":
            os.unlink(str(path))
        else:
            foreign = Outbox(str(tmp_path / "other.sqlite3"))
            foreign.close()
            os.replace(str(tmp_path / "other.sqlite3"), str(path))
        line = process.wait_for_log("CRITICAL", timeout=3 * outbox_guard.CHECK_INTERVAL)
        assert "was deleted" in line if how == "deleted" else "was replaced" in line
        for i in range(3, 5):
            process.send(_breach(i))
        standin.faults.down = False
        assert process.ask("drain 60") == "DRAINED", process.log_text()
        assert process.health()["outbox_problems"]
        assert process.quit() == 0
    finally:
        process.kill()
    assert len(standin.incidents()) == 5  # nothing of its own lost
    assert _outbox_cli(state).returncode == 3
    assert len(moved_aside(str(state))) == 1


@pytest.mark.slow
def test_replaced_while_no_file_can_be_written_the_rows_wait_in_memory_then_go_to_disk(
    tmp_path, password, standin
):
    secret = tmp_path / "secret.json"
    secret.write_text(secret_json(password))
    state = tmp_path / "state"
    standin.faults.down = True
    process = AnomalyProcess(standin.url, str(state), str(secret))
    try:
        for i in range(2):
            process.send(_breach(i))
        assert process.ask("fsize 0") == "LIMITED"  # from now on no file may grow at all
        os.unlink(str(state / "outbox.sqlite3"))
        process.wait_for_log("CRITICAL", timeout=3 * outbox_guard.CHECK_INTERVAL)
        assert process.health()["outbox_in_memory"] is True
        process.send(_breach(2))  # taken, in memory with the rest
        assert process.ask("raise-fsize") == "RAISED"
        process.wait_for_log("written to disk again", timeout=3 * outbox_guard.CHECK_INTERVAL)
        assert _pending_in(state / "outbox.sqlite3") == 3  # on disk again, all of them
        standin.faults.down = False
        assert process.ask("drain 60") == "DRAINED", process.log_text()
        assert process.quit() == 0
    finally:
        process.kill()
    assert len(standin.incidents()) == 3
