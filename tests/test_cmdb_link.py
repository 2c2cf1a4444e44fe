"""Incidents linked to the CMDB (``snowCmdbCi``, ``snowBusinessService``, ``snowContactType``)
against the stand-in, whose ``cmdb_ci`` refuses a reference to no CI as a strict instance does."""

from __future__ import annotations

import logging

from helpers import anomaly
from test_anomaly_function import make_service

from agent.status.health import ServiceNowCalls, anomaly_collector
from agent.status.model import clean_health
from devtools.status_cmd import collect, render

EPISODE_2 = "pi-test:temperature:upper:1790000500"


def cmdb_gets(standin):
    return [p for m, p, _ in standin.request_log if m == "GET" and "/table/cmdb_ci" in p]


def test_a_ci_named_after_the_device_is_looked_up_once_and_linked(
    standin, anomaly_settings, core, clock
):
    ci = standin.cmdb.add("pi-test")
    standin.cmdb.add("pi-other")
    service = make_service(
        anomaly_settings,
        core,
        clock,
        snowCmdbCi="{device}",
        snowBusinessService="Cold storage",
        snowContactType="monitoring",
    )
    service.handle(anomaly())
    service.handle(anomaly(episode=EPISODE_2, metric="temperature", limit=30.0))
    assert service.pump() == 2
    incidents = standin.incidents()
    assert [i["cmdb_ci"] for i in incidents] == [ci, ci]
    assert {i["business_service"] for i in incidents} == {"Cold storage"}
    assert {i["contact_type"] for i in incidents} == {"monitoring"}
    assert len(cmdb_gets(standin)) == 1  # looked up once, then cached


def test_a_sys_id_is_used_as_it_is(standin, anomaly_settings, core, clock):
    ci = standin.cmdb.add("rack-7")
    service = make_service(anomaly_settings, core, clock, snowCmdbCi=ci)
    service.handle(anomaly())
    assert service.pump() == 1
    assert standin.incidents()[0]["cmdb_ci"] == ci
    assert cmdb_gets(standin) == []


def test_a_name_not_found_opens_the_incident_without_the_link_and_says_so_once(
    standin, anomaly_settings, core, clock, caplog
):
    caplog.set_level(logging.WARNING)
    service = make_service(anomaly_settings, core, clock, snowCmdbCi="rack-{device}")
    service.handle(anomaly())
    service.handle(anomaly(episode=EPISODE_2, metric="temperature", limit=30.0))
    assert service.pump() == 2
    assert [i["cmdb_ci"] for i in standin.incidents()] == ["", ""]
    said = [r.getMessage() for r in caplog.records if "rack-pi-test" in r.getMessage()]
    assert said == [
        "no configuration item named 'rack-pi-test' in cmdb_ci; incidents open without a CI"
        " (snowCmdbCi)"
    ]
    # edge-agent status, from the state dir alone, and the status page's health report.
    text = render(collect(anomaly_settings.state_dir))
    assert "not found in cmdb_ci: rack-pi-test (incidents open without a CI)" in text
    report = anomaly_collector(service, ServiceNowCalls(clock))()
    page = clean_health({"function": "anomaly", **report}, clock.time(), clock.time())
    assert page["servicenow"]["ci_missing"] == "rack-pi-test"


def test_a_ci_deleted_and_recreated_is_looked_up_again(standin, anomaly_settings, core, clock):
    old = standin.cmdb.add("pi-test")
    service = make_service(anomaly_settings, core, clock, snowCmdbCi="{device}")
    service.handle(anomaly())
    assert service.pump() == 1
    standin.cmdb.remove(old)
    new = standin.cmdb.add("pi-test")  # rebuilt by discovery: same name, new sys_id
    service.handle(anomaly(episode=EPISODE_2, metric="temperature", limit=30.0))
    assert service.pump() == 1
    assert [i["cmdb_ci"] for i in standin.incidents()] == [old, new]
    assert len(cmdb_gets(standin)) == 2
    assert not service.outbox.dead_letters()


def test_a_user_who_may_not_read_cmdb_ci_still_opens_incidents(
    standin, anomaly_settings, core, clock
):
    from conftest import SNOW_USER

    standin.cmdb.add("pi-test")
    standin.set_roles(SNOW_USER, ["sn_incident_write"])
    service = make_service(anomaly_settings, core, clock, snowCmdbCi="{device}")
    service.handle(anomaly())
    assert service.pump() == 1
    assert standin.incidents()[0]["cmdb_ci"] == ""
    assert service.servicenow_notices()["ci_missing"] == "pi-test"
