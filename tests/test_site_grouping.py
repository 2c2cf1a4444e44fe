"""A site gateway groups the episodes of many Pis: one incident per site event, over real HTTP."""

from __future__ import annotations

import pytest
from helpers import anomaly

from agent.config import AnomalySettings
from agent.errors import ConfigError
from agent.site.grouping import Grouper
from agent.topology import ANOMALY_FUNCTION_ID
from functions import anomaly_function

T0 = 1_790_000_000.0


def breach(device, ts, peak=64.0, metric="humidity", started=None, **extra):
    started = ts if started is None else started
    episode = "{}:{}:upper:{}".format(device, metric, int(started))
    return anomaly(
        "breach",
        0,
        episode,
        value=peak,
        peak=peak,
        ts=ts,
        metric=metric,
        started_at=started,
        **extra,
    )


def recovered(device, ts, started, peak=64.0, seq=1, metric="humidity"):
    episode = "{}:{}:upper:{}".format(device, metric, int(started))
    return anomaly(
        "recovered", seq, episode, value=45.0, peak=peak, ts=ts, metric=metric, started_at=started
    )


def gateway(standin, core, clock, tmp_path, **variables):
    return anomaly_function.create_app(
        environ={
            "snowUrl": standin.url,
            "stateDir": str(tmp_path / "state"),
            "site": "lab",
            **variables,
        },
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=clock,
    )


def notes(incident):
    return [e["value"] for e in incident["_journal"] if e["field"] == "work_notes"]


def test_a_site_event_on_many_pis_is_one_incident_that_names_every_device(
    standin, core, clock, tmp_path
):
    service = gateway(standin, core, clock, tmp_path)
    devices = ["pi-{:02d}".format(i) for i in range(12)]
    for i, device in enumerate(devices[:8]):  # within the 30 s wait
        service.handle(breach(device, clock.time(), peak=60.0 + i))
        clock.advance(3)
    service.pump()
    assert standin.incidents() == []  # the group is still forming
    clock.advance(10)
    service.pump()
    (incident,) = standin.incidents()
    assert "8 devices" in incident["short_description"]
    assert "site lab" in incident["short_description"]
    assert "peak 67 %RH on pi-07" in incident["short_description"]
    for device in devices[:8]:
        assert device in incident["description"]
    # Four more join; the work note waits for the interval, then lists them with the peak.
    for i, device in enumerate(devices[8:]):
        service.handle(breach(device, clock.time(), peak=70.0 + i))
    service.pump()
    assert notes(standin.incidents()[0]) == []
    clock.advance(300)
    service.pump()
    (note,) = notes(standin.incidents()[0])
    assert "4 joined: pi-08, pi-09, pi-10, pi-11" in note
    assert "12 devices in breach; peak 73 %RH on pi-11" in note
    # Recoveries one by one: the incident stays open until the last device is back.
    for device in devices[:-1]:
        service.handle(recovered(device, clock.time(), started=_started(service, device)))
    service.pump()
    assert standin.incidents()[0]["state"] == "1"
    service.handle(recovered(devices[-1], clock.time(), started=_started(service, devices[-1])))
    service.pump()
    (incident,) = standin.incidents()
    assert incident["state"] == "6"
    last = notes(incident)[-1]
    assert last.startswith("All devices back within limit")
    for device in devices:
        assert device in last


def _started(service, device):
    return service.site.grouper.seen["{}|humidity|upper".format(device)]["started_at"]


def test_at_most_one_note_per_interval_however_many_devices_change(standin, core, clock, tmp_path):
    service = gateway(
        standin, core, clock, tmp_path, groupWaitSeconds="0", groupIntervalSeconds="60"
    )
    service.handle(breach("pi-a", clock.time()))
    service.pump()
    for minute in range(5):
        for k in range(10):  # ten devices join every minute
            service.handle(breach("pi-{}-{}".format(minute, k), clock.time()))
            clock.advance(6)
            service.pump()
    (incident,) = standin.incidents()
    # 5 minutes at one note per 60 s: the last changes wait for the next interval.
    assert 4 <= len(notes(incident)) <= 5
    clock.advance(60)
    service.pump()
    joined = " ".join(notes(standin.incidents()[0]))
    for minute in range(5):
        for k in range(10):
            assert "pi-{}-{}".format(minute, k) in joined


