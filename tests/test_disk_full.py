"""A full disk or a file-size limit loses no episode: what cannot be written waits in memory.

The faults are real: a small tmpfs filled with a ballast file, and RLIMIT_FSIZE set in
a real anomaly process (Python ignores SIGXFSZ, so writes fail with EFBIG instead of
killing it).
"""

from __future__ import annotations

import logging
import os
import time

import pytest
from conftest import secret_json
from faults import AnomalyProcess, episode_events, fill, tmpfs
from helpers import anomaly, wait_until
from test_sensor_service import FlakyRuntime, ScriptedSensor

from agent import anomaly_service
from agent.clock import VirtualClock
from agent.config import AnomalySettings, SensorSettings
from agent.greengrass.local import LocalCore
from agent.sensor_service import SensorService
from agent.topology import ANOMALY_FUNCTION_ID

EPISODES = 40


def _service(standin, state_dir, core, clock):
    settings = AnomalySettings.from_mapping(
        {"snowUrl": standin.url, "stateDir": state_dir, "updateMinutes": "0"}
    )
    return anomaly_service.AnomalyService(
        settings, core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock
    )


def _episode(i, event="breach", seq=0, **extra):
    return anomaly(event, seq, "pi-full:humidity:upper:{}".format(1_790_000_000 + i), **extra)


def test_a_full_disk_holds_actions_and_writes_them_in_order_when_space_returns(
    standin, core, clock, caplog
):
    with tmpfs("2m") as disk:
        service = _service(standin, os.path.join(disk, "state"), core, clock)
        assert service.handle(_episode(0)) is True
        ballast = fill(disk)
        # Nothing can be written now, yet every event is taken and none raises.
        assert service.handle(_episode(0, "update", 1, ts=1_790_000_200.0)) is True
        assert service.handle(_episode(0, "recovered", 2, value=40.0, ts=1_790_000_300.0)) is True
        assert service.handle(_episode(1)) is True
        health = service.health()
        assert health["ok"] is False and health["outbox_writable"] is False
        assert health["actions_held"] == 3
        assert "database or disk is full" in health["write_error"]
        assert service.handle(_episode(1)) is False  # a repeat is still recognised
        errors = [r for r in caplog.records if "cannot write the outbox" in r.getMessage()]
        assert len(errors) == 1 and errors[0].levelno == logging.ERROR
        assert os.path.join(disk, "state") in errors[0].getMessage()

        os.unlink(ballast)
        clock.advance(anomaly_service.HELD_RETRY_SECONDS)
        service.pump()
        for _ in range(10):
            if service.next_attempt_at() is None:
                break
            clock.advance_to(service.next_attempt_at())
            service.pump()
        assert service.health()["ok"] is True
        incidents = sorted(standin.incidents(), key=lambda i: i["correlation_id"])
        assert [i["state"] for i in incidents] == ["6", "1"]  # resolved after its note, in order
        notes = [e["value"] for e in incidents[0]["_journal"] if e["field"] == "work_notes"]
        assert notes[0].startswith("Still breaching") and notes[1].startswith("Back within")
        assert "held actions written" in caplog.text
        service.close()


def test_the_error_is_logged_at_most_once_a_minute(standin, core, clock, caplog):
    with tmpfs("2m") as disk:
        service = _service(standin, os.path.join(disk, "state"), core, clock)
        fill(disk)
        for i in range(12):  # a message every 5 s for a minute, less a little
            service.handle(_episode(i))
            service.pump()
            clock.advance(4.9)
        assert caplog.text.count("cannot write the outbox") == 1
        clock.advance(2)
        service.handle(_episode(99))
        assert caplog.text.count("cannot write the outbox") == 2
        assert service.health()["actions_held"] == 13
        service.close()


