"""Configuration: every variable the functions read, its type, default and meaning.

Greengrass V1 passes configuration as the function's environment variables
(``Environment.Variables`` in the function definition); the names of the
source blog (``tempLimit``, ``humidLimit``, ``snowUrl``) keep working. Explicit
arguments beat the environment: ``SensorSettings.from_mapping(...)`` takes any
mapping, ``from_environment()`` is the convenience on top.

A bad value raises :class:`agent.errors.ConfigError` naming the variable and
what was expected. ``VARIABLES`` is the single list the README's table is
generated from (``edge-agent config-table``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import ConfigError
from .topology import DEFAULT_ANOMALY_TOPIC, DEFAULT_READINGS_TOPIC, DEFAULT_SECRET_NAME


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str  # "float", "int", "str", "bool", "url", "choice"
    default: Optional[str]
    function: str  # "sensor", "anomaly" or "both"
    help: str
    choices: Tuple[str, ...] = ()


VARIABLES: List[Variable] = [
    # --- sensor function -------------------------------------------------
    Variable("tempLimit", "float", "30", "sensor", "Upper temperature limit, °C."),
    Variable(
        "tempLowLimit", "float", None, "sensor", "Lower temperature limit, °C (off if unset)."
    ),
    Variable(
        "tempHysteresis",
        "float",
        "1.0",
        "sensor",
        "Half-width of the temperature band, °C: breach above limit+h, recover below limit-h.",
    ),
    Variable("humidLimit", "float", "50", "sensor", "Upper relative-humidity limit, %RH."),
    Variable("humidLowLimit", "float", None, "sensor", "Lower humidity limit, %RH (off if unset)."),
    Variable("humidHysteresis", "float", "1.0", "sensor", "Half-width of the humidity band, %RH."),
    Variable("pressureLimit", "float", None, "sensor", "Upper pressure limit, hPa (off if unset)."),
    Variable(
        "pressureLowLimit", "float", None, "sensor", "Lower pressure limit, hPa (off if unset)."
    ),
    Variable(
        "pressureHysteresis", "float", "1.0", "sensor", "Half-width of the pressure band, hPa."
    ),
    Variable(
        "debounceSamples",
        "int",
        "3",
        "sensor",
        "Consecutive samples a breach (and a recovery) must persist before it counts.",
    ),
    Variable(
        "debounceSeconds",
        "float",
        "0",
        "sensor",
        "Seconds a breach (and a recovery) must also persist; 0 means samples only.",
    ),
    Variable(
        "renotifyMinutes",
        "float",
        "30",
        "sensor",
        "While an episode lasts, at most one update per this many minutes.",
    ),
    Variable("period", "float", "5", "sensor", "Seconds between readings."),
    Variable("readingsTopic", "str", DEFAULT_READINGS_TOPIC, "sensor", "Topic for every reading."),
    Variable(
        "anomalyTopic",
        "str",
        DEFAULT_ANOMALY_TOPIC,
        "both",
        "Topic for episode events (breach, update, recovered).",
    ),
    Variable(
        "tempCompensationFactor",
        "float",
        None,
        "sensor",
        "CPU-heat compensation factor (1.5 to 2.25 typical); off if unset.",
    ),
    Variable(
        "deviceId",
        "str",
        None,
        "both",
        "Device name in messages and incidents; default AWS_IOT_THING_NAME, else the host name.",
    ),
    Variable(
        "stateDir",
        "str",
        "/tmp/edge-agent",
        "both",
        "Where episode state and the outbox live; must survive a function restart.",
    ),
    # --- anomaly function ------------------------------------------------
    Variable(
        "snowUrl",
        "url",
        None,
        "anomaly",
        "ServiceNow instance URL, or the blog's full .../api/now/table/incident URL.",
    ),
    Variable(
        "snowSecretId",
        "str",
        DEFAULT_SECRET_NAME,
        "anomaly",
        "Secrets Manager name (or ARN) of the ServiceNow credentials.",
    ),
    Variable(
        "snowTimeout", "float", "10", "anomaly", "Seconds before a ServiceNow call times out."
    ),
    Variable(
        "snowVerifyTls",
        "bool",
        "true",
        "anomaly",
        "Verify ServiceNow's TLS certificate; or a CA bundle path.",
    ),
    Variable("snowAssignmentGroup", "str", "", "anomaly", "assignment_group for new incidents."),
    Variable("snowCategory", "str", "hardware", "anomaly", "category for new incidents."),
    Variable("snowCallerId", "str", "", "anomaly", "caller_id for new incidents."),
    Variable("tempImpact", "int", "2", "anomaly", "Incident impact (1-3) for temperature."),
    Variable("humidImpact", "int", "3", "anomaly", "Incident impact (1-3) for humidity."),
    Variable("pressureImpact", "int", "3", "anomaly", "Incident impact (1-3) for pressure."),
    Variable(
        "urgencyBands",
        "str",
        "5,20",
        "anomaly",
        "Excess over the limit, in % of the limit, at which urgency rises to 2 and to 1.",
    ),
    Variable(
        "recoveryAction",
        "choice",
        "resolve",
        "anomaly",
        "On recovery: resolve the incident (state 6) or only add a work note.",
        choices=("resolve", "note"),
    ),
    Variable(
        "closeCode",
        "str",
        "Solution provided",
        "anomaly",
        "close_code used when resolving (choices differ between releases).",
    ),
    Variable(
        "closeNotes",
        "str",
        "Readings returned to normal; resolved by the edge agent.",
        "anomaly",
        "close_notes used when resolving.",
    ),
    Variable(
        "updateMinutes",
        "float",
        "30",
        "anomaly",
        "At most one work-note update per incident per this many minutes.",
    ),
    Variable(
        "secretTtlSeconds", "float", "3600", "anomaly", "How long fetched credentials are cached."
    ),
    Variable("retryBaseSeconds", "float", "2", "anomaly", "First retry delay; doubles each try."),
    Variable(
        "retryMaxSeconds",
        "float",
        "300",
        "anomaly",
        "Longest retry delay (while ServiceNow is unreachable, at most 60 s: one probe every 30-60 s).",
    ),
    Variable(
        "snowMaxRequestsPerSecond",
        "float",
        "5",
        "anomaly",
        "At most this many ServiceNow requests start in any second (0: no cap).",
    ),
]

_BY_NAME: Dict[str, Variable] = {v.name: v for v in VARIABLES}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _parse(var: Variable, raw: str) -> Any:
    text = raw.strip()
    try:
        if var.kind == "float":
            value = float(text)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
        if var.kind == "int":
            return int(text)
    except ValueError:
        raise ConfigError(
            "{} must be a {} number, got {!r}".format(
                var.name, "whole" if var.kind == "int" else "finite", raw
            )
        )
    if var.kind == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var.name} must be true or false, got {raw!r}")
    if var.kind == "choice":
        if text not in var.choices:
            raise ConfigError(
                "{} must be one of {}, got {!r}".format(var.name, ", ".join(var.choices), raw)
            )
        return text
    if var.kind == "url":
        return parse_snow_url(text, var.name)
    return raw


def parse_snow_url(text: str, name: str = "snowUrl") -> str:
    """Return the instance base URL from either form the blog's users have.

    ``https://dev1.service-now.com`` and
    ``https://dev1.service-now.com/api/now/table/incident`` both give
    ``https://dev1.service-now.com``. A URL with credentials in it
    (``https://user:pw@...``) is refused, and the error does not repeat them.
    """
    from urllib.parse import urlsplit, urlunsplit  # deferred: only the anomaly function has a URL

    try:
        parts = urlsplit(text)
        parts.hostname  # noqa: B018 - parses the host; a bad IPv6 literal raises here
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL; give e.g. https://dev12345.service-now.com")
    if "@" in parts.netloc:
        # Never echo it: what is before the @ is a user name and likely a password.
        host = parts.netloc.rsplit("@", 1)[1] or "dev12345.service-now.com"
        raise ConfigError(
            f"{name} must not contain a user name or password (the part before '@'): give "
            f"the bare instance URL, e.g. https://{host}, and put the credentials in the "
            "secret that snowSecretId names"
        )
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(
            "{} must be https:// (credentials go with every call); plain http is only "
            "accepted for a local stand-in on localhost, got {!r}".format(name, text)
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{name} must be an http(s) URL such as https://dev12345.service-now.com, got {text!r}"
        )
    path = parts.path
    for suffix in ("/api/now/table/incident", "/api/now/v2/table/incident"):
        if path.rstrip("/").endswith(suffix):
            path = path.rstrip("/")[: -len(suffix)]
    return urlunsplit((parts.scheme, parts.netloc, path.rstrip("/"), "", ""))


class Values:
    """Typed access to configuration variables from one mapping."""

    def __init__(self, source: Mapping[str, str]) -> None:
        self._source = source

    def get(self, name: str) -> Any:
        var = _BY_NAME[name]
        raw = self._source.get(name)
        if raw is None or (raw.strip() == "" and var.kind not in ("str",)):
            raw = var.default
        if raw is None:
            return None
        return _parse(var, raw)

    def require(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise ConfigError(f"{name} is required: {_BY_NAME[name].help}")
        return value


def default_device_id(source: Mapping[str, str]) -> str:
    named = source.get("deviceId") or source.get("AWS_IOT_THING_NAME")
    if named:
        return named
    import socket  # deferred: a core always names the thing, and socket costs ~5 ms to import

    return socket.gethostname()


@dataclass(frozen=True)
class MetricLimits:
    """Limits for one metric; ``None`` means that side is not watched."""

    metric: str
    upper: Optional[float]
    lower: Optional[float]
    hysteresis: float

    @property
    def watched(self) -> bool:
        return self.upper is not None or self.lower is not None


@dataclass(frozen=True)
class SensorSettings:
    device_id: str
    limits: Tuple[MetricLimits, ...]
    debounce_samples: int
    debounce_seconds: float
    renotify_seconds: float
    period: float
    readings_topic: str
    anomaly_topic: str
    compensation_factor: Optional[float]
    state_dir: str

    @classmethod
    def from_mapping(cls, source: Mapping[str, str]) -> SensorSettings:
        v = Values(source)
        limits = tuple(
            _limits(v, metric, prefix)
            for metric, prefix in (
                ("temperature", "temp"),
                ("humidity", "humid"),
                ("pressure", "pressure"),
            )
        )
        period = v.get("period")
        if period <= 0:
            raise ConfigError(f"period must be a positive number of seconds, got {period}")
        debounce = v.get("debounceSamples")
        if debounce < 1:
            raise ConfigError(f"debounceSamples must be 1 or more, got {debounce}")
        factor = v.get("tempCompensationFactor")
        if factor is not None and factor <= 0:
            raise ConfigError(f"tempCompensationFactor must be positive, got {factor}")
        return cls(
            device_id=default_device_id(source),
            limits=tuple(lim for lim in limits if lim.watched),
            debounce_samples=debounce,
            debounce_seconds=_non_negative(v, "debounceSeconds"),
            renotify_seconds=_non_negative(v, "renotifyMinutes") * 60.0,
            period=period,
            readings_topic=_topic(v, "readingsTopic"),
            anomaly_topic=_topic(v, "anomalyTopic"),
            compensation_factor=factor,
            state_dir=v.get("stateDir"),
        )

    @classmethod
    def from_environment(cls) -> SensorSettings:
        return cls.from_mapping(os.environ)


@dataclass(frozen=True)
class AnomalySettings:
    device_id: str
    snow_url: str
    secret_id: str
    timeout: float
    verify_tls: Any  # True, False or a CA bundle path, as requests takes it
    assignment_group: str
    category: str
    caller_id: str
    impact: Mapping[str, int]
    urgency_bands: Tuple[float, float]
    recovery_action: str
    close_code: str
    close_notes: str
    update_seconds: float
    secret_ttl: float
    retry_base: float
    retry_max: float
    state_dir: str
    anomaly_topic: str
    max_requests_per_second: float = 5.0

    @classmethod
    def from_mapping(cls, source: Mapping[str, str]) -> AnomalySettings:
        v = Values(source)
        verify_raw = source.get("snowVerifyTls", "true")
        try:
            verify: Any = v.get("snowVerifyTls")
        except ConfigError:
            if not os.path.isfile(verify_raw):
                raise ConfigError(
                    f"snowVerifyTls must be true, false or the path of a CA bundle, got {verify_raw!r}"
                )
            verify = verify_raw
        impact = {
            "temperature": _one_to_three(v, "tempImpact"),
            "humidity": _one_to_three(v, "humidImpact"),
            "pressure": _one_to_three(v, "pressureImpact"),
        }
        bands_raw = v.get("urgencyBands")
        try:
            low, high = (float(x) for x in bands_raw.split(","))
        except ValueError:
            raise ConfigError(
                f"urgencyBands must be two percentages like '5,20', got {bands_raw!r}"
            )
        if not 0 <= low <= high:
            raise ConfigError(f"urgencyBands must be ascending and not negative, got {bands_raw!r}")
        timeout = v.get("snowTimeout")
        if timeout <= 0:
            raise ConfigError("snowTimeout must be a positive number of seconds")
        return cls(
            device_id=default_device_id(source),
            snow_url=v.require("snowUrl"),
            secret_id=v.get("snowSecretId"),
            timeout=timeout,
            verify_tls=verify,
            assignment_group=v.get("snowAssignmentGroup"),
            category=v.get("snowCategory"),
            caller_id=v.get("snowCallerId"),
            impact=impact,
            urgency_bands=(low, high),
            recovery_action=v.get("recoveryAction"),
            close_code=v.get("closeCode"),
            close_notes=v.get("closeNotes"),
            update_seconds=_non_negative(v, "updateMinutes") * 60.0,
            secret_ttl=_non_negative(v, "secretTtlSeconds"),
            retry_base=_positive(v, "retryBaseSeconds"),
            retry_max=_positive(v, "retryMaxSeconds"),
            state_dir=v.get("stateDir"),
            anomaly_topic=_topic(v, "anomalyTopic"),
            max_requests_per_second=_non_negative(v, "snowMaxRequestsPerSecond"),
        )

    @classmethod
    def from_environment(cls) -> AnomalySettings:
        return cls.from_mapping(os.environ)


def _limits(v: Values, metric: str, prefix: str) -> MetricLimits:
    upper = v.get(prefix + "Limit")
    lower = v.get(prefix + "LowLimit")
    hysteresis = v.get(prefix + "Hysteresis")
    if hysteresis < 0:
        raise ConfigError(f"{prefix}Hysteresis must not be negative, got {hysteresis}")
    if upper is not None and lower is not None and lower + hysteresis >= upper - hysteresis:
        raise ConfigError(
            f"{prefix}LowLimit ({lower}) must be below {prefix}Limit ({upper}) by more than twice the hysteresis"
        )
    return MetricLimits(metric, upper, lower, hysteresis)


def _topic(v: Values, name: str) -> str:
    topic = v.get(name)
    if not topic or "+" in topic or "#" in topic or len(topic.encode()) > 256:
        raise ConfigError(
            f"{name} must be a topic name without wildcards, at most 256 bytes, got {topic!r}"
        )
    return topic


def _non_negative(v: Values, name: str) -> float:
    value = v.get(name)
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _positive(v: Values, name: str) -> float:
    value = v.get(name)
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _one_to_three(v: Values, name: str) -> int:
    value = v.get(name)
    if value not in (1, 2, 3):
        raise ConfigError(f"{name} must be 1, 2 or 3, got {value}")
    return value


def markdown_table() -> str:
    """The README's configuration table, generated so it cannot drift."""
    rows = ["| variable | function | default | meaning |", "| --- | --- | --- | --- |"]
    for var in VARIABLES:
        default = "(unset)" if var.default is None else "`{}`".format(var.default or '""')
        rows.append(f"| `{var.name}` | {var.function} | {default} | {var.help} |")
    return "\n".join(rows)