def test_a_breach_after_the_group_resolved_opens_a_new_incident_naming_the_previous(
    standin, core, clock, tmp_path
):
    service = gateway(standin, core, clock, tmp_path, groupWaitSeconds="0")
    service.handle(breach("pi-a", clock.time()))
    service.pump()
    service.handle(recovered("pi-a", clock.time() + 60, started=clock.time()))
    clock.advance(120)
    service.pump()
    (first,) = standin.incidents()
    assert first["state"] == "6"
    service.handle(breach("pi-b", clock.time()))
    service.pump()
    second = [i for i in standin.incidents() if i["sys_id"] != first["sys_id"]]
    assert len(second) == 1
    assert (
        "Follows the previous incident of this group: {}".format(first["number"])
        in (second[0]["description"])
    )
    assert second[0]["state"] == "1"


def test_groups_follow_group_by(standin, core, clock, tmp_path):
    service = gateway(standin, core, clock, tmp_path, groupWaitSeconds="0")
    service.handle(breach("pi-a", clock.time()))
    service.handle(breach("pi-b", clock.time(), metric="temperature", peak=35.0, limit=30.0))
    service.handle(breach("pi-c", clock.time()))
    service.pump()
    assert len(standin.incidents()) == 2  # humidity above, temperature above
    per_device = gateway(
        standin, core, clock, tmp_path / "other", groupWaitSeconds="0", groupBy="device,metric"
    )
    per_device.handle(breach("pi-x", clock.time()))
    per_device.handle(breach("pi-y", clock.time()))
    per_device.pump()
    assert len(standin.incidents()) == 4


def test_a_repeated_or_stale_event_changes_nothing(standin, core, clock, tmp_path):
    service = gateway(standin, core, clock, tmp_path, groupWaitSeconds="0")
    event = breach("pi-a", clock.time())
    assert service.handle(event) is True
    assert service.handle(event) is False
    service.handle(recovered("pi-a", clock.time() + 5, started=clock.time()))
    service.pump()
    assert service.handle(event) is False  # redelivered after its group ended
    service.pump()
    (incident,) = standin.incidents()
    assert incident["state"] == "6"


def test_a_pi_rebooted_at_1970_is_heard_and_its_incident_states_no_1970_date(
    standin, core, clock, tmp_path
):
    # A Pi without a real-time clock reboots near 1970 until NTP sets it: its next episode
    # starts "before" the last one by wall time, and must open a group all the same.
    service = gateway(standin, core, clock, tmp_path, groupWaitSeconds="0")
    first = breach("pi-a", clock.time())
    service.handle(first)
    service.handle(recovered("pi-a", clock.time() + 60, started=clock.time()))
    clock.advance(120)
    service.pump()
    after_reboot = breach("pi-a", 95.0, started=35.0)
    assert service.handle(after_reboot) is True
    service.pump()
    opened = [i for i in standin.incidents() if i["state"] == "1"]
    assert len(opened) == 1
    assert "1970" not in opened[0]["description"]
    assert "not known (the device's clock was not set yet)" in opened[0]["description"]
    # A late copy of the episode it moved past changes nothing.
    assert service.handle(first) is False


