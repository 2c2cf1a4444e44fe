"""A site gateway on the status page and /metrics: devices by state, open groups, last readings."""

from __future__ import annotations

import json

from helpers import anomaly
from prometheus_client.parser import text_string_to_metric_families

from agent.schema import READING_SCHEMA
from agent.status import document, metrics
from agent.status.health import anomaly_reporter
from agent.status.model import StatusModel
from agent.status.settings import StatusSettings
from agent.topology import ANOMALY_FUNCTION_ID
from functions import anomaly_function

DEVICES = ["pi-0", "pi-1", "pi-2", "pi-3"]


def reading(device, seq, ts, humidity=40.0):
    return {
        "schema": READING_SCHEMA,
        "device": device,
        "seq": seq,
        "ts": ts,
        "temperature": 21.5,
        "humidity": humidity,
        "pressure": 1011.0,
    }


def site_document(standin, core, clock, tmp_path):
    service = anomaly_function.create_app(
        environ={
            "snowUrl": standin.url,
            "stateDir": str(tmp_path),
            "site": "floor-3",
            "siteDevices": ",".join(DEVICES),
        },
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=clock,
    )
    sent = []
    reporter = anomaly_reporter(service, publish=lambda topic, message: sent.append(message))
    for step in range(30):  # 150 s: pi-3 stops after its first minute
        for i, device in enumerate(DEVICES):
            if device != "pi-3" or step < 12:
                humid = 60.0 if device in ("pi-1", "pi-2") and step >= 20 else 40.0 + i
                service.handle(reading(device, step, clock.time(), humid), "IoTBlog/readings")
        if step == 20:
            for device in ("pi-1", "pi-2"):
                episode = "{}:humidity:upper:{}".format(device, int(clock.time()))
                service.handle(
                    anomaly("breach", 0, episode, ts=clock.time(), started_at=clock.time())
                )
        clock.advance(5)
        service.pump()
    reporter.report()
    model = StatusModel()
    # As the status function gets it: through JSON, every field checked.
    assert model.handle(json.loads(json.dumps(sent[-1]))) == "health"
    settings = StatusSettings.from_mapping({"statusPort": "0", "stateDir": str(tmp_path)})
    return document.build(model, {}, settings, now=clock.time())


def test_the_site_shows_devices_by_state_groups_and_last_readings(standin, core, clock, tmp_path):
    site = site_document(standin, core, clock, tmp_path)["site"]
    assert site["name"] == "floor-3"
    assert site["devices_by_state"] == {"normal": 1, "in breach": 2, "silent": 1}
    kinds = {g["kind"]: g for g in site["groups"]}
    assert kinds["humidity above"]["members"] == ["pi-1", "pi-2"]
    assert kinds["silent"]["members"] == ["pi-3"]
    devices = {d["device"]: d for d in site["devices"]}
    assert devices["pi-3"]["state"] == "silent"
    assert devices["pi-0"]["reading"] == {"temperature": 21.5, "humidity": 40.0, "pressure": 1011.0}
    assert devices["pi-3"]["last_reading_at"] < devices["pi-0"]["last_reading_at"] - 60


def test_metrics_label_the_site_by_device(standin, core, clock, tmp_path):
    doc = site_document(standin, core, clock, tmp_path)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render(doc))
        for s in family.samples
    }
    assert samples[("edge_agent_site_devices", (("state", "silent"),))] == 1
    assert samples[("edge_agent_site_devices", (("state", "in breach"),))] == 2
    assert samples[("edge_agent_site_device_silent", (("device", "pi-3"),))] == 1
    assert samples[("edge_agent_site_device_in_breach", (("device", "pi-1"),))] == 1
    assert (
        samples[("edge_agent_site_device_reading", (("device", "pi-2"), ("metric", "humidity")))]
        == 60.0
    )
    groups = [k for k in samples if k[0] == "edge_agent_site_group_members"]
    assert sorted(samples[k] for k in groups) == [1, 2]


def test_a_report_with_a_hostile_site_keeps_only_what_is_well_formed():
    model = StatusModel()
    message = {
        "schema": "edge-agent/health/1",
        "function": "anomaly",
        "device": "gw",
        "started_at": 1_790_000_000.0,
        "ts": 1_790_000_015.0,
        "site": {
            "name": "x",
            "by_state": {"normal": 2, "silent": -1},
            "devices": [
                ["pi-0", "normal", 1.0, 20.0, 500.0, None],
                ["", "normal", 1, 1, 1, 1],
                "junk",
            ],
            "groups": [{"correlation_id": "edge-agent:x", "members": ["pi-0", 7]}, None],
        },
    }
    assert model.handle(message) == "health"
    site = model.health["anomaly"]["site"]
    assert site["by_state"] == {"normal": 2, "in breach": 0, "silent": 0}
    assert site["devices"] == [["pi-0", "normal", 1.0, 20.0, None, None]]  # 500 %RH is no reading
    assert site["groups"][0]["members"] == ["pi-0"]
