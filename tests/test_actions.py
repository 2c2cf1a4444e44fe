"""One action against the ServiceNow stand-in when an earlier request's fate is unknown:
a resolve or a note that landed without its answer, a note sent again when someone else
updated the incident, and actions whose incident is missing."""

from __future__ import annotations

import random

import pytest
import requests
from conftest import SNOW_USER, secret_json
from helpers import anomaly

from agent.config import AnomalySettings
from agent.credentials import CredentialsProvider
from agent.servicenow.client import TableClient
from agent.servicenow.delivery import Deliverer
from agent.servicenow.incidents import Action, action_for
from agent.servicenow.outbox import Outbox

SETTINGS = AnomalySettings.from_mapping({"snowUrl": "https://x.service-now.com"})
PERSON = ("jane.engineer", "jane-password")


@pytest.fixture
def person(snow, password):
    """An engineer who may change incidents in the UI, besides the integration user."""
    snow.set_users({SNOW_USER: password, PERSON[0]: PERSON[1]})
    return PERSON


@pytest.fixture
def deliverer(snow, password, clock, tmp_path):
    outbox = Outbox(str(tmp_path / "outbox.db"))
    credentials = CredentialsProvider(lambda _id: secret_json(password), "snow-creds", clock=clock)
    client = TableClient(snow.url, credentials.get, timeout=2.0, clock=clock)
    deliverer = Deliverer(outbox, client, credentials, clock=clock, rng=random.Random(1))
    deliverer.seen = []
    deliverer.on_outcome.append(lambda o: deliverer.seen.append((o.kind, o.detail)))
    yield deliverer
    outbox.close()


def queue(deliverer, clock, kind="breach", seq=0, **extra):
    action = action_for(anomaly(kind, seq, **extra), SETTINGS)
    assert deliverer.outbox.enqueue(action, clock.time())
    return action


def journal(snow, prefix):
    (incident,) = snow.incidents()
    return [e for e in incident["_journal"] if e["value"].startswith(prefix)]


def retry(deliverer, clock):
    clock.advance_to(deliverer.next_attempt_at())
    return deliverer.pump()


def test_a_resolve_that_landed_without_its_answer_counts_as_resolved(deliverer, snow, clock):
    queue(deliverer, clock)
    deliverer.pump()
    snow.faults.fail_after_commit_next(1)  # applied, the answer lost
    queue(deliverer, clock, "recovered", 1, value=40.0)
    assert deliverer.pump() == 0
    assert retry(deliverer, clock) == 1
    assert deliverer.seen[-1] == ("resolved", "an earlier resolve had landed")
    assert deliverer.stats.resolved == 1 and deliverer.stats.skipped == 0
    assert [m for m, _, _ in snow.request_log].count("PATCH") == 1


def test_a_resolve_of_an_incident_already_resolved_by_a_person_is_skipped(
    deliverer, snow, person, clock, caplog
):
    queue(deliverer, clock)
    deliverer.pump()
    (incident,) = snow.incidents()
    person_sets(snow, incident, state="6", close_code="Solved (Permanently)", close_notes="ok")
    queue(deliverer, clock, "recovered", 1, value=40.0)
    assert deliverer.pump() == 1
    assert deliverer.seen[-1] == ("skipped", "already resolved in ServiceNow")
    assert deliverer.stats.resolved == 0 and deliverer.stats.skipped == 1
    assert "is already resolved" in caplog.text


def test_a_note_that_landed_without_its_answer_is_not_sent_again(deliverer, snow, clock):
    queue(deliverer, clock)
    deliverer.pump()
    snow.faults.fail_after_commit_next(1)
    queue(deliverer, clock, "update", 1)
    assert deliverer.pump() == 0
    assert retry(deliverer, clock) == 1
    assert deliverer.seen[-1] == ("noted", "an earlier note had landed")
    assert deliverer.stats.noted == 1
    assert len(journal(snow, "Still breaching")) == 1


def test_a_note_is_sent_again_when_someone_else_updated_the_incident_meanwhile(
    deliverer, snow, person, clock
):
    queue(deliverer, clock)
    deliverer.pump()
    snow.faults.fail_after_commit_next(1)
    queue(deliverer, clock, "update", 1)
    deliverer.pump()
    (incident,) = snow.incidents()
    person_sets(snow, incident, comments="looking at it")
    assert retry(deliverer, clock) == 1
    # Whose update moved the count cannot be told apart: one extra copy rather than none.
    assert len(journal(snow, "Still breaching")) == 2


def test_a_note_without_an_incident_or_its_breach_is_dropped(deliverer, snow, clock):
    corr = "edge-agent:pi-test:humidity:upper:1"
    note = Action("note", corr + "#1:update", corr, {"work_notes": "x"})
    deliverer.outbox.enqueue(note, clock.time())
    assert deliverer.pump() == 1
    assert deliverer.seen == [("skipped", "no incident with this correlation id")]
    assert deliverer.stats.skipped == 1 and snow.incidents() == []


def test_a_create_that_timed_out_is_looked_up_as_soon_as_its_window_has_passed(
    deliverer, snow, clock
):
    snow.faults.fail_after_commit_next(1)  # created, the answer lost
    queue(deliverer, clock)
    assert deliverer.pump() == 0
    assert retry(deliverer, clock) == 1  # exactly at the end of the window
    assert deliverer.seen[-1] == ("reused", "")
    assert len(snow.incidents()) == 1


def person_sets(snow, incident, **fields):
    """What an engineer does in the UI, through the Table API as themselves."""
    response = requests.patch(
        "{}/api/now/table/incident/{}".format(snow.url, incident["sys_id"]),
        json=fields,
        auth=PERSON,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 200, response.text


def test_an_incident_an_older_version_recorded_under_a_raw_correlation_id_is_reused(
    deliverer, snow, password, clock
):
    from agent.servicenow.outbox import Incident

    # An older version queued and delivered the breach of device "lab^pi" with the raw id
    # (edge-agent:lab^pi:...) and recorded the incident under it.
    raw = "edge-agent:lab^pi:humidity:upper:1790000000"
    response = requests.post(
        "{}/api/now/table/incident".format(snow.url),
        json={"short_description": "old", "correlation_id": raw},
        auth=(SNOW_USER, password),
        headers={"Accept": "application/json", "Content-Type": "application/json"},
        timeout=5,
    )
    created = response.json()["result"]
    outbox = deliverer.outbox
    outbox.enqueue(Action("open", raw + "#0:breach", raw, {"short_description": "old"}), 0.0)
    outbox.delivered(outbox.due(0.0)[0], 0.0, Incident(raw, created["sys_id"], "INC1", "1"))
    # Its recovery, queued by the older version too, resolves that incident: no new one.
    event = anomaly("recovered", 1, episode="lab^pi:humidity:upper:1790000000", value=40.0)
    resolve = action_for(event, SETTINGS)
    outbox.enqueue(Action("resolve", raw + "#1:recovered", raw, resolve.fields), clock.time())
    assert deliverer.pump() == 1
    (incident,) = snow.incidents()
    assert incident["sys_id"] == created["sys_id"] and incident["state"] == "6"
