"""A person's decision in ServiceNow stands: the agent never changes an incident they
resolved, closed or canceled, and the next episode opens a new one."""

from __future__ import annotations

import pytest
import requests
from helpers import anomaly

from agent.topology import ANOMALY_FUNCTION_ID
from functions import anomaly_function

PERSON = ("it.person", "person-Pw-4410")
EPISODE = "pi-test:humidity:upper:1790000000"


@pytest.fixture
def service(standin, anomaly_settings, core, clock, password):
    from conftest import SNOW_USER

    standin.set_users({SNOW_USER: password, PERSON[0]: PERSON[1]})
    app = anomaly_function.create_app(
        environ={"snowUrl": standin.url, "stateDir": anomaly_settings.state_dir},
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=clock,
    )
    yield app
    app.outbox.close()


def person_sets(standin, incident, **fields):
    """What an engineer does in the UI, through the Table API as themselves."""
    response = requests.patch(
        "{}/api/now/table/incident/{}".format(standin.url, incident["sys_id"]),
        json=fields,
        auth=PERSON,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 200, response.text


def agent_entries(incident):
    return [e for e in incident["_journal"] if e["by"] != PERSON[0]]


@pytest.mark.parametrize(
    "state, fields",
    [
        ("7", {"state": "7", "close_code": "Closed/Resolved by Caller", "close_notes": "dup"}),
        ("6", {"state": "6", "close_code": "Solution provided", "close_notes": "fixed the AC"}),
        ("8", {"state": "8"}),
    ],
)
def test_an_incident_a_person_closed_is_not_noted_resolved_or_reopened(
    standin, service, clock, state, fields
):
    service.handle(anomaly())
    assert service.pump() == 1
    (opened,) = standin.incidents()
    person_sets(standin, opened, **fields)
    before = standin.incidents()[0]
    # The episode goes on: an update, then the recovery, in the agent's queue.
    clock.advance(3600)
    service.handle(anomaly("update", seq=1, ts=clock.time()))
    service.handle(anomaly("recovered", seq=2, value=40.0, ts=clock.time() + 60))
    assert service.pump() == 2
    (after,) = standin.incidents()
    assert after["state"] == state and after["active"] == before["active"]
    assert after["sys_mod_count"] == before["sys_mod_count"]  # not touched at all
    assert agent_entries(after) == agent_entries(before)  # no work note from the agent
    assert [m for m, _, _ in standin.request_log].count("PATCH") == 1  # the person's
    assert service.outbox.counts()["pending"] == 0


def test_a_later_breach_after_a_closure_opens_a_new_incident(standin, service, clock):
    service.handle(anomaly())
    service.pump()
    (first,) = standin.incidents()
    person_sets(standin, first, state="7", close_code="Closed", close_notes="handled")
    service.handle(anomaly("recovered", seq=1, value=40.0, ts=clock.time() + 60))
    service.pump()
    # The next episode of the same metric: a new incident, the closed one untouched.
    later = "pi-test:humidity:upper:1790007200"
    service.handle(anomaly("breach", 0, later, ts=1_790_007_300.0))
    service.handle(anomaly("recovered", 1, later, value=40.0, ts=1_790_007_900.0))
    assert service.pump() == 2
    closed, second = standin.incidents()
    assert closed["sys_id"] == first["sys_id"] and closed["state"] == "7"
    assert second["state"] == "6" and second["correlation_id"].endswith(later)


def test_the_local_cache_is_not_trusted_over_servicenow(standin, service, clock, caplog):
    # The outbox remembers the incident as open (state 1); a person closed it since.
    service.handle(anomaly())
    service.pump()
    assert service.outbox.incident("edge-agent:" + EPISODE).state == "1"
    person_sets(standin, standin.incidents()[0], state="7")
    service.handle(anomaly("recovered", seq=1, value=40.0, ts=clock.time() + 60))
    service.pump()
    assert standin.incidents()[0]["state"] == "7"
    assert service.outbox.incident("edge-agent:" + EPISODE).state == "7"  # learnt
    assert "is closed in ServiceNow; the resolve is not applied" in caplog.text


def test_a_deleted_incident_is_not_recreated_by_its_recovery(standin, service, clock, caplog):
    service.handle(anomaly())
    service.pump()
    (incident,) = standin.incidents()
    requests.delete(
        "{}/api/now/table/incident/{}".format(standin.url, incident["sys_id"]),
        auth=PERSON,
        timeout=5,
    )
    service.handle(anomaly("recovered", seq=1, value=40.0, ts=clock.time() + 60))
    assert service.pump() == 1
    assert standin.incidents() == []
    assert "no longer exists in ServiceNow" in caplog.text
