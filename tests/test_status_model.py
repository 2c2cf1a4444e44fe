"""The status function's pure parts and its wiring: topology, model, document, metrics, health."""

from __future__ import annotations

import math

import pytest
from conftest import SNOW_USER, secret_json
from helpers import anomaly, wait_until
from prometheus_client.parser import text_string_to_metric_families

from agent.clock import VirtualClock
from agent.credentials import CredentialsProvider
from agent.greengrass.local import LocalCore
from agent.schema import READING_SCHEMA
from agent.sensors import open_sensor
from agent.servicenow.client import TableClient, Unavailable
from agent.status import HEALTH_SCHEMA, document, metrics
from agent.status.health import ServiceNowCalls, public_url, sensor_reporter
from agent.status.model import ReadingRing, StatusModel
from agent.status.settings import StatusSettings, parse_address
from agent.topology import (
    CLOUD,
    HEALTH_TOPIC,
    SENSOR_FUNCTION_ID,
    STATE_VOLUME_ID,
    STATUS_FUNCTION_ID,
    STATUS_SWITCH,
    default_topology,
    deployed_topology,
)

T0 = 1_790_000_000.0


def reading(ts, temperature=22.0, humidity=45.0, pressure=1013.0, device="pi-test", seq=1):
    return {
        "schema": READING_SCHEMA,
        "device": device,
        "seq": seq,
        "ts": ts,
        "temperature": temperature,
        "humidity": humidity,
        "pressure": pressure,
    }


def health(function="sensor", started=T0, ts=T0 + 15, **extra):
    message = {
        "schema": HEALTH_SCHEMA,
        "function": function,
        "device": "pi-test",
        "pid": 42,
        "started_at": started,
        "ts": ts,
        "seq": 1,
        "final": False,
        "counters": {"readings": 3, "samples": 3},
    }
    message.update(extra)
    return message


def settings(**extra):
    return StatusSettings.from_mapping({"statusPort": "0", "stateDir": "/nonexistent", **extra})


# -- topology ------------------------------------------------------------------------------


def test_the_status_function_is_in_the_group_only_when_its_port_is_set():
    assert [f.id for f in default_topology().functions] == ["sensor", "anomaly"]
    topology = default_topology(environment={STATUS_FUNCTION_ID: {"statusPort": "8080"}})
    status = topology.function(STATUS_FUNCTION_ID)
    assert status.pinned and status.environment["statusPort"] == "8080"
    assert status.environment["statusBind"] == "127.0.0.1"  # loopback unless told otherwise
    # It reads the state volume and may not write it.
    assert [(a.resource_id, a.permission) for a in status.resource_access] == [
        (STATE_VOLUME_ID, "ro")
    ]
    to_status = [s for s in topology.subscriptions if s.target == STATUS_FUNCTION_ID]
    assert {s.subject for s in to_status} == {
        "IoTBlog/sensorData",
        "IoTBlog/anomaly",
        HEALTH_TOPIC.format(function="sensor"),
        HEALTH_TOPIC.format(function="anomaly"),
    }
    # Health reports are local only, and the status function sends nothing anywhere.
    assert not [s for s in topology.subscriptions if "health" in s.subject and s.target == CLOUD]
    assert not topology.subscriptions_from(STATUS_FUNCTION_ID)
    assert all(f.environment.get(STATUS_SWITCH) == "on" for f in topology.functions[:2])


def test_a_v2_component_sees_the_status_function_from_its_own_environment():
    assert [f.id for f in deployed_topology({}).functions] == ["sensor", "anomaly"]
    seen = deployed_topology({STATUS_SWITCH: "on"})
    assert STATUS_FUNCTION_ID in [f.id for f in seen.functions]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("[::1]:0", ("::1", 0)),
    ],
)
def test_serve_addresses(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "70000", "a:b", "[::1]"])
def test_bad_serve_addresses_say_what_is_expected(text):
    with pytest.raises(ValueError, match=r"\[HOST:\]PORT"):
        parse_address(text)


# -- the model -----------------------------------------------------------------------------


