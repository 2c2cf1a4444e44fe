"""Configuration: every variable the functions read, its type, default and meaning.

Greengrass V1 passes configuration as the function's environment variables
(``Environment.Variables`` in the function definition); the names of the
source blog (``tempLimit``, ``humidLimit``, ``snowUrl``) keep working. Explicit
arguments beat the environment: ``SensorSettings.from_mapping(...)`` takes any
mapping, ``from_environment()`` is the convenience on top.

A bad value raises :class:`agent.errors.ConfigError` naming the variable and
what was expected. ``VARIABLES`` is the single list the README's table is
generated from (``edge-agent config-table``). :func:`check_values` is the one
validation of every variable: both functions run it on their whole
environment, so whatever one function accepts the other accepts, and
``deploy`` runs it on the topology before it writes anything.

Longer than most modules (~600 lines) on purpose: the table of every variable
and the one validation of them are the single source of truth for both
functions, ``simulate``, ``run`` and ``deploy``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import ConfigError
from .schema import METRIC_RANGES
from .topology import (
    DEFAULT_ANOMALY_TOPIC,
    DEFAULT_READINGS_TOPIC,
    DEFAULT_SECRET_NAME,
    DEVICE_STATE_DIR,
)

# One default for every tool (the functions, ``edge-agent run``, ``edge-agent
# outbox``, ``edge-agent status``): the deployed state volume's path, durable
# across reboots (so queued incident actions survive one) and a path a
# Greengrass V1 volume resource may use (see agent/topology.py).
DEFAULT_STATE_DIR = DEVICE_STATE_DIR
# Environment names the process reads that are not function variables.
PROCESS_SWITCHES = (
    "EDGE_AGENT_RUNTIME",
    "EDGE_AGENT_SENSOR",
    "EDGE_AGENT_SCENARIO",
    "EDGE_AGENT_REPLAY",
    "EDGE_AGENT_SEED",
    "EDGE_AGENT_SECRET_FILE",
    "AWS_IOT_THING_NAME",
    "HOME",
)
# Limit variables per metric: (metric, prefix of tempLimit / tempLowLimit / tempHysteresis).
LIMIT_PREFIXES = (("temperature", "temp"), ("humidity", "humid"), ("pressure", "pressure"))
_UNITS = {"temperature": "°C", "humidity": "%RH", "pressure": "hPa"}


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
        DEFAULT_STATE_DIR,
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
    # --- status function (in the group only when statusPort is set) -------
    Variable(
        "statusPort",
        "int",
        None,
        "status",
        "Port of the status page, /api/state, /metrics and /healthz; the status function "
        "is deployed only when this is set (0: any free port).",
    ),
    Variable(
        "statusBind",
        "str",
        "127.0.0.1",
        "status",
        "Address the status service listens on; 0.0.0.0 exposes the read-only page, "
        "which has no authentication, to the network.",
    ),
    Variable(
        "statusStaleSeconds",
        "float",
        None,
        "status",
        "/healthz fails when the last reading is older than this (default: 3 periods, at least 15 s).",
    ),
    Variable(
        "statusStuckSeconds",
        "float",
        "300",
        "status",
        "/healthz fails when an action has waited in the outbox longer than this.",
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
        values = check_values(source)
        limits = tuple(
            MetricLimits(
                metric,
                values[prefix + "Limit"],
                values[prefix + "LowLimit"],
                values[prefix + "Hysteresis"],
            )
            for metric, prefix in LIMIT_PREFIXES
        )
        return cls(
            device_id=default_device_id(source),
            limits=tuple(lim for lim in limits if lim.watched),
            debounce_samples=values["debounceSamples"],
            debounce_seconds=values["debounceSeconds"],
            renotify_seconds=values["renotifyMinutes"] * 60.0,
            period=values["period"],
            readings_topic=values["readingsTopic"],
            anomaly_topic=values["anomalyTopic"],
            compensation_factor=values["tempCompensationFactor"],
            state_dir=values["stateDir"],
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
        values = check_values(source)
        v = Values(source)
        return cls(
            device_id=default_device_id(source),
            snow_url=v.require("snowUrl"),
            secret_id=values["snowSecretId"],
            timeout=values["snowTimeout"],
            verify_tls=values["snowVerifyTls"],
            assignment_group=values["snowAssignmentGroup"],
            category=values["snowCategory"],
            caller_id=values["snowCallerId"],
            impact={
                "temperature": values["tempImpact"],
                "humidity": values["humidImpact"],
                "pressure": values["pressureImpact"],
            },
            urgency_bands=values["urgencyBands"],
            recovery_action=values["recoveryAction"],
            close_code=values["closeCode"],
            close_notes=values["closeNotes"],
            update_seconds=values["updateMinutes"] * 60.0,
            secret_ttl=values["secretTtlSeconds"],
            retry_base=values["retryBaseSeconds"],
            retry_max=values["retryMaxSeconds"],
            state_dir=values["stateDir"],
            anomaly_topic=values["anomalyTopic"],
            max_requests_per_second=values["snowMaxRequestsPerSecond"],
        )

    @classmethod
    def from_environment(cls) -> AnomalySettings:
        return cls.from_mapping(os.environ)


# -- the one validation -------------------------------------------------------------------


def check_values(source: Mapping[str, str]) -> Dict[str, Any]:
    """Every variable of ``VARIABLES``, parsed and checked; raise ConfigError naming the first bad one.

    Both functions call this on their whole environment (not only on the
    variables they read), so a value one function would reject stops the
    other too: a humidity limit the anomaly function would refuse in every
    event never reaches the sensor's judge. Only required-ness differs by
    function (``snowUrl`` is required by the anomaly function alone). Names
    that are not variables are ignored here; see :func:`check_names`.
    """
    v = Values(source)
    values: Dict[str, Any] = {}
    for var in VARIABLES:
        if var.name == "snowVerifyTls":
            values[var.name] = _verify_tls(v, source)
        else:
            values[var.name] = v.get(var.name)
    for metric, prefix in LIMIT_PREFIXES:
        _limits(v, metric, prefix)
    if values["period"] <= 0:
        raise ConfigError(f"period must be a positive number of seconds, got {values['period']}")
    if values["debounceSamples"] < 1:
        raise ConfigError(f"debounceSamples must be 1 or more, got {values['debounceSamples']}")
    factor = values["tempCompensationFactor"]
    if factor is not None and factor <= 0:
        raise ConfigError(f"tempCompensationFactor must be positive, got {factor}")
    for name in (
        "debounceSeconds",
        "renotifyMinutes",
        "updateMinutes",
        "secretTtlSeconds",
        "snowMaxRequestsPerSecond",
    ):
        _non_negative(v, name)
    for name in ("retryBaseSeconds", "retryMaxSeconds"):
        _positive(v, name)
    for name in ("readingsTopic", "anomalyTopic"):
        _topic(v, name)
    for name in ("tempImpact", "humidImpact", "pressureImpact"):
        _one_to_three(v, name)
    if values["snowTimeout"] <= 0:
        raise ConfigError("snowTimeout must be a positive number of seconds")
    if not values["stateDir"] or not values["stateDir"].strip():
        raise ConfigError("stateDir must name a folder")
    values["urgencyBands"] = _urgency_bands(values["urgencyBands"])
    return values


def suggest(name: str) -> Optional[str]:
    """The variable ``name`` was probably meant to be (case or a typo), or ``None``."""
    for var in VARIABLES:
        if var.name.lower() == name.lower():
            return var.name
    import difflib  # deferred: only a misspelt name pays for it

    close = difflib.get_close_matches(name, [var.name for var in VARIABLES], n=1, cutoff=0.8)
    return close[0] if close else None


def unknown_name_message(name: str, where: str = "") -> str:
    """``unknown variable 'humidLimt'; did you mean humidLimit?`` and where to look."""
    text = "unknown variable {!r}{}".format(name, f" in {where}" if where else "")
    guess = suggest(name)
    if guess is not None:
        text += f"; did you mean {guess}?"
    return text + " (edge-agent config-table lists every variable)"


def check_assignments(assignments: Mapping[str, str], option: str = "--set") -> None:
    """``NAME=VALUE`` pairs given on a command line: every name a variable, no empty value."""
    for name, value in assignments.items():
        if not name.strip():
            raise ConfigError(f"{option} ={value} has no variable name")
        if name not in _BY_NAME:
            raise ConfigError(unknown_name_message(name, f"{option} {name}={value}"))
        if not value.strip():
            default = _BY_NAME[name].default
            raise ConfigError(
                "{} {}= has no value; give one, or leave it out to use the default ({})".format(
                    option, name, "unset" if default is None else default or '""'
                )
            )


def check_environment(environment: Mapping[str, str], where: str = "") -> None:
    """A function's environment as a deployment sets it: names and values.

    A name that is neither a variable nor a process switch is allowed (an
    ordinary environment variable such as ``TZ``) unless it looks like a
    misspelt variable (``humidlimit``, ``humidLimt``), which is an error.
    """
    prefix = f"{where}: " if where else ""
    for name in environment:
        if name in _BY_NAME or name in PROCESS_SWITCHES:
            continue
        if suggest(name) is not None:
            raise ConfigError(prefix + unknown_name_message(name))
    try:
        check_values(environment)
    except ConfigError as exc:
        raise ConfigError(prefix + str(exc)) from None


def check_group(topology: Any) -> None:
    """:func:`check_environment` for every function of a ``GroupTopology``."""
    for spec in topology.functions:
        check_environment(spec.environment, f"function {spec.id}")


def _verify_tls(v: Values, source: Mapping[str, str]) -> Any:
    verify_raw = source.get("snowVerifyTls", "true")
    try:
        return v.get("snowVerifyTls")
    except ConfigError:
        if not os.path.isfile(verify_raw):
            raise ConfigError(
                f"snowVerifyTls must be true, false or the path of a CA bundle, got {verify_raw!r}"
            )
        return verify_raw


def _urgency_bands(raw: str) -> Tuple[float, float]:
    try:
        low, high = (float(x) for x in raw.split(","))
    except ValueError:
        raise ConfigError(f"urgencyBands must be two percentages like '5,20', got {raw!r}")
    if not 0 <= low <= high:
        raise ConfigError(f"urgencyBands must be ascending and not negative, got {raw!r}")
    return low, high


def _limits(v: Values, metric: str, prefix: str) -> MetricLimits:
    upper = v.get(prefix + "Limit")
    lower = v.get(prefix + "LowLimit")
    hysteresis = v.get(prefix + "Hysteresis")
    # The anomaly function accepts events only inside METRIC_RANGES (agent/schema.py),
    # so a limit outside would make every event of the metric a rejected message.
    low, high = METRIC_RANGES[metric]
    for name, value in ((prefix + "Limit", upper), (prefix + "LowLimit", lower)):
        if value is not None and not low <= value <= high:
            raise ConfigError(
                "{} must be between {:g} and {:g} {} (what a {} reading can be), got {:g}".format(
                    name, low, high, _UNITS[metric], metric, value
                )
            )
    if hysteresis < 0:
        raise ConfigError(f"{prefix}Hysteresis must not be negative, got {hysteresis}")
    if upper is not None and lower is not None and lower + hysteresis >= upper - hysteresis:
        raise ConfigError(
            f"{prefix}LowLimit ({lower}) must be below {prefix}Limit ({upper}) by more than twice the hysteresis"
        )
    return MetricLimits(metric, upper, lower, hysteresis)


def _topic(v: Values, name: str) -> str:
    topic: Optional[str] = v.get(name)
    if not topic or "+" in topic or "#" in topic or len(topic.encode()) > 256:
        raise ConfigError(
            f"{name} must be a topic name without wildcards, at most 256 bytes, got {topic!r}"
        )
    return topic


def _non_negative(v: Values, name: str) -> float:
    value: float = v.get(name)
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _positive(v: Values, name: str) -> float:
    value: float = v.get(name)
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _one_to_three(v: Values, name: str) -> int:
    value: int = v.get(name)
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
