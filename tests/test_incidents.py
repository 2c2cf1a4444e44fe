"""Incident decisions: pure logic, no server."""

from __future__ import annotations

import pytest
from helpers import anomaly

from agent.config import AnomalySettings
from agent.servicenow.incidents import action_for, correlation_id

SETTINGS = AnomalySettings.from_mapping({"snowUrl": "https://dev1.service-now.com"})


@pytest.mark.parametrize(
    "peak, urgency",
    [(50.5, "3"), (52.4, "3"), (52.5, "2"), (59.9, "2"), (60.0, "1"), (80.0, "1")],
)
def test_urgency_rises_with_the_excess_over_the_limit(peak, urgency):
    # Default bands 5 % and 20 % of a 50 %RH limit: 2.5 and 10 units over.
    action = action_for(anomaly(value=peak, peak=peak), SETTINGS)
    assert action.kind == "open"
    assert action.fields["urgency"] == urgency


def test_impact_is_per_metric_and_configurable():
    settings = AnomalySettings.from_mapping(
        {"snowUrl": "https://x.service-now.com", "tempImpact": "1"}
    )
    temp = action_for(anomaly(metric="temperature", limit=30.0, value=31.5, peak=31.5), settings)
    humid = action_for(anomaly(), settings)
    assert temp.fields["impact"] == "1" and humid.fields["impact"] == "3"


def test_lower_bound_excess_is_measured_downwards():
    event = anomaly(
        metric="temperature",
        limit=10.0,
        value=4.0,
        peak=3.0,
        bound="lower",
        title="Temperature below limit",
    )
    action = action_for(event, SETTINGS)
    assert "Temperature below limit on pi-test" in action.fields["short_description"]
    assert "7.00 °C below the limit" in action.fields["description"]
    assert action.fields["urgency"] == "1"


def test_recovery_resolves_with_close_code_and_notes():
    action = action_for(anomaly("recovered", seq=3, value=40.0), SETTINGS)
    assert action.kind == "resolve"
    assert action.fields["state"] == "6"
    assert action.fields["close_code"] and action.fields["close_notes"]


def test_every_event_of_an_episode_has_the_same_correlation_and_its_own_key():
    actions = [
        action_for(anomaly(kind, seq=i), SETTINGS)
        for i, kind in enumerate(["breach", "update", "recovered"])
    ]
    assert {a.correlation_id for a in actions} == {correlation_id(anomaly()["episode_id"])}
    assert len({a.key for a in actions}) == 3


def test_correlation_id_fits_servicenows_column():
    assert len(correlation_id("d" * 200)) == 100


def test_optional_fields_only_when_configured():
    bare = action_for(anomaly(), SETTINGS).fields
    assert "assignment_group" not in bare and "caller_id" not in bare
    settings = AnomalySettings.from_mapping(
        {"snowUrl": "https://x.service-now.com", "snowAssignmentGroup": "Facilities"}
    )
    assert action_for(anomaly(), settings).fields["assignment_group"] == "Facilities"