def test_the_ring_keeps_the_newest_readings_oldest_first():
    ring = ReadingRing(capacity=5)
    for i in range(8):
        ring.append(T0 + i, (20.0 + i, None if i == 6 else 40.0, 1000.0))
    columns = ring.columns()
    assert columns["ts"] == [T0 + i for i in range(3, 8)]
    assert columns["temperature"] == [23.0, 24.0, 25.0, 26.0, 27.0]
    assert columns["humidity"][3] is None  # a missing value stays missing, never 0
    assert ring.columns(since=T0 + 5)["ts"] == [T0 + 6, T0 + 7]
    assert ring.columns(after_total=7)["ts"] == [T0 + 7]
    assert ring.total == 8 and len(ring) == 5


def test_readings_are_charted_and_missing_values_counted_per_metric():
    model = StatusModel()
    assert model.handle(reading(T0)) == "reading"
    assert model.handle(reading(T0 + 5, humidity=None, pressure=5000.0)) == "reading"
    assert model.handle(reading(T0 + 5)) == "dropped"  # repeated: not charted twice
    assert model.invalid == {"temperature": 0, "humidity": 1, "pressure": 1}
    assert model.readings.columns()["pressure"] == [1013.0, None]  # out of range is not a value
    assert model.device == "pi-test"


@pytest.mark.parametrize(
    "message",
    [
        {"schema": "edge-agent/reading/9", "ts": T0},
        reading(float("nan")),
        reading(T0, device=""),
        reading(T0, device="x" * 500),
        health(function="unknown"),
        health(started="yesterday"),
        anomaly(event="exploded"),
        anomaly(device="<b>\x00</b>"),
        {"no": "schema"},
    ],
)
def test_malformed_messages_are_counted_and_never_kept(message):
    model = StatusModel()
    assert model.handle(message) == "dropped"
    assert model.dropped["malformed"] == 1
    assert len(model.readings) == 0 and not model.health and not model.episodes


def test_an_episode_event_sent_twice_counts_once():
    model = StatusModel()
    assert model.handle(anomaly()) == "anomaly"
    assert model.handle(anomaly()) == "dropped"  # resent after a restart
    assert model.handle(anomaly(event="recovered", seq=1, ts=1_790_000_300.0)) == "anomaly"
    assert model.event_counts == {
        ("breach", "humidity", "upper"): 1,
        ("recovered", "humidity", "upper"): 1,
    }
    (episode,) = model.episodes.values()
    assert episode["breach_at"] == 1_790_000_100.0 and episode["recovered_at"] == 1_790_000_300.0


def test_health_reports_keep_only_checked_fields_and_see_restarts():
    model = StatusModel()
    model.handle(health(counters={"readings": 3, "bad": -1, "also": "x"}, password="hunter2"))
    assert model.health["sensor"]["counters"] == {"readings": 3}
    assert "hunter2" not in repr(model.health)
    model.handle(health(ts=T0 + 10))  # older than the last report of the same process
    assert model.dropped["out_of_order"] == 1
    model.handle(health(started=T0 + 100, ts=T0 + 101))
    assert model.restarts == {"sensor": 1}


# -- the document and /healthz --------------------------------------------------------------


def _views(pending_since=None, error=None):
    outbox = {
        "available": error is None,
        "error": error,
        "pending": 0 if pending_since is None else 2,
        "oldest_pending_at": pending_since,
        "most_attempts": 3,
        "pending_actions": []
        if pending_since is None
        else [{"key": "k", "kind": "open", "last_error": "ServiceNow unreachable (Reset)"}],
        "dead_letters": 0,
        "oldest_dead_at": None,
        "dead_letter_actions": [],
        "incidents": {},
        "delivered": [],
    }
    return {"outbox": outbox, "sensor_state": [], "locks": []}


def test_healthz_is_ok_when_readings_are_fresh_and_nothing_is_stuck():
    model = StatusModel()
    model.handle(reading(T0))
    doc = document.build(model, _views(), settings(), now=T0 + 10)
    assert doc["health"] == {"ok": True, "reasons": []}


