"""Limits changed from the shadow while the group runs: episodes, incidents, restarts.

Both functions run on the local core (its shadow service and subscription table, the
group's own topology) in virtual time, as ``edge-agent simulate --fast`` runs them,
with the ServiceNow stand-in over HTTP behind the anomaly function. A change is
made as AWS IoT makes it: an update of the shadow's ``desired`` state that the
core's shadow sync brings in (``LocalCore.update_shadow_from_cloud``).
"""

from __future__ import annotations

import json

import pytest
from conftest import SNOW_USER, secret_json

from agent.clock import VirtualClock
from agent.greengrass.local import LambdaContext
from agent.greengrass.shadow_document import MAX_STATE_BYTES
from agent.sensors.base import Reading, Sensor
from agent.standalone.group import LocalGroup, function_environments
from agent.topology import SHADOW_SERVICE, default_topology
from devtools.simulation_changes import config_line
from functions.sensor_function import handler_for

THING = "pi-kitchen"
DELTA = "$aws/things/{}/shadow/update/delta"


class Humidity(Sensor):
    """Humidity the test sets as it goes (``level``), one reading per tick."""

    name = "scripted"

    def __init__(self, clock, level):
        super().__init__(clock)
        self.level = level

    def read(self):
        return Reading(ts=self.clock.time(), temperature=22.0, humidity=self.level)


class Group:
    """Both functions on a local core, ServiceNow behind, all in virtual time."""

    def __init__(self, state_dir, snow_url, password, level=40.0, clock=None):
        self.clock = clock or VirtualClock()
        sensor_env, anomaly_env = function_environments(
            default_topology(),
            {"deviceId": THING, "stateDir": str(state_dir), "debounceSamples": "3"},
            {"snowUrl": snow_url},
        )
        self.humidity = Humidity(self.clock, level)
        self.group = LocalGroup(
            sensor_env,
            anomaly_env,
            self.clock,
            sensor=self.humidity,
            secret_value=secret_json(password),
            shadow_path=str(state_dir / "shadows.json"),
        ).open()
        self.core, self.sensor, self.anomaly = (
            self.group.core,
            self.group.sensor,
            self.group.anomaly,
        )

    def desire(self, **values):
        return self.core.update_shadow_from_cloud(THING, {"state": {"desired": {"sensor": values}}})

    def readings(self, n):
        for _ in range(n):
            self.sensor.tick()
            self.clock.advance(5)
            self.anomaly.pump()

    def shadow(self):
        return self.core.shadows.document(THING)["state"]

    def events(self):
        return [m["event"] for t, m in self.core.cloud_messages if t == "IoTBlog/anomaly"]

    def close(self):
        self.group.close()


@pytest.fixture
def group(tmp_path, standin, password):
    running = Group(tmp_path, standin.url, password)
    yield running
    running.close()


def test_a_limit_raised_mid_episode_recovers_it_and_resolves_its_one_incident(group, standin):
    group.humidity.level = 60.0
    group.readings(4)
    assert group.events() == ["breach"]
    [incident] = standin.incidents()
    assert incident["state"] == "1"
    group.desire(humidLimit=70)
    group.readings(2)
    assert group.events() == ["breach"]  # the usual debounce: three readings inside
    group.readings(1)
    assert group.events() == ["breach", "recovered"]
    [incident] = standin.incidents()  # the same incident, resolved; no second one
    assert incident["state"] == "6"
    recovered = [m for t, m in group.core.cloud_messages if t == "IoTBlog/anomaly"][-1]
    assert recovered["limit"] == 70.0
    # reported converged with desired: no delta left
    state = group.shadow()
    assert state["reported"]["sensor"]["humidLimit"] == 70 and "delta" not in state
    assert group.sensor.counts["readings"] == 7  # every reading published, none skipped


def test_a_limit_lowered_while_normal_opens_an_episode_after_the_debounce(group, standin):
    group.humidity.level = 45.0
    group.readings(3)
    group.desire(humidLimit=40)
    group.readings(2)
    assert group.events() == []
    group.readings(1)
    assert group.events() == ["breach"]
    assert len(standin.incidents()) == 1
    assert "limit 40" in standin.incidents()[0]["short_description"]


def test_an_invalid_value_is_rejected_changes_nothing_and_is_reported(group, standin, caplog):
    group.humidity.level = 45.0
    group.desire(humidLimit=-5, debounceSamples=2)
    group.readings(5)
    assert group.events() == []
    state = group.shadow()
    reason = state["reported"]["sensorRejected"]["humidLimit"]["reason"]
    assert reason.startswith("humidLimit must be between 0 and 100 %RH")
    assert reason in caplog.text and "humidLimit stays 50" in caplog.text
    assert state["reported"]["sensor"]["humidLimit"] == 50
    assert state["reported"]["sensor"]["debounceSamples"] == 2  # the valid part applied
    assert state["delta"] == {"sensor": {"humidLimit": -5}}  # asked for and refused
    assert group.sensor.live_config.counts["rejected"] == 1  # once, whatever the deltas after
    # Asking for something valid clears the rejection.
    group.desire(humidLimit=55)
    group.readings(1)
    state = group.shadow()
    assert "sensorRejected" not in state["reported"] and "delta" not in state


