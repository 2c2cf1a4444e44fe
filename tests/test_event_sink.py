"""``snowSink=event``: episodes as Event Management events, against the stand-in's
``/api/global/em/jsonv2`` (strict about ServiceNow's event field rules), through the same
outbox, retries and dead letters as incident actions."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from conftest import SNOW_USER
from helpers import anomaly
from test_anomaly_function import make_service

from agent.status import HEALTH_SCHEMA, metrics
from agent.status.document import build
from agent.status.health import ServiceNowCalls, anomaly_collector
from agent.status.model import StatusModel
from agent.status.settings import StatusSettings

EPISODE = "pi-test:humidity:upper:1790000000"
KEY = "edge-agent:" + EPISODE


def gmt(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def event_service(anomaly_settings, core, clock, **variables):
    return make_service(anomaly_settings, core, clock, snowSink="event", **variables)


def test_an_episode_is_an_event_an_update_and_a_clear_on_one_alert(
    standin, anomaly_settings, core, clock
):
    service = event_service(anomaly_settings, core, clock)
    service.handle(anomaly())
    assert service.pump() == 1
    (alert,) = standin.alerts()
    assert alert["state"] == "Open" and alert["severity"] == "3"  # humidImpact 3: minor
    service.handle(anomaly("update", seq=1, value=66.0, peak=66.0, ts=1_790_003_700.0))
    service.handle(anomaly("recovered", seq=2, value=45.0, peak=66.0, ts=1_790_003_800.0))
    assert service.pump() == 2
    assert standin.incidents() == []  # events, not incidents
    breach, update, clear = standin.events.events
    assert [e["severity"] for e in (breach, update, clear)] == ["3", "3", "0"]
    assert {e["message_key"] for e in (breach, update, clear)} == {KEY}
    assert breach["node"] == "pi-test" and breach["resource"] == "humidity"
    assert breach["type"] == "Environment" and breach["metric_name"] == "humidity (%RH)"
    assert breach["time_of_event"] == gmt(1_790_000_100.0)
    info = json.loads(clear["additional_info"])
    assert info["limit"] == "50 %RH" and info["peak"] == "66 %RH" and info["reading"] == "45 %RH"
    assert info["episode_started"] == gmt(1_790_000_000.0)
    assert all(isinstance(v, str) for v in info.values())
    (alert,) = standin.alerts()
    assert alert["state"] == "Closed" and alert["events"] == 3


def test_an_event_from_a_clock_not_yet_set_states_no_1970_date(
    standin, anomaly_settings, core, clock
):
    # A Pi without a real-time clock, before NTP: Event Management gets no 1970 start.
    service = event_service(anomaly_settings, core, clock)
    episode = "pi-test:humidity:upper:35-0badc0de"
    service.handle(anomaly(episode=episode, started_at=35.0, ts=95.0, start_clock_unsynced=True))
    assert service.pump() == 1
    (sent,) = standin.events.events
    info = json.loads(sent["additional_info"])
    assert info["episode_started"] == "not known (the device's clock was not set yet)"
    assert "1970" not in json.dumps(sent)


def test_severity_follows_the_metrics_impact(standin, anomaly_settings, core, clock):
    service = event_service(anomaly_settings, core, clock, tempImpact="1", humidImpact="2")
    service.handle(anomaly(episode="pi-test:temperature:upper:1790000000", metric="temperature"))
    service.handle(anomaly())
    assert service.pump() == 2
    assert [e["severity"] for e in standin.events.events] == ["1", "2"]
    assert sorted(a["severity"] for a in standin.alerts()) == ["1", "2"]


def test_a_failed_send_is_retried_and_a_resent_event_lands_on_the_same_alert(
    standin, anomaly_settings, core, clock
):
    service = event_service(anomaly_settings, core, clock)
    service.handle(anomaly())
    standin.faults.fail_next(1, status=503)
    assert service.pump() == 0 and standin.events.events == []
    clock.advance_to(service.next_attempt_at())
    standin.fail_after_commit_next(1)  # taken, but the answer never arrives
    assert service.pump() == 0 and len(standin.events.events) == 1
    clock.advance_to(service.next_attempt_at())
    assert service.pump() == 1
    assert len(standin.events.events) == 2  # sent again: harmless, same message_key
    (alert,) = standin.alerts()
    assert alert["events"] == 2 and alert["state"] == "Open"
    assert service.outbox.counts()["pending"] == 0


def test_without_evt_mgmt_integration_the_event_is_dead_lettered(
    standin, anomaly_settings, core, clock
):
    standin.set_roles(SNOW_USER, ["itil"])
    service = event_service(anomaly_settings, core, clock)
    service.handle(anomaly())
    assert service.pump() == 1
    (dead,) = service.outbox.dead_letters()
    assert dead["kind"] == "event" and dead["status"] == 403
    assert "evt_mgmt_integration" in dead["reason"]
    assert standin.events.events == []


def test_metrics_and_the_status_page_count_events(standin, anomaly_settings, core, clock):
    service = event_service(anomaly_settings, core, clock)
    service.handle(anomaly())
    service.handle(anomaly("recovered", seq=1, value=45.0, ts=1_790_000_200.0))
    assert service.pump() == 2
    report = anomaly_collector(service, ServiceNowCalls(clock))()
    model = StatusModel()
    now = clock.time()
    model.handle(
        {"schema": HEALTH_SCHEMA, "function": "anomaly", "started_at": now, "ts": now, **report}
    )
    doc = build(model, {}, StatusSettings.from_mapping({"stateDir": "/nonexistent"}), now)
    assert doc["delivery"]["servicenow"]["sink"] == "event"
    text = metrics.render(doc)
    assert re.search(r'^edge_agent_events_total\{action="sent"\} 1$', text, re.M), text
    assert re.search(r'^edge_agent_events_total\{action="cleared"\} 1$', text, re.M)
    assert service.summary()["events_sent"] == 1


def test_a_site_gateway_refuses_the_event_sink(tmp_path):
    import pytest

    from agent.config import AnomalySettings
    from agent.errors import ConfigError

    with pytest.raises(ConfigError, match="snowSink=event is not available on a site gateway"):
        AnomalySettings.from_mapping(
            {"snowUrl": "https://x.service-now.com", "site": "plant-1", "snowSink": "event"}
        )


def _post(standin, password, body):
    import requests

    return requests.post(
        standin.url + "/api/global/em/jsonv2",
        json=body,
        auth=(SNOW_USER, password),
        headers={"Accept": "application/json"},
        timeout=10,
    )


def test_the_standin_refuses_what_event_management_refuses(standin, password):
    good = {
        "source": "edge-agent",
        "node": "pi-1",
        "severity": "2",
        "message_key": "k",
        "time_of_event": "2026-12-07 19:00:00",
        "additional_info": json.dumps({"limit": "50"}),
    }
    bad = [
        ({"severity": 2}, "severity must be a string"),
        ({"severity": "6"}, "severity must be 0 (clear) to 5 (OK)"),
        ({"node": ""}, "node is required"),
        ({"message_key": "k" * 1025}, "message_key is longer than 1024"),
        ({"time_of_event": "2026-12-07T19:00:00Z"}, "time_of_event must be yyyy-MM-dd HH:mm:ss"),
        ({"additional_info": json.dumps({"limit": 50})}, "additional_info.limit must be a string"),
        ({"additional_info": "[1]"}, "additional_info must hold a JSON object"),
    ]
    for change, detail in bad:
        answer = _post(standin, password, {"records": [good, dict(good, **change)]})
        assert answer.status_code == 400, change
        assert answer.json()["error"]["detail"].startswith("records[1]: " + detail), change
    assert standin.events.events == []  # a batch with one bad record is refused whole
    assert _post(standin, password, [good]).status_code == 400  # not {"records": [...]}
    answer = _post(standin, password, {"records": [good]})
    assert answer.json() == {"result": {"Default Bulk Endpoint": "1 events were inserted"}}