def test_healthz_names_stale_readings_stuck_delivery_and_an_unreadable_outbox():
    model = StatusModel()
    model.handle(reading(T0))
    model.handle(health(period=5.0))
    doc = document.build(
        model, _views(pending_since=T0 - 400), settings(statusStuckSeconds="300"), now=T0 + 47
    )
    assert not doc["health"]["ok"]
    stale, stuck = doc["health"]["reasons"]
    assert stale == "readings stale: the last one is 47 s old (limit 15 s)"
    assert stuck.startswith("delivery stuck: 2 actions pending, the oldest for 7 min 27 s")
    assert "last error: ServiceNow unreachable (Reset)" in stuck
    doc = document.build(model, _views(error="no outbox at /x"), settings(), now=T0 + 1)
    assert doc["health"]["reasons"] == ["delivery unknown: no outbox at /x"]
    assert document.build(StatusModel(), _views(), settings(), T0)["health"]["reasons"] == [
        "no reading received yet"
    ]


def test_an_episode_of_a_device_named_with_markup_finds_its_incident():
    # Such a device id reaches ServiceNow mapped to a query-safe correlation id; the page
    # must still put the incident on the episode the sensor named.
    from agent.servicenow.incidents import correlation_id

    episode_id = '<img src=x onerror="x()">&amp;:humidity:upper:1790000000'
    model = StatusModel()
    model.handle(anomaly(episode=episode_id))
    views = _views()
    cid = correlation_id(episode_id)
    assert cid != "edge-agent:" + episode_id
    views["outbox"]["incidents"] = {cid: {"number": "INC0010007", "state": "1", "sys_id": "a" * 32}}
    views["outbox"]["delivered"] = [{"key": cid + "#0:breach", "at": T0}]
    doc = document.build(model, views, settings(snowUrl="http://snow.example"), now=T0 + 1)
    (episode,) = doc["episodes"]
    assert episode["id"] == episode_id and episode["incident"]["number"] == "INC0010007"
    (incident,) = doc["incidents"]
    assert incident["episode_id"] == episode_id and incident["metric"] == "humidity"


def test_incident_links_point_at_the_record_without_credentials():
    url = document.incident_url(public_url("https://user:pw@dev1.service-now.com/"), "a" * 32)
    assert url == "https://dev1.service-now.com/nav_to.do?uri=incident.do%3Fsys_id%3D" + "a" * 32
    assert public_url("http://u:p@[::1]:8080/x?token=1#f") == "http://[::1]:8080/x"


# -- metrics -------------------------------------------------------------------------------


