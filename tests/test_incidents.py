"""Incident decisions: pure logic, no server."""

from __future__ import annotations

import pytest
from helpers import anomaly

from agent.config import AnomalySettings
from agent.servicenow.incidents import action_for, correlation_id

SETTINGS = AnomalySettings.from_mapping({"snowUrl": "https://dev1.service-now.com"})


@pytest.mark.parametrize(
    "peak, urgency",
    [
        (50.5, "3"),
        (52.4, "3"),
        (52.49, "3"),
        (52.5, "2"),
        (59.9, "2"),
        (59.95, "2"),
        (60.0, "1"),
        (80.0, "1"),
    ],
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


# -- what the incident says (killed mutants: see ./dev mutate) -----------------------------


def test_a_long_short_description_is_cut_to_servicenows_160_characters():
    device = "cold-room-" + "x" * 150
    action = action_for(anomaly(episode=device + ":humidity:upper:1790000000"), SETTINGS)
    short = action.fields["short_description"]
    assert len(short) == 160
    assert short.startswith("Humidity above limit on cold-room-xxx")
    # The whole name is still in the description.
    assert "device {} detected".format(device) in action.fields["description"]


def test_a_short_description_that_fits_is_kept_whole():
    short = action_for(anomaly(value=63.0), SETTINGS).fields["short_description"]
    assert short == "Humidity above limit on pi-test: 63 %RH (limit 50 %RH)"


def test_the_description_tells_the_episode():
    description = action_for(anomaly(value=63.0, peak=64.5), SETTINGS).fields["description"]
    assert description.splitlines() == [
        "The edge agent on device pi-test detected a humidity breach.",
        "Metric: humidity",
        "Limit: 50 %RH (upper limit)",
        "Reading: 63 %RH",
        "Peak so far: 64.5 %RH, 14.50 %RH above the limit",
        "Episode started: 2026-09-21 14:13:20 UTC",
        "Device: pi-test",
        "Episode: pi-test:humidity:upper:1790000000",
    ]


def test_an_update_and_a_recovery_say_what_happened_and_for_how_long():
    update = action_for(anomaly("update", seq=1, value=61.0, peak=64.0), SETTINGS)
    assert update.kind == "note" and update.open_fields is not None
    assert update.fields == {
        "work_notes": "Still breaching at 2026-09-21 14:15:00 UTC: humidity is 61 %RH"
        " (limit 50, peak 64)."
    }
    recovered = action_for(anomaly("recovered", seq=2, value=45.0, ts=1_790_000_450.0), SETTINGS)
    assert recovered.fields["work_notes"] == (
        "Back within limit at 2026-09-21 14:20:50 UTC: humidity is 45 %RH (limit 50);"
        " peak 64 %RH; lasted 7.5 min."
    )


def test_a_site_that_closes_by_hand_gets_a_note_on_recovery():
    settings = AnomalySettings.from_mapping(
        {"snowUrl": "https://x.service-now.com", "recoveryAction": "note"}
    )
    action = action_for(anomaly("recovered", seq=2), settings)
    assert action.kind == "note" and set(action.fields) == {"work_notes"}
    assert action.fields["work_notes"].startswith("Back within limit")


def test_the_excess_of_a_peak_inside_the_limit_is_zero():
    from agent.servicenow.incidents import excess

    assert excess(anomaly(peak=45.0)) == 0.0
    assert excess(anomaly(peak=50.5)) == 0.5
    assert excess(dict(anomaly(peak=12.0, limit=10.0), bound="lower")) == 0.0
    assert excess(dict(anomaly(peak=7.5, limit=10.0), bound="lower")) == 2.5


def test_a_limit_of_zero_still_gives_an_urgency():
    event = anomaly(metric="temperature", limit=0.0, value=0.25, peak=0.25)
    # The excess is measured against 1 unit when the limit is 0: 25 % → urgency 1.
    assert action_for(event, SETTINGS).fields["urgency"] == "1"
    event = anomaly(metric="temperature", limit=0.0, value=0.01, peak=0.01)
    assert action_for(event, SETTINGS).fields["urgency"] == "3"


def test_the_default_impact_per_metric():
    fields = [
        action_for(anomaly(metric=m, limit=10.0, value=11.0, peak=11.0), SETTINGS).fields
        for m in ("temperature", "humidity", "pressure")
    ]
    assert [f["impact"] for f in fields] == ["2", "3", "3"]
    assert all(f["correlation_display"] == "edge-agent" for f in fields)
    assert all(f["category"] == SETTINGS.category for f in fields)


def test_an_action_is_a_value_that_cannot_be_changed():
    import dataclasses

    action = action_for(anomaly(), SETTINGS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        action.kind = "resolve"
