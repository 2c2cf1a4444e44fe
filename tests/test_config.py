"""Configuration errors name the variable and what was expected."""

from __future__ import annotations

import pytest

from agent.config import (
    DEFAULT_STATE_DIR,
    LIMIT_PREFIXES,
    VARIABLES,
    AnomalySettings,
    SensorSettings,
    check_assignments,
    check_environment,
    check_group,
    markdown_table,
    parse_snow_url,
)
from agent.errors import ConfigError
from agent.schema import METRIC_RANGES

BASE = {"snowUrl": "https://dev1.service-now.com"}


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("tempLimit", "hot", "tempLimit must be a finite number"),
        ("humidLimit", "nan", "humidLimit must be a finite number"),
        ("period", "0", "period must be a positive"),
        ("debounceSamples", "2.5", "debounceSamples must be a whole number"),
        ("debounceSamples", "0", "debounceSamples must be 1 or more"),
        ("tempHysteresis", "-1", "tempHysteresis must not be negative"),
        ("readingsTopic", "a/+/b", "readingsTopic must be a topic name without wildcards"),
        ("tempCompensationFactor", "0", "tempCompensationFactor must be positive"),
    ],
)
def test_sensor_errors_name_the_variable(variable, value, expected):
    with pytest.raises(ConfigError, match=expected):
        SensorSettings.from_mapping({variable: value})


def test_low_limit_must_sit_below_the_upper_limit():
    with pytest.raises(ConfigError, match="tempLowLimit"):
        SensorSettings.from_mapping({"tempLimit": "20", "tempLowLimit": "19"})


def test_blog_configuration_is_accepted():
    settings = SensorSettings.from_mapping({"tempLimit": "30", "humidLimit": "50"})
    limits = {lim.metric: lim.upper for lim in settings.limits}
    assert limits == {"temperature": 30.0, "humidity": 50.0}
    assert settings.readings_topic == "IoTBlog/sensorData"
    assert settings.anomaly_topic == "IoTBlog/anomaly"


def test_pressure_is_watched_only_when_configured():
    settings = SensorSettings.from_mapping({"pressureLowLimit": "950"})
    assert [lim.metric for lim in settings.limits] == ["temperature", "humidity", "pressure"]


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("snowUrl", "dev1.service-now.com", "snowUrl must be an http"),
        ("snowUrl", "http://dev1.service-now.com", "snowUrl must be https://"),
        ("snowTimeout", "0", "snowTimeout must be a positive"),
        ("tempImpact", "4", "tempImpact must be 1, 2 or 3"),
        ("urgencyBands", "5", "urgencyBands must be two percentages"),
        ("urgencyBands", "20,5", "urgencyBands must be ascending"),
        ("recoveryAction", "close", "recoveryAction must be one of resolve, note"),
        ("snowVerifyTls", "maybe", "snowVerifyTls must be true, false or the path"),
        ("retryBaseSeconds", "0", "retryBaseSeconds must be positive"),
    ],
)
def test_anomaly_errors_name_the_variable(variable, value, expected):
    with pytest.raises(ConfigError, match=expected):
        AnomalySettings.from_mapping({**BASE, variable: value})


def test_snow_url_is_required():
    with pytest.raises(ConfigError, match="snowUrl is required"):
        AnomalySettings.from_mapping({})


def test_config_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        SensorSettings.from_mapping({"period": "soon"})


@pytest.mark.parametrize(
    "given",
    [
        "https://dev1.service-now.com",
        "https://dev1.service-now.com/",
        "https://dev1.service-now.com/api/now/table/incident",
        "https://dev1.service-now.com/api/now/v2/table/incident/",
    ],
)
def test_snow_url_accepts_the_blogs_full_table_url(given):
    assert parse_snow_url(given) == "https://dev1.service-now.com"


