"""Deciding run-time changes: precedence of the layers, the one validator, what is reported."""

from __future__ import annotations

import json

import pytest

from agent.errors import ConfigError
from agent.live_settings import CONFIGURATION, SHADOW, LiveSettings, parse_value

BASE = {"deviceId": "pi", "stateDir": "/tmp/x", "humidLimit": "50", "humidLowLimit": "20"}


def live(**configuration):
    return LiveSettings(BASE, configuration)


def humidity(settings):
    return next(lim for lim in settings.limits if lim.metric == "humidity")


def test_shadow_beats_configuration_beats_environment_beats_default():
    settings = live(humidLimit="55")
    assert humidity(settings.settings).upper == 55.0  # configuration over the environment
    decision = settings.propose(SHADOW, {"humidLimit": 60})
    assert humidity(decision.settings).upper == 60.0
    # A later deployment does not override the shadow...
    settings.propose(CONFIGURATION, {"humidLimit": "58"}, replace=True)
    assert humidity(settings.settings).upper == 60.0
    # ...until the shadow's override goes: then the deployment's value is in force.
    decision = settings.propose(SHADOW, {"humidLimit": None})
    assert humidity(decision.settings).upper == 58.0
    assert decision.applied[0].describe() == "humidLimit override removed (now 58)"
    # A variable nobody set has its documented default.
    assert settings.in_force("tempLimit") == "30"


def test_an_invalid_value_is_rejected_with_the_validators_reason_and_the_old_one_stays():
    settings = live()
    decision = settings.propose(SHADOW, {"humidLimit": -5, "debounceSamples": 4})
    assert [c.name for c in decision.applied] == ["debounceSamples"]
    [rejected] = decision.rejected
    assert rejected.reason.startswith("humidLimit must be between 0 and 100 %RH")
    assert (rejected.old, rejected.new) == ("50", "50")
    assert humidity(settings.settings).upper == 50.0 and settings.settings.debounce_samples == 4
    assert settings.rejections() == {
        "humidLimit": {"value": -5, "reason": rejected.reason, "source": "shadow"}
    }


def test_values_that_only_pass_together_are_applied_together():
    settings = live()
    # Alone, a limit of 15 is below the low limit of 20; with the low limit at 5 it is fine.
    decision = settings.propose(SHADOW, {"humidLimit": 15, "humidLowLimit": 5})
    assert sorted(c.name for c in decision.applied) == ["humidLimit", "humidLowLimit"]
    assert not decision.rejected


def test_a_value_that_breaks_another_layers_value_is_rejected_naming_both():
    decision = live().propose(SHADOW, {"humidLimit": 15})
    [rejected] = decision.rejected
    assert "humidLowLimit (20.0) must be below humidLimit (15.0)" in rejected.reason


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("humidLimt", 55, "unknown variable 'humidLimt'; did you mean humidLimit?"),
        ("readingsTopic", "x/y", "readingsTopic cannot change while the function runs"),
        ("humidLimit", "wet", "humidLimit must be a finite number, got 'wet'"),
        ("humidLimit", True, "humidLimit must be a number, got true"),
        ("humidLimit", {"value": 5}, "humidLimit must be a number"),
        ("debounceSamples", 2.5, "debounceSamples must be a whole number"),
        ("period", 0, "period must be a positive number of seconds"),
        ("humidLimit", " ", "humidLimit must be a number, got ' '"),
    ],
)
def test_what_the_shadow_cannot_change_is_rejected_with_a_reason(name, value, reason):
    settings = live()
    decision = settings.propose(SHADOW, {name: value})
    assert not decision.applied and decision.settings is None
    assert reason in decision.rejected[0].reason


def test_a_rejected_value_echoed_by_the_next_delta_is_not_decided_again():
    settings = live()
    assert settings.propose(SHADOW, {"humidLimit": -5}).rejected
    again = settings.propose(SHADOW, {"humidLimit": -5})
    assert not again.changes_report  # no new report: no endless delta/report loop
    # A new value is a new request.
    assert settings.propose(SHADOW, {"humidLimit": -6}).rejected


def test_a_whole_desired_without_the_refused_name_clears_its_rejection():
    settings = live()
    settings.propose(SHADOW, {"humidLimit": -5, "tempLimit": 28})
    decision = settings.propose(SHADOW, {"tempLimit": 28}, replace=True)
    assert decision.cleared == ["humidLimit"] and decision.changes_report
    assert settings.rejections() == {}


def test_a_whole_desired_removes_overrides_it_no_longer_has():
    settings = live()
    settings.propose(SHADOW, {"humidLimit": 60, "tempLimit": 28})
    decision = settings.propose(SHADOW, {"tempLimit": 28}, replace=True)
    assert [c.name for c in decision.applied] == ["humidLimit"]
    assert humidity(settings.settings).upper == 50.0


def test_reported_echoes_shadow_values_and_gives_the_others_in_force():
    settings = live()
    settings.propose(SHADOW, {"humidLimit": 55.5, "period": "10"})
    reported = settings.reported()
    assert reported["humidLimit"] == 55.5 and reported["period"] == "10"  # as asked
    assert reported["tempLimit"] == 30 and reported["humidHysteresis"] == 1
    assert reported["pressureLimit"] is None  # unset
    assert reported["debounceSamples"] == 3


def test_the_configuration_layer_ignores_variables_that_cannot_change_at_run_time():
    settings = live()
    decision = settings.propose(
        CONFIGURATION,
        {"readingsTopic": "x", "accessControl": {"a": 1}, "humidLimit": 56},
        replace=True,
    )
    assert [c.name for c in decision.applied] == ["humidLimit"] and not decision.rejected
    assert humidity(settings.settings).upper == 56.0