def test_an_applied_value_survives_a_restart_even_before_the_shadow_answers(
    tmp_path, standin, password
):
    first = Group(tmp_path, standin.url, password, level=45.0)
    first.desire(humidLimit=40)
    first.readings(1)  # applied at this reading, and saved
    first.close()
    saved = json.loads((tmp_path / "sensor-state-{}.json".format(THING)).read_text())
    assert saved["live"] == {"shadow": {"humidLimit": 40}}
    # The restarted function's core has lost its shadows: its state file has the value.
    (tmp_path / "shadows.json").unlink()
    again = Group(tmp_path, standin.url, password, level=45.0, clock=first.clock)
    try:
        assert again.sensor.live_config.counts["applied"] == 0
        again.readings(3)
        assert again.events() == ["breach"]  # 45 %RH is beyond 40 from the first reading on
        assert again.shadow()["reported"]["sensor"]["humidLimit"] == 40
    finally:
        again.close()


def test_a_change_not_applied_before_a_restart_comes_back_from_the_shadow(
    tmp_path, standin, password
):
    first = Group(tmp_path, standin.url, password, level=45.0)
    first.desire(humidLimit=40)  # decided, waiting for the next reading...
    first.close()  # ...which this process never takes
    again = Group(tmp_path, standin.url, password, level=45.0, clock=first.clock)
    try:
        again.readings(3)
        assert again.events() == ["breach"]
        assert "delta" not in again.shadow()
    finally:
        again.close()


def test_a_change_while_servicenow_is_down_loses_nothing(group, standin):
    group.humidity.level = 60.0
    standin.faults.down = True
    group.readings(4)
    group.desire(humidLimit=70)
    group.readings(4)
    assert group.events() == ["breach", "recovered"]
    assert standin.incidents() == []
    assert group.anomaly.outbox.counts()["pending"] == 2
    standin.faults.down = False
    group.clock.advance(600)
    group.anomaly.pump()
    [incident] = standin.incidents()
    assert incident["state"] == "6"  # opened, then resolved: nothing lost, nothing twice
    assert group.anomaly.outbox.counts()["pending"] == 0
    assert group.sensor.counts["readings"] == 8


def test_the_period_changes_at_the_next_reading(tmp_path, standin, password):
    group = Group(tmp_path, standin.url, password)
    try:
        group.desire(period=1)
        group.sensor.run(max_ticks=11)
        stamps = [m["ts"] for t, m in group.core.cloud_messages if t == "IoTBlog/sensorData"]
        gaps = {round(b - a, 3) for a, b in zip(stamps, stamps[1:])}
        assert gaps == {1.0}  # the first reading applied it; every gap after is the new one
    finally:
        group.close()


def test_a_secret_never_reaches_the_shadow(group, password):
    group.desire(snowUrl="https://x.service-now.com")
    group.readings(1)
    text = json.dumps(group.core.shadows.document(THING))
    assert password not in text and SNOW_USER not in text
    assert "cannot change while the function runs" in text


def test_removing_the_override_from_desired_gives_the_deployments_value_back(group):
    group.desire(humidLimit=60, tempLimit=25)
    group.readings(1)
    assert group.shadow()["reported"]["sensor"]["humidLimit"] == 60
    group.desire(humidLimit=None)  # null deletes it from desired: no delta says so
    group.readings(1)
    state = group.shadow()
    assert state["reported"]["sensor"]["humidLimit"] == 50  # the function's environment
    assert state["reported"]["sensor"]["tempLimit"] == 25  # still overridden
    assert group.sensor.settings.limits[1].upper == 50.0


def test_a_stale_delta_arriving_late_does_not_revert_a_limit(group):
    first = group.desire(humidLimit=60)
    group.desire(humidLimit=65)
    group.readings(1)
    # The first change's delta again, late (a core redelivering, pub/sub out of order).
    late = {"state": {"sensor": {"humidLimit": 60}}, "version": first["version"]}
    group.core.publish(SHADOW_SERVICE, DELTA.format(THING), late)
    group.readings(2)
    assert group.shadow()["reported"]["sensor"]["humidLimit"] == 65
    assert group.sensor.settings.limits[1].upper == 65.0


def test_one_update_that_changes_a_value_and_removes_another_does_both(group):
    group.desire(humidLimit=60, tempLimit=25)
    group.readings(1)
    group.desire(humidLimit=None, tempLimit=26)  # a delta for tempLimit; only documents has both
    group.readings(1)
    state = group.shadow()
    assert state["reported"]["sensor"]["humidLimit"] == 50 and "delta" not in state
    assert state["reported"]["sensor"]["tempLimit"] == 26