def test_past_the_memory_bound_the_oldest_is_dropped_counted_and_logged(
    standin, core, clock, caplog, monkeypatch
):
    monkeypatch.setattr(anomaly_service, "MAX_HELD_ACTIONS", 3)
    with tmpfs("2m") as disk:
        service = _service(standin, os.path.join(disk, "state"), core, clock)
        ballast = fill(disk)
        for i in range(5):
            assert service.handle(_episode(i)) is True
        assert service.health()["actions_held"] == 3
        assert service.health()["actions_dropped"] == 2
        assert service.summary()["actions_dropped"] == 2
        dropped = [r.getMessage() for r in caplog.records if "dropped the oldest" in r.getMessage()]
        assert len(dropped) == 2 and "1790000000#0:breach" in dropped[0]
        os.unlink(ballast)
        clock.advance(anomaly_service.HELD_RETRY_SECONDS)
        service.pump()
        service.pump()
        opened = sorted(i["correlation_id"][-4:] for i in standin.incidents())
        assert opened == ["0002", "0003", "0004"]  # the three newest, none silently lost
        assert service.health()["ok"] is False  # something was dropped: it stays visible
        service.close()


def test_an_action_put_off_by_the_full_disk_goes_as_soon_as_a_write_succeeds(
    standin, core, clock, caplog
):
    # The disk fills between the enqueue and the delivery: the create intent cannot be
    # recorded, so the action waits out the back-off for local faults (60 s)...
    with tmpfs("2m") as disk:
        service = _service(standin, os.path.join(disk, "state"), core, clock)
        assert service.handle(_episode(0)) is True
        ballast = fill(disk)
        assert service.pump() == 0
        assert "unexpected" in caplog.text and standin.incidents() == []
        assert service.deliverer.next_attempt_at() >= clock.time() + 30
        # ...unless the disk takes writes again first: the next message is written,
        # and the action put off goes with it, not a minute later.
        os.unlink(ballast)
        clock.advance(1)
        assert service.handle(_episode(1)) is True
        assert service.deliverer.next_attempt_at() <= clock.time()
        assert service.pump() == 2
        assert len(standin.incidents()) == 2
        service.close()


def test_delivery_resumes_when_held_actions_are_written_after_delivery_met_the_fault(
    standin, core, clock
):
    # The disk fills: delivery meets it first (the create intent cannot be recorded: the
    # back-off for local faults), then a message cannot be written either and is held.
    with tmpfs("2m") as disk:
        service = _service(standin, os.path.join(disk, "state"), core, clock)
        assert service.handle(_episode(0)) is True
        ballast = fill(disk)
        assert service.pump() == 0
        assert service.handle(_episode(1)) is True
        assert service.health()["actions_held"] == 1
        # The disk takes writes again: the held action is written at the worker's next
        # look, and both go then, not when the back-off of the first fault ends.
        os.unlink(ballast)
        clock.advance(anomaly_service.HELD_RETRY_SECONDS)
        assert service.pump() == 2
        assert len(standin.incidents()) == 2
        service.close()


def test_held_events_of_the_sensor_survive_a_failed_state_write(tmp_path):
    """The sensor's state file cannot be written and the core refuses publishes: nothing is lost."""
    with tmpfs("1m") as disk:
        clock = VirtualClock()
        core = LocalCore()
        received = []
        core.register("anomaly", lambda event, ctx: received.append(event))
        runtime = FlakyRuntime(core)
        settings = SensorSettings.from_mapping(
            {"stateDir": os.path.join(disk, "s"), "deviceId": "pi", "debounceSamples": "2"}
        )
        values = [60.0, 60.0, 60.0, 40.0, 40.0, 40.0, 40.0, 40.0]
        service = SensorService(ScriptedSensor(values, clock), runtime, settings, clock=clock)
        ballast = fill(disk)
        runtime.down = True
        for _ in range(5):  # breach and recovery both happen while nothing can be written
            service.tick()
            clock.advance(5)
        assert received == []
        assert service.counts["state_write_errors"] >= 2
        os.unlink(ballast)
        runtime.down = False
        service.tick()
        assert [e["event"] for e in received] == ["breach", "recovered"]
        service.tick()
        with open(service.state_path) as handle:
            saved = handle.read()
        assert '"held_events": []' in saved  # the state caught up once space returned
        service.close()


def _writes(standin) -> int:
    """Incidents created plus incidents resolved so far."""
    incidents = standin.incidents()
    return len(incidents) + sum(i["state"] == "6" for i in incidents)