def test_verify_tls_accepts_a_ca_bundle_path(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    settings = AnomalySettings.from_mapping({**BASE, "snowVerifyTls": str(bundle)})
    assert settings.verify_tls == str(bundle)
    assert AnomalySettings.from_mapping({**BASE, "snowVerifyTls": "false"}).verify_tls is False


def test_device_id_falls_back_to_the_thing_name():
    settings = SensorSettings.from_mapping({"AWS_IOT_THING_NAME": "pi-kitchen"})
    assert settings.device_id == "pi-kitchen"


def test_the_docs_table_lists_every_variable_with_its_default():
    table = markdown_table()
    assert "| `humidLimit` | sensor | `50` |" in table
    assert "| `snowUrl` | anomaly | (unset) |" in table
    with open("docs/configuration.md", encoding="utf-8") as handle:
        readme = handle.read()
    # docs/configuration.md carries the generated table verbatim, so it cannot drift.
    assert table in readme


def test_plain_http_is_accepted_only_on_loopback():
    assert parse_snow_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert parse_snow_url("http://localhost:8080/api/now/table/incident") == "http://localhost:8080"


# --- one validation for both functions ---------------------------------------------------

# Values that trip every kind of check: sign, zero, range, type, emptiness, non-finite.
AWKWARD_VALUES = ["-5", "0", "0.5", "3", "55", "101", "1500", "1e309", "nan", "abc", "", "a/+/b"]


@pytest.mark.parametrize("variable", [v.name for v in VARIABLES if v.name != "snowUrl"])
def test_whatever_one_function_accepts_the_other_accepts(variable):
    def accepted(settings_class) -> bool:
        try:
            settings_class.from_mapping({**BASE, variable: value})
        except ConfigError:
            return False
        return True

    for value in AWKWARD_VALUES:
        assert accepted(SensorSettings) == accepted(AnomalySettings), (variable, value)


@pytest.mark.parametrize(
    "variable, value, metric",
    [
        ("humidLimit", "-5", "humidity"),
        ("humidLimit", "100.5", "humidity"),
        ("humidLowLimit", "-1", "humidity"),
        ("tempLimit", "200", "temperature"),
        ("pressureLowLimit", "50", "pressure"),
    ],
)
def test_a_limit_outside_what_the_metric_can_be_is_refused_by_both_functions(
    variable, value, metric
):
    low, high = METRIC_RANGES[metric]
    expected = "{} must be between {:g} and {:g}".format(variable, low, high)
    with pytest.raises(ConfigError, match=expected):
        SensorSettings.from_mapping({variable: value})
    with pytest.raises(ConfigError, match=expected):
        AnomalySettings.from_mapping({**BASE, variable: value})


@pytest.mark.parametrize("metric, prefix", LIMIT_PREFIXES)
def test_every_limit_the_sensor_accepts_makes_events_the_anomaly_function_accepts(metric, prefix):
    # One table: a limit at either end of the accepted range is a valid event limit.
    from agent.schema import validate_anomaly
    from tests.helpers import anomaly

    low, high = METRIC_RANGES[metric]
    for limit in (low, high):
        settings = SensorSettings.from_mapping(
            {prefix + "Limit": repr(limit), prefix + "Hysteresis": "0"}
        )
        (configured,) = [lim for lim in settings.limits if lim.metric == metric]
        event = anomaly(metric=metric, limit=configured.upper, value=high, peak=high)
        assert validate_anomaly(event)["limit"] == limit


def test_the_chip_reports_only_what_messages_may_carry():
    from agent.sensors.sensehat import RANGES

    for metric, (low, high) in RANGES.items():
        assert METRIC_RANGES[metric][0] <= low and high <= METRIC_RANGES[metric][1]


@pytest.mark.parametrize(
    "assignments, expected",
    [
        (
            {"humidLimt": "55"},
            "unknown variable 'humidLimt' in --set humidLimt=55; did you mean humidLimit?",
        ),
        ({"humidlimit": "55"}, "did you mean humidLimit?"),
        ({"humidLimit": ""}, "--set humidLimit= has no value"),
        ({"humidLimit": "  "}, "--set humidLimit= has no value"),
        ({"": "55"}, "--set =55 has no variable name"),
        ({"wetness": "55"}, "unknown variable 'wetness'"),
    ],
)
def test_command_line_assignments_name_variables_and_give_values(assignments, expected):
    with pytest.raises(ConfigError) as info:
        check_assignments(assignments)
    assert expected in str(info.value)


def test_a_deployment_environment_may_hold_other_variables_but_not_misspelt_ones():
    check_environment({"TZ": "UTC", "HOME": "/tmp", "EDGE_AGENT_SENSOR": "sensehat"})
    with pytest.raises(
        ConfigError, match="function sensor: unknown variable 'PERIOD'; did you mean period"
    ):
        check_environment({"PERIOD": "5"}, "function sensor")
    with pytest.raises(ConfigError, match="function anomaly: humidLimit must be between"):
        check_environment({"humidLimit": "-5"}, "function anomaly")


def test_the_default_topology_passes_the_check():
    from agent.topology import default_topology

    check_group(default_topology())


def test_one_default_state_dir_everywhere():
    import subprocess
    import sys

    assert markdown_table().count(f"| `stateDir` | both | `{DEFAULT_STATE_DIR}` |") == 1
    result = subprocess.run(
        [sys.executable, "-m", "devtools.cli", "outbox", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert f"(default:{DEFAULT_STATE_DIR})" in "".join(
        result.stdout.split()
    )  # argparse wraps at "-"
    assert SensorSettings.from_mapping({}).state_dir == DEFAULT_STATE_DIR
    assert AnomalySettings.from_mapping(BASE).state_dir == DEFAULT_STATE_DIR