def test_an_invalid_start_configuration_stops_the_function_as_an_environment_would():
    with pytest.raises(ConfigError, match="humidLimit must be between"):
        live(humidLimit="500")


def test_no_change_decides_nothing():
    settings = live()
    settings.propose(SHADOW, {"humidLimit": 55})
    assert not settings.propose(SHADOW, {"humidLimit": 55}).changes_report
    assert not settings.propose(SHADOW, {"pressureLimit": None}).changes_report


@pytest.mark.parametrize(
    "text, value",
    [("55", 55), ("55.5", 55.5), ("null", None), ("wet", "wet"), ("true", True), ("[1]", "[1]")],
)
def test_command_line_values_become_shadow_values(text, value):
    assert parse_value(text) == value


def test_a_blank_configuration_value_is_an_unset_limit():
    """The recipe's default for a limit that is off is "": the default, whatever else says."""
    settings = live(humidLowLimit="10")
    settings.propose(CONFIGURATION, {"humidLowLimit": ""}, replace=True)
    assert humidity(settings.settings).lower is None
    assert settings.reported()["humidLowLimit"] is None


def test_a_start_configuration_keeps_to_the_run_time_variables_and_null_is_unset():
    settings = live(readingsTopic="elsewhere", humidLowLimit=None, tempLimit=28)
    assert settings.settings.readings_topic == "IoTBlog/sensorData"  # the deployment's, at start
    assert humidity(settings.settings).lower == 20.0  # null: the environment's value stays
    assert settings.reported()["tempLimit"] == 28


def test_reported_gives_the_environments_values_where_no_layer_above_has_one():
    settings = LiveSettings(dict(BASE, humidLimit="45", tempHysteresis="0.5", period="5"))
    reported = settings.reported()
    assert reported["humidLimit"] == 45 and reported["tempHysteresis"] == 0.5
    assert json.dumps(reported["period"]) == "5"  # whole numbers without ".0"
    [rejected] = settings.propose(SHADOW, {"humidLimit": "soggy"}).rejected
    assert (
        rejected.describe() == "humidLimit=soggy: humidLimit must be a finite number, got 'soggy'"
    )
    assert rejected.old == "45"


def test_a_configuration_value_that_is_no_number_is_refused_as_it_came():
    settings = live()
    [rejected] = settings.propose(CONFIGURATION, {"humidLimit": True}, replace=True).rejected
    assert settings.rejections()["humidLimit"] == {
        "value": True,
        "reason": "humidLimit must be a number, got true",
        "source": "configuration",
    }
    assert humidity(settings.settings).upper == 50.0


def test_a_valid_value_clears_its_own_rejection_but_not_the_deployments():
    settings = live()
    settings.propose(CONFIGURATION, {"debounceSamples": "0"}, replace=True)
    settings.propose(SHADOW, {"humidLimit": -5})
    assert set(settings.rejections()) == {"debounceSamples", "humidLimit"}
    settings.propose(SHADOW, {"humidLimit": 55, "debounceSamples": 2})
    assert settings.rejections() == {
        "debounceSamples": {
            "value": "0",
            "reason": "debounceSamples must be 1 or more, got 0",
            "source": "configuration",
        }
    }
    assert settings.settings.debounce_samples == 2  # the shadow's, above the deployment


def test_a_value_that_passes_once_another_is_in_is_applied_and_only_the_bad_one_refused():
    settings = live()
    # humidLimit 15 passes only with humidLowLimit 5 in (sorted, it is tried first, alone);
    # tempLimit -100 never does.
    decision = settings.propose(SHADOW, {"humidLimit": 15, "humidLowLimit": 5, "tempLimit": -100})
    assert sorted(c.name for c in decision.applied) == ["humidLimit", "humidLowLimit"]
    assert [c.name for c in decision.rejected] == ["tempLimit"]
    assert set(settings.rejections()) == {"tempLimit"}
    assert humidity(settings.settings).upper == 15.0


def test_removing_an_override_is_checked_as_removed():
    settings = live()
    settings.propose(SHADOW, {"humidLowLimit": 40, "humidLimit": 60})
    # Without the override the environment's low limit of 20 is below 30: together they pass.
    decision = settings.propose(SHADOW, {"humidLowLimit": None, "humidLimit": 30})
    assert not decision.rejected
    assert (humidity(settings.settings).lower, humidity(settings.settings).upper) == (20.0, 30.0)


def test_each_update_keeps_the_overrides_of_the_updates_before():
    settings = live()
    settings.propose(SHADOW, {"humidLimit": 60})
    settings.propose(SHADOW, {"tempLimit": 25})
    settings.propose(SHADOW, {"period": "bad"})  # a refused one changes nothing either
    assert settings.reported()["humidLimit"] == 60 and settings.reported()["tempLimit"] == 25
    assert humidity(settings.settings).upper == 60.0
    assert settings.snapshot() == {"shadow": {"humidLimit": 60, "tempLimit": 25}}


def test_a_whole_number_for_a_count_is_a_count():
    settings = live()
    decision = settings.propose(SHADOW, {"debounceSamples": 2.0})
    assert not decision.rejected and settings.settings.debounce_samples == 2


def test_a_refused_boolean_is_not_decided_again_and_the_number_after_it_is():
    settings = live()
    assert settings.propose(SHADOW, {"debounceSamples": True}).rejected
    assert not settings.propose(SHADOW, {"debounceSamples": True}).changes_report
    decision = settings.propose(SHADOW, {"debounceSamples": 1})
    assert [c.name for c in decision.applied] == ["debounceSamples"]
    assert settings.settings.debounce_samples == 1
