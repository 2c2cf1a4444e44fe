"""The sensor function's loop: publish every reading, hold what could not be published, restart safely."""

from __future__ import annotations

import json

from agent.clock import VirtualClock
from agent.config import SensorSettings
from agent.errors import PublishError, SensorError
from agent.greengrass.local import LocalCore
from agent.sensor_service import SensorService
from agent.sensors.base import Reading, Sensor


class ScriptedSensor(Sensor):
    """Humidity values from a list; ``"err"`` raises the I/O error a flaky bus gives."""

    name = "scripted"

    def __init__(self, values, clock):
        super().__init__(clock)
        self.values = list(values)

    def read(self):
        value = self.values.pop(0)
        if value == "err":
            raise SensorError("I2C read failed")
        return Reading(ts=self.clock.time(), temperature=22.0, humidity=value)


class FlakyRuntime:
    """The local core, but publishes fail while ``down`` is set (a full V1 queue, say)."""

    def __init__(self, core):
        self.inner = core.runtime_for("sensor")
        self.down = False

    def publish(self, topic, message):
        if self.down:
            raise PublishError("publish to {!r} failed: queue full".format(topic))
        self.inner.publish(topic, message)


def make(tmp_path, values, runtime=None, clock=None, core=None):
    clock = clock or VirtualClock()
    core = core or LocalCore()
    received = []
    core.register("anomaly", lambda event, ctx: received.append(event))
    settings = SensorSettings.from_mapping(
        {"stateDir": str(tmp_path), "deviceId": "pi", "debounceSamples": "2"}
    )
    service = SensorService(
        ScriptedSensor(values, clock), runtime or core.runtime_for("sensor"), settings, clock=clock
    )
    return service, received, core, clock


def run_ticks(service, clock, n):
    for _ in range(n):
        service.tick()
        clock.advance(5)


def test_every_reading_is_published_in_the_same_tick(tmp_path):
    service, _, core, clock = make(tmp_path, [40.0, 41.0])
    service.tick()
    ((topic, message),) = core.cloud_messages
    assert topic == "IoTBlog/sensorData" and message["humidity"] == 40.0
    assert message["ts"] == clock.time()  # not stale: read and published at once


def test_a_restart_mid_episode_opens_no_second_breach(tmp_path):
    service, received, _, clock = make(tmp_path, [60.0] * 4)
    run_ticks(service, clock, 4)
    assert [e["event"] for e in received] == ["breach"]
    # A new process (same state dir) continues the episode and closes it.
    again, received2, _, _ = make(tmp_path, [60.0, 40.0, 40.0], clock=clock)
    run_ticks(again, clock, 3)
    assert [e["event"] for e in received2] == ["recovered"]
    assert received2[0]["episode_id"] == received[0]["episode_id"]


def test_events_a_failed_publish_held_back_survive_a_restart(tmp_path):
    core = LocalCore()
    flaky = FlakyRuntime(core)
    flaky.down = True
    service, received, _, clock = make(tmp_path, [60.0] * 3, runtime=flaky, core=core)
    run_ticks(service, clock, 3)
    assert received == [] and service.counts["publish_errors"] > 0
    # The function restarts before the core accepts messages again.
    restarted, received2, _, _ = make(tmp_path, [60.0], clock=clock)
    restarted.tick()
    assert [e["event"] for e in received2] == ["breach"]


def test_held_events_go_out_even_when_the_next_read_fails(tmp_path):
    core = LocalCore()
    flaky = FlakyRuntime(core)
    service, received, _, clock = make(
        tmp_path, [60.0, 60.0, "err", "err"], runtime=flaky, core=core
    )
    flaky.down = True
    run_ticks(service, clock, 2)
    flaky.down = False
    run_ticks(service, clock, 1)  # the read fails, the held breach is published anyway
    assert [e["event"] for e in received] == ["breach"]
    assert service.counts["sensor_errors"] == 1


def test_missing_readings_are_published_as_null_and_judged_as_nothing(tmp_path):
    service, received, core, clock = make(tmp_path, [None, None, None])
    run_ticks(service, clock, 3)
    assert [m["humidity"] for _, m in core.cloud_messages] == [None, None, None]
    assert received == []


def test_the_loop_keeps_its_cadence_on_the_sensor_clock(tmp_path):
    service, _, core, clock = make(tmp_path, [40.0] * 5)
    start = clock.time()
    service.run(max_ticks=5)
    stamps = [m["ts"] for _, m in core.cloud_messages]
    assert stamps == [start + 5 * i for i in range(5)]


