"""Configuration errors name the variable and what was expected."""

from __future__ import annotations

import pytest

from agent.config import AnomalySettings, SensorSettings, markdown_table, parse_snow_url
from agent.errors import ConfigError

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


def test_the_readme_table_lists_every_variable_with_its_default():
    table = markdown_table()
    assert "| `humidLimit` | sensor | `50` |" in table
    assert "| `snowUrl` | anomaly | (unset) |" in table
    with open("README.md", encoding="utf-8") as handle:
        readme = handle.read()
    # The README carries the generated table verbatim, so it cannot drift.
    assert table in readme


def test_plain_http_is_accepted_only_on_loopback():
    assert parse_snow_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert parse_snow_url("http://localhost:8080/api/now/table/incident") == "http://localhost:8080"