def test_a_restarted_gateway_continues_its_groups(standin, core, clock, tmp_path):
    service = gateway(standin, core, clock, tmp_path)
    service.handle(breach("pi-a", clock.time()))
    clock.advance(5)
    service.handle(breach("pi-b", clock.time()))
    service.close()  # before the wait was over
    clock.advance(30)
    again = gateway(standin, core, clock, tmp_path)
    again.pump()
    (incident,) = standin.incidents()
    assert "2 devices" in incident["short_description"]
    again.handle(breach("pi-a", T0))  # the core redelivers: nothing new
    for device in ("pi-a", "pi-b"):
        again.handle(recovered(device, clock.time(), started=_started(again, device)))
    again.pump()
    (incident,) = standin.incidents()
    assert incident["state"] == "6"


def test_a_single_pi_keeps_one_incident_per_episode(standin, core, clock, tmp_path):
    service = anomaly_function.create_app(
        environ={"snowUrl": standin.url, "stateDir": str(tmp_path)},
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=clock,
    )
    assert service.site is None and service.settings.group_wait == 0
    service.handle(breach("pi-a", clock.time()))
    service.handle(breach("pi-b", clock.time()))
    service.pump()
    assert sorted(i["correlation_id"] for i in standin.incidents()) == [
        "edge-agent:pi-a:humidity:upper:1790000000",
        "edge-agent:pi-b:humidity:upper:1790000000",
    ]


def test_group_variables_are_checked():
    base = {"snowUrl": "https://dev1.service-now.com", "site": "lab"}
    assert AnomalySettings.from_mapping(base).group_wait == 30.0
    assert AnomalySettings.from_mapping(dict(base, groupBy="metric")).group_by == (
        "site",
        "metric",
    )
    with pytest.raises(ConfigError, match="groupBy must list labels among"):
        AnomalySettings.from_mapping(dict(base, groupBy="site,room"))
    with pytest.raises(ConfigError, match="groupWaitSeconds must not be negative"):
        AnomalySettings.from_mapping(dict(base, groupWaitSeconds="-1"))


def test_grouper_state_rows_rebuild_the_same_groups():
    settings = AnomalySettings.from_mapping(
        {"snowUrl": "https://dev1.service-now.com", "site": "lab"}
    )
    grouper = Grouper("lab", settings.group_by, 30.0, 300.0, settings)
    grouper.on_event(breach("pi-a", T0), T0)
    grouper.on_event(breach("pi-b", T0 + 1), T0 + 1)
    rows = {k: v for k, v in grouper.take_changes().items() if v is not None}
    again = Grouper("lab", settings.group_by, 30.0, 300.0, settings)
    again.load(rows)
    assert again.next_due_at() == grouper.next_due_at() == T0 + 30
    assert [a.key for a in again.due(T0 + 30)] == [a.key for a in grouper.due(T0 + 30)]


def test_a_group_incident_carries_the_sites_service_fields(standin, core, clock, tmp_path):
    service = gateway(
        standin,
        core,
        clock,
        tmp_path,
        groupWaitSeconds="0",
        snowBusinessService="Building services",
        snowContactType="monitoring",
    )
    service.handle(breach("pi-a", clock.time()))
    service.pump()
    (incident,) = standin.incidents()
    assert incident["business_service"] == "Building services"
    assert incident["contact_type"] == "monitoring"


def test_groups_started_in_one_second_each_get_their_own_incident():
    # Three site events in one second of the gateway's clock (a flapping metric, a clock
    # set back): each group needs its own correlation id, or the third would find the
    # first's incident and one site event would go unreported.
    settings = AnomalySettings.from_mapping(
        {"snowUrl": "https://dev1.service-now.com", "site": "lab"}
    )
    grouper = Grouper("lab", settings.group_by, 0.0, 300.0, settings)
    opened = []
    for n in range(3):
        started = T0 + n * 0.1
        actions = grouper.on_event(breach("pi-a", started, started=T0 + n), started)
        opened += [a.correlation_id for a in actions if a.kind == "open"]
        grouper.on_event(recovered("pi-a", started + 0.05, started=T0 + n), started + 0.05)
    assert len(opened) == 3 and len(set(opened)) == 3, opened