def _run_episodes_through_a_fault(standin, password, tmp_path, state_dir, begin, end, *extra):
    """Feed EPISODES episodes to a real process; the fault is on for the middle half (or
    from the start, when ``extra`` starts the process with it)."""
    secret_path = tmp_path / "secret.json"
    secret_path.write_text(secret_json(password))
    standin.faults.latency = 0.02  # slow enough that deliveries land while the fault is on
    events = episode_events(EPISODES)
    process = AnomalyProcess(standin.url, state_dir, str(secret_path), *extra)
    held_during_fault = 0
    try:
        quarter = len(events) // 4
        for event in events[:quarter]:
            process.send(event)
            held_during_fault = max(held_during_fault, process.health()["actions_held"])
        restore = begin()
        started = time.monotonic()
        for event in events[quarter : 3 * quarter]:
            process.send(event)
            time.sleep(6.0 / (2 * quarter))  # the fault lasts about 6 s, as in the report
            held_during_fault = max(held_during_fault, process.health()["actions_held"])
        fault_seconds = time.monotonic() - started
        delivered_before = _writes(standin)
        end(process, restore)
        recovered_at = time.monotonic()
        for event in events[3 * quarter :]:
            process.send(event)
        # Delivery resumes when the disk does, not after the 60 s back-off for local faults:
        # the held actions reach the outbox and ServiceNow writes start within seconds.
        assert wait_until(lambda: process.health()["actions_held"] == 0, timeout=15)
        assert wait_until(lambda: _writes(standin) > delivered_before, timeout=15), (
            process.log_text()
        )
        resumed_seconds = time.monotonic() - recovered_at
        # The whole backlog then drains at snowMaxRequestsPerSecond (5/s: ~32 s for 160 calls).
        assert process.ask("drain 120") == "DRAINED", process.log_text()
        drain_seconds = time.monotonic() - recovered_at
        summary = process.summary()
        health = process.health()
        assert process.quit() == 0
    finally:
        process.kill()
    incidents = standin.incidents()
    ids = {i["correlation_id"] for i in incidents}
    assert held_during_fault > 0, "the fault never hit a write:\n" + process.log_text()
    assert len(incidents) == len(ids) == EPISODES  # none lost, none doubled
    assert all(i["state"] == "6" for i in incidents)
    assert summary["actions_dropped"] == 0 and health["ok"] is True
    assert sum("cannot write the outbox" in line for line in process.log) <= 1 + fault_seconds / 60
    print(
        "\n{} episodes, fault {:.1f}s, up to {} actions held, written {:.1f}s and all "
        "delivered {:.1f}s after it".format(
            EPISODES, fault_seconds, held_during_fault, resumed_seconds, drain_seconds
        )
    )


@pytest.mark.slow
def test_40_episodes_across_a_full_disk_all_reach_servicenow(standin, password, tmp_path):
    with tmpfs("16m") as disk:
        _run_episodes_through_a_fault(
            standin,
            password,
            tmp_path,
            os.path.join(disk, "state"),
            lambda: fill(disk),
            lambda process, ballast: os.unlink(ballast),
        )


@pytest.mark.slow
def test_40_episodes_across_a_file_size_limit_all_reach_servicenow(standin, password, tmp_path):
    # Like `ulimit -f 200`: no file may grow past 200 KiB until the limit is lifted.
    # Python ignores SIGXFSZ, so the writes fail with EFBIG instead of killing the process.
    def lift(process, _):
        assert process.ask("raise-fsize") == "RAISED"

    _run_episodes_through_a_fault(
        standin,
        password,
        tmp_path,
        str(tmp_path / "state"),
        lambda: None,
        lift,
        "--fsize",
        str(200 * 1024),
    )


def test_a_pause_servicenow_asked_for_before_the_fault_still_stands_after_it(standin, core, clock):
    with tmpfs("2m") as disk:
        service = _service(standin, os.path.join(disk, "state"), core, clock)
        standin.faults.rate_limit_next(1, retry_after=120)
        service.handle(_episode(0))
        assert service.pump() == 0  # 429: wait 120 s
        resume_at = service.deliverer.paused_until
        ballast = fill(disk)
        assert service.handle(_episode(1)) is True  # held
        os.unlink(ballast)
        clock.advance(anomaly_service.HELD_RETRY_SECONDS)
        service.pump()
        assert service.health()["actions_held"] == 0
        assert service.deliverer.paused_until == resume_at  # not cut short by the recovery
        assert service.pump() == 0 and standin.incidents() == []
        clock.advance_to(resume_at)
        assert service.pump() == 2
        service.close()