def _tear(path):
    """A power cut mid-write on an SD card: the first half of the file, the rest lost."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_torn_state_file_continues_from_its_last_good_copy(tmp_path, caplog):
    service, received, _, clock = make(tmp_path, [60.0] * 3)
    run_ticks(service, clock, 3)
    assert [e["event"] for e in received] == ["breach"]
    state = tmp_path / "sensor-state-pi.json"
    assert (tmp_path / "sensor-state-pi.json.prev").exists()
    _tear(state)
    again, received2, _, _ = make(tmp_path, [60.0, 40.0, 40.0], clock=clock)
    run_ticks(again, clock, 3)
    # The episode went on: no second breach, the recovery closes the first incident.
    assert [e["event"] for e in received2 if e["event"] != "breach"] == ["recovered"]
    assert received2[-1]["episode_id"] == received[0]["episode_id"]
    assert "continued from its last good copy" in again.recovered["what"]
    assert "sensor-state-pi.json was unreadable" in caplog.text
    assert (tmp_path / "sensor-state-pi.json.unreadable").exists()  # kept for a person
    assert json.loads(state.read_text())["recovered"]["what"] == again.recovered["what"]


def test_without_a_good_copy_the_outboxs_open_incident_is_continued_and_resolved(tmp_path):
    from agent.config import AnomalySettings
    from agent.servicenow.incidents import action_for
    from agent.servicenow.outbox import Outbox

    service, received, _, clock = make(tmp_path, [60.0] * 3)
    run_ticks(service, clock, 3)
    (breach,) = received
    outbox = Outbox(str(tmp_path / "outbox.sqlite3"))  # what the anomaly function queued
    settings = AnomalySettings.from_mapping({"snowUrl": "https://example.service-now.com"})
    outbox.enqueue(action_for(breach, settings), clock.time())
    outbox.close()
    _tear(tmp_path / "sensor-state-pi.json")
    (tmp_path / "sensor-state-pi.json.prev").unlink()
    again, received2, _, _ = make(tmp_path, [60.0, 60.0, 60.0, 40.0, 40.0], clock=clock)
    run_ticks(again, clock, 5)
    (recovered,) = received2  # the breach of the same metric adopted the open incident
    assert recovered["event"] == "recovered" and recovered["seq"] == 1
    assert recovered["episode_id"] == breach["episode_id"]
    assert "no good copy" in again.recovered["what"]
    assert breach["episode_id"] in again.recovered["what"]


def test_settings_offered_once_the_first_reading_is_out_judge_that_reading(tmp_path):
    """On a V1 core the shadow is followed after the first publish: the values saved before
    a restart, offered then, still judge the first reading (and the next)."""
    service, received, core, clock = make(tmp_path, [45.0, 45.0])
    lower = SensorSettings.from_mapping(
        {"stateDir": str(tmp_path), "deviceId": "pi", "debounceSamples": "2", "humidLimit": "40"}
    )
    published_before = []

    def follow():
        published_before.append(len(core.cloud_messages))
        service.offer_settings(lower)

    service.after_first_reading(follow)
    run_ticks(service, clock, 2)
    assert published_before == [1]  # the first reading was out when it ran, once
    assert [m["event"] for m in received] == ["breach"]  # 45 %RH beyond 40 at both readings


def test_what_follows_the_first_reading_starts_even_when_that_read_fails(tmp_path):
    service, _, _, clock = make(tmp_path, ["err", 40.0])
    started = []
    service.after_first_reading(lambda: started.append(service.counts["sensor_errors"]))
    run_ticks(service, clock, 2)
    assert started == [1]


def test_a_stop_ends_the_loop_in_the_middle_of_a_long_wait(tmp_path):
    """On the real clock, with ten minutes between readings: stop() does not wait them out."""
    from helpers import wait_until

    from agent.clock import Clock

    core = LocalCore()
    settings = SensorSettings.from_mapping(
        {"stateDir": str(tmp_path), "deviceId": "pi", "period": "600"}
    )
    clock = Clock()
    service = SensorService(
        ScriptedSensor([40.0] * 3, clock), core.runtime_for("sensor"), settings, clock=clock
    )
    loop = service.start()
    assert wait_until(lambda: len(core.cloud_messages) == 1)  # now in its 600 s wait
    service.stop(timeout=30)
    assert not loop.is_alive()
    assert len(core.cloud_messages) == 1