def _families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_parse_and_follow_prometheus_naming():
    model = StatusModel()
    device = 'lab "b"\\ <x>\nnext'
    model.handle(reading(T0, device=device, humidity=None))
    model.handle(anomaly())
    model.handle(health(limits={"humidity": {"upper": 50.0, "lower": None, "hysteresis": 1.0}}))
    calls = ServiceNowCalls(VirtualClock(T0))
    calls.observe("GET", "/api/now/table/incident", "404", 0.003)
    calls.observe("POST", "/api/now/table/incident", "201", 0.2)
    calls.observe("POST", "/oauth_token.do", "401", 0.05)
    snow = dict(calls.snapshot(), url="https://dev1.service-now.com", calls={"GET": 1})
    model.handle(
        health(
            function="anomaly",
            counters={"incidents_opened": 1, "secret_fetches": 1, "queued": 1},
            servicenow=snow,
        )
    )
    text = metrics.render(document.build(model, _views(), settings(), T0 + 1))
    families = _families(text)
    for family in families.values():
        assert family.name.startswith("edge_agent_")
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created"))
    assert families["edge_agent_info"].samples[0].labels["device"] == device  # escaped, intact
    invalid = {s.labels["metric"]: s.value for s in families["edge_agent_invalid_readings"].samples}
    assert invalid == {"temperature": 0, "humidity": 1, "pressure": 0}
    requests = {
        (s.labels["method"], s.labels["code"]): s.value
        for s in families["edge_agent_servicenow_requests"].samples
    }
    assert requests == {("GET", "404"): 1, ("POST", "201"): 1, ("TOKEN", "401"): 1}
    buckets = [
        s
        for s in families["edge_agent_servicenow_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    ]
    values = [s.value for s in buckets]
    assert values == sorted(values) and values[-1] == 3 and buckets[-1].labels["le"] == "+Inf"
    open_now = {(s.labels["metric"], s.value) for s in families["edge_agent_episodes_open"].samples}
    assert open_now == {("humidity", 1)}  # the breach above, not yet recovered
    # A counter whose function has not reported is absent, not a made-up 0.
    assert "edge_agent_mqtt_published" not in families


def test_a_lookup_that_finds_nothing_is_not_a_servicenow_error():
    calls = ServiceNowCalls(VirtualClock(T0))
    calls.observe("GET", "/api/now/table/incident", "404", 0.01)
    assert calls.last_error is None and calls.last_success_at == T0
    calls.observe("PATCH", "/api/now/table/incident/x", "503", 0.01)
    assert calls.last_error == {"at": T0, "method": "PATCH", "code": "503", "cause": ""}


def test_a_404_that_is_not_the_table_api_is_an_error_with_its_cause():
    calls = ServiceNowCalls(VirtualClock(T0))
    cause = "an HTML page titled 'Not Found'"
    calls.observe("GET", "/api/now/table/incident", "404", 0.01, cause)
    assert calls.last_success_at is None
    assert calls.last_error == {"at": T0, "method": "GET", "code": "404", "cause": cause}


# -- health reports over the real routing --------------------------------------------------


def test_health_reports_reach_the_status_function_and_never_the_cloud(tmp_path):
    clock = VirtualClock(T0)
    topology = default_topology(environment={STATUS_FUNCTION_ID: {"statusPort": "0"}})
    core = LocalCore(topology)
    received = []
    core.register(STATUS_FUNCTION_ID, lambda event, ctx: received.append(event), queued=True)
    from functions import sensor_function

    app = sensor_function.create_app(
        environ={"stateDir": str(tmp_path), "deviceId": "pi-h", "tempLimit": "30"},
        runtime=core.runtime_for(SENSOR_FUNCTION_ID),
        sensor=open_sensor("fake", clock=clock, scenario="steady", seed=1),
        clock=clock,
    )
    reporter = sensor_reporter(app)
    for _ in range(4):
        app.tick()
        reporter.pump()
        clock.advance(5)
    reporter.report(final=True)
    assert core.wait_idle(STATUS_FUNCTION_ID)
    reports = [m for m in received if m["schema"] == HEALTH_SCHEMA]
    assert [r["final"] for r in reports] == [False, False, True]  # at 0 s, 15 s, and at stop
    assert reports[-1]["counters"]["readings"] == 4 and reports[-1]["period"] == 5.0
    assert reports[-1]["limits"]["temperature"] == {"upper": 30.0, "lower": None, "hysteresis": 1.0}
    assert len([m for m in received if m["schema"] == READING_SCHEMA]) == 4
    assert not [t for t, _ in core.cloud_messages if "health" in t]


def test_servicenow_calls_are_counted_by_method_and_outcome(standin, password):
    clock = VirtualClock(T0)
    creds = CredentialsProvider(lambda _: secret_json(password), "s", clock=clock)
    client = TableClient(standin.url, creds.get, timeout=2.0, clock=clock)
    calls = ServiceNowCalls(clock)
    client.on_call.append(calls.observe)
    assert client.find_by_correlation("edge-agent:none") is None
    record = client.create({"short_description": "x", "correlation_id": "edge-agent:c"})
    standin.faults.down = True
    with pytest.raises(Unavailable):
        client.update(record["sys_id"], {"work_notes": "n"})
    snapshot = calls.snapshot()
    assert snapshot["requests"] == {"GET 404": 1, "POST 201": 1, "PATCH no_answer": 1}
    assert snapshot["latency"]["count"] == 3 and snapshot["latency"]["sum"] > 0
    assert snapshot["last_error"]["code"] == "no_answer"
    assert client.calls == {"GET": 1, "POST": 1, "PATCH": 1, "TOKEN": 0}
    assert SNOW_USER not in repr(snapshot) and not math.isnan(snapshot["latency"]["sum"])


def _status_of(messages, now):
    model = StatusModel()
    for message in messages:
        model.handle(message)
    return document.build(model, _views(), settings(), now)


def _sensor_app(tmp_path, clock, core=None):
    from functions import sensor_function

    core = core or LocalCore(default_topology())
    return sensor_function.create_app(
        environ={"stateDir": str(tmp_path), "deviceId": "pi-h"},
        runtime=core.runtime_for(SENSOR_FUNCTION_ID),
        sensor=open_sensor("fake", clock=clock, scenario="steady", seed=1),
        clock=clock,
    )


def test_a_stopped_function_shows_as_stopped_and_a_reporting_one_as_running(tmp_path):
    clock = VirtualClock(T0)
    sent = []
    reporter = sensor_reporter(_sensor_app(tmp_path, clock), lambda t, m: sent.append(m))
    reporter.start()  # a report at once, then every 15 s on its thread
    assert wait_until(lambda: sent)
    status = _status_of(sent, T0 + 1)
    assert status["functions"]["sensor"]["state"] == "running"
    reporter.stop()
    assert sent[-1]["final"] is True and sent[-1]["seq"] == len(sent)
    status = _status_of(sent, T0 + 1)
    assert status["functions"]["sensor"]["state"] == "stopped"
    assert "the sensor function stopped (final report sent)" in " ".join(
        status["health"]["reasons"]
    )


def test_a_report_that_cannot_be_sent_is_warned_once_and_the_next_one_goes(tmp_path, caplog):
    clock = VirtualClock(T0)
    sent, broken = [], [True]

    def publish(topic, message):
        if broken[0]:
            raise OSError("core restarting")
        sent.append((topic, message))

    reporter = sensor_reporter(_sensor_app(tmp_path, clock), publish)
    assert reporter.report() is False and reporter.report() is False
    warned = [r for r in caplog.records if "health report on" in r.message]
    assert [r.levelname for r in warned] == ["WARNING", "DEBUG"]
    assert "edge-agent/health/sensor not sent: OSError" in warned[0].message
    broken[0] = False
    assert reporter.report() is True
    [(topic, message)] = sent
    assert topic == "edge-agent/health/sensor" and message["seq"] == 3


def test_health_reports_start_only_where_the_group_has_the_status_function(tmp_path, caplog):
    from agent.status.health import start_if_enabled

    clock = VirtualClock(T0)
    app = _sensor_app(tmp_path, clock)
    assert start_if_enabled(app, SENSOR_FUNCTION_ID, {}) is None
    assert start_if_enabled(app, SENSOR_FUNCTION_ID, {STATUS_SWITCH: "off"}) is None
    reporter = start_if_enabled(app, SENSOR_FUNCTION_ID, {STATUS_SWITCH: "on"})
    try:
        assert reporter is not None and reporter.function_id == "sensor"
    finally:
        reporter.stop(final=False)
    broken = object()  # no settings, no runtime: the reporter cannot be built
    assert start_if_enabled(broken, SENSOR_FUNCTION_ID, {STATUS_SWITCH: "on"}) is None
    assert "health reports for the status function could not start" in caplog.text


@pytest.mark.parametrize(
    "code, success",
    [("200", True), ("204", True), ("300", False), ("301", False), ("302", False), ("500", False)],
)
def test_only_a_2xx_answer_counts_as_a_servicenow_success(code, success):
    calls = ServiceNowCalls(VirtualClock(T0))
    calls.observe("POST", "/api/now/table/incident", code, 0.01)
    snapshot = calls.snapshot()
    assert (snapshot["last_success_at"] == T0) is success
    assert (snapshot["last_error"] is None) is success


def test_a_call_on_a_bucket_bound_counts_in_that_bucket():
    calls = ServiceNowCalls(VirtualClock(T0))
    for seconds in (0.005, 0.0051, 10.0, 10.5, 0.0000004):
        calls.observe("GET", "/api/now/table/incident", "200", seconds)
    latency = calls.snapshot()["latency"]
    # Prometheus' default buckets: the le labels /metrics shows.
    assert latency["buckets"] == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    assert latency["cumulative"][:2] == [2, 3]  # le=0.005 holds 0.005; 0.0051 is in le=0.01
    assert latency["cumulative"][-2:] == [4, 5]  # le=10 holds 10.0; 10.5 only +Inf
    assert latency["count"] == 5 and latency["sum"] == 20.5101  # to the microsecond


def test_a_started_reporter_reports_every_interval_until_it_stops():
    from agent.clock import Clock
    from agent.status.health import HealthReporter

    sent = []
    reporter = HealthReporter(
        "sensor", "pi-h", lambda t, m: sent.append(m), lambda: {"counters": {}}, Clock(), 0.05
    )
    reporter.start()
    assert wait_until(lambda: len(sent) >= 3)  # at start, then every 0.05 s
    reporter.stop()
    assert [m["seq"] for m in sent] == list(range(1, len(sent) + 1))
    assert [m["final"] for m in sent] == [False] * (len(sent) - 1) + [True]