def test_a_report_the_shadow_service_throttled_is_sent_again_at_a_later_reading(group):
    group.readings(1)
    group.core.shadows.max_requests_per_second = 1  # the change below takes this second's one
    group.desire(humidLimit=60)
    group.readings(1)  # applied; its report is refused with 429 Too Many Requests
    assert group.shadow()["reported"]["sensor"]["humidLimit"] == 50
    assert group.shadow()["delta"] == {"sensor": {"humidLimit": 60}}
    group.readings(1)  # no new change: the report is made again all the same
    state = group.shadow()
    assert state["reported"]["sensor"]["humidLimit"] == 60 and "delta" not in state


def test_a_report_too_large_for_the_shadow_is_refused_once_and_logged(group, caplog):
    group.readings(1)
    # Another application's desired state fills the shadow to 100 bytes below its 8 KB.
    state = group.shadow()
    used = sum(len(json.dumps(state[s], separators=(",", ":"))) for s in ("reported",))
    notes = "x" * (MAX_STATE_BYTES - used - len('{"notes":""}') - 100)
    group.core.update_shadow_from_cloud(THING, {"state": {"desired": {"notes": notes}}})
    refused = group.core.shadows.counts["rejected"]
    group.desire(humidLimit="y" * 40)  # fits; its rejection, reported with its reason, does not
    group.readings(3)
    assert "the shadow service refused the report for {}".format(THING) in caplog.text
    assert "413" in caplog.text
    assert group.core.shadows.counts["rejected"] == refused + 1  # not sent again and again
    assert group.sensor.settings.limits[1].upper == 50.0


def test_a_thing_without_a_shadow_gets_one_from_the_first_report_without_a_warning(group, caplog):
    group.readings(1)
    state = group.shadow()
    assert state["reported"]["sensor"]["humidLimit"] == 50 and "desired" not in state
    assert "refused" not in caplog.text and "could not" not in caplog.text


def test_a_refused_request_on_the_shadow_topics_is_logged_with_its_reason(group, caplog):
    group.readings(1)
    error = {"code": 500, "message": "Internal service failure", "timestamp": 1}
    group.core.publish(SHADOW_SERVICE, "$aws/things/{}/shadow/get/rejected".format(THING), error)
    assert (
        "the shadow service refused a get for {}: 500 Internal service failure".format(THING)
        in caplog.text
    )


def test_another_things_shadow_changes_nothing(group):
    # A handler subscribed with a wildcard sees every thing's deltas.
    handle = handler_for(group.sensor)
    other = {"state": {"sensor": {"humidLimit": 30}}, "version": 99}
    handle(other, LambdaContext("sensor", DELTA.format("pi-hall"), SHADOW_SERVICE))
    group.readings(1)
    assert group.sensor.settings.limits[1].upper == 50.0
    assert group.shadow()["reported"]["sensor"]["humidLimit"] == 50


def test_a_malformed_shadow_layer_in_the_state_file_is_ignored(tmp_path, standin, password):
    first = Group(tmp_path, standin.url, password, level=45.0)
    first.desire(humidLimit=40)
    first.readings(1)
    first.close()
    path = tmp_path / "sensor-state-{}.json".format(THING)
    saved = json.loads(path.read_text())
    saved["live"] = {"shadow": ["humidLimit", 40]}
    path.write_text(json.dumps(saved))
    (tmp_path / "shadows.json").unlink()  # and the core lost its shadows: nothing says 40
    again = Group(tmp_path, standin.url, password, level=45.0, clock=first.clock)
    try:
        again.readings(3)
        assert again.events() == []  # 45 %RH is within the deployment's 50
        assert again.shadow()["reported"]["sensor"]["humidLimit"] == 50
    finally:
        again.close()


def test_the_simulation_console_shows_each_change_applied_or_rejected(group):
    lines = []
    group.sensor.live_config.on_change.append(config_line(lambda tag, text: lines.append(text)))
    group.desire(humidLimit=-5, tempLimit=25)
    assert lines == [
        "rejected humidLimit=-5: humidLimit must be between 0 and 100 %RH (what a humidity "
        "reading can be), got -5; humidLimit stays 50"
    ]
    group.readings(1)
    assert lines[1:] == ["applied tempLimit=25 (was 30)"]


def test_a_refused_value_is_reported_at_once_not_a_reading_later(group):
    group.readings(1)
    group.desire(humidLimit=-5)
    rejected = group.shadow()["reported"]["sensorRejected"]["humidLimit"]
    assert rejected["value"] == -5 and rejected["source"] == "shadow"


def test_removing_the_only_override_gives_the_deployments_value_back(group):
    group.desire(humidLimit=60)
    group.readings(1)
    group.desire(humidLimit=None)  # desired.sensor is gone: only documents shows the removal
    group.readings(1)
    state = group.shadow()
    assert state["reported"]["sensor"]["humidLimit"] == 50 and "delta" not in state
    assert group.sensor.settings.limits[1].upper == 50.0
