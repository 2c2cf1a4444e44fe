"""Configuration: the settings each function runs with, and the one validation of every variable.

The variables themselves (name, type, default, meaning) are the table in
:mod:`agent.variables`; the names it defines are importable from here too.
Explicit arguments beat the environment: ``SensorSettings.from_mapping(...)``
takes any mapping (the functions pass their environment).

A bad value raises :class:`agent.errors.ConfigError` naming the variable and
what was expected. :func:`check_values` is the one validation of every
variable: both functions run it on their whole environment, so whatever one
function accepts the other accepts, and ``deploy`` runs it on the topology
before it writes anything.
"""

from __future__ import annotations

import os

from .errors import ConfigError
from .record import Record
from .schema import METRIC_RANGES
from .variables import (
    DEFAULT_STATE_DIR,
    LIMIT_PREFIXES,
    LOOPBACK_HOSTS,
    PROCESS_SWITCHES,
    VARIABLES,
    VARIABLES_BY_NAME,
    Variable,
    VariableReader,
    markdown_table,
    parse_snow_url,
)

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, Mapping, Optional, Tuple

# The table's names, importable from here as before the table had its own module.
__all__ = [
    "DEFAULT_STATE_DIR",
    "LIMIT_PREFIXES",
    "LOOPBACK_HOSTS",
    "PROCESS_SWITCHES",
    "VARIABLES",
    "Variable",
    "VariableReader",
    "markdown_table",
    "parse_snow_url",
    "AnomalySettings",
    "MetricLimits",
    "SensorSettings",
    "check_assignments",
    "check_environment",
    "check_group",
    "check_values",
    "default_device_id",
    "suggest",
    "unknown_name_message",
]

_UNITS = {"temperature": "°C", "humidity": "%RH", "pressure": "hPa"}
# A site gateway's grouping: the labels a group may be made of, the default wait.
GROUP_LABELS = ("site", "metric", "direction", "device")
SITE_GROUP_WAIT = 30.0
# Below this, one incident record (the answer to a create) may not fit.
MIN_ANSWER_BYTES = 4096
MAX_DEVICE_ID = 128  # characters: AWS IoT's limit for a thing name


def default_device_id(source: Mapping[str, str]) -> str:
    named = source.get("deviceId") or source.get("AWS_IOT_THING_NAME")
    if named:
        return named
    import socket  # deferred: a core always names the thing, and socket costs ~5 ms to import

    return socket.gethostname()


class MetricLimits(Record):
    """Limits for one metric; ``None`` means that side is not watched."""

    metric: str
    upper: Optional[float]
    lower: Optional[float]
    hysteresis: float

    @property
    def watched(self) -> bool:
        return self.upper is not None or self.lower is not None


class SensorSettings(Record):
    """What the sensor function runs with, from its variables."""

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
    i2c_bus: int = 1

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
            i2c_bus=values["i2cBus"],
        )


class AnomalySettings(Record):
    """What the anomaly function runs with, from its variables."""

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
    max_answer_bytes: int = 262144
    site: Optional[str] = None  # a site gateway: episodes are grouped (agent/site/)
    group_by: Tuple[str, ...] = ("site", "metric", "direction")
    group_wait: float = 0.0
    group_interval: float = 300.0
    site_devices: Tuple[str, ...] = ()
    silent_after: Optional[float] = None  # None: 3 periods + 30 s, per device
    period: float = 5.0  # the devices' reading period until each one's is seen
    sink: str = "incident"
    cmdb_ci: str = ""
    business_service: str = ""
    contact_type: str = ""
    readings_topic: str = "IoTBlog/sensorData"  # where a gateway hears its devices

    @classmethod
    def from_mapping(cls, source: Mapping[str, str]) -> AnomalySettings:
        values = check_values(source)
        v = VariableReader(source)
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
            max_answer_bytes=values["snowMaxAnswerBytes"],
            site=values["site"] or None,
            group_by=values["groupBy"],
            group_wait=_group_wait(values),
            group_interval=values["groupIntervalSeconds"],
            site_devices=tuple(d.strip() for d in values["siteDevices"].split(",") if d.strip()),
            silent_after=values["silentAfterSeconds"],
            period=values["period"],
            sink=values["snowSink"],
            cmdb_ci=values["snowCmdbCi"].strip(),
            business_service=values["snowBusinessService"].strip(),
            contact_type=values["snowContactType"].strip(),
            readings_topic=values["readingsTopic"],
        )


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
    v = VariableReader(source)
    values: Dict[str, Any] = {}
    for var in VARIABLES:
        if var.name == "snowVerifyTls":
            values[var.name] = _verify_tls(v, source)
        else:
            values[var.name] = v.get(var.name)
    for metric, prefix in LIMIT_PREFIXES:
        _limits(v, metric, prefix)
    _device_id(source)
    if values["period"] <= 0:
        raise ConfigError(f"period must be a positive number of seconds, got {values['period']}")
    if values["i2cBus"] < 0:
        raise ConfigError(
            f"i2cBus must be a bus number (0 or more, /dev/i2c-N), got {values['i2cBus']}"
        )
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
        "groupIntervalSeconds",
    ):
        _non_negative(v, name)
    if values["groupWaitSeconds"] is not None:
        _non_negative(v, "groupWaitSeconds")
    if values["silentAfterSeconds"] is not None:
        _positive(v, "silentAfterSeconds")
    values["groupBy"] = _group_by(values["groupBy"])
    for name in ("retryBaseSeconds", "retryMaxSeconds"):
        _positive(v, name)
    for name in ("readingsTopic", "anomalyTopic"):
        _topic(v, name)
    for name in ("tempImpact", "humidImpact", "pressureImpact"):
        _one_to_three(v, name)
    if values["snowTimeout"] <= 0:
        raise ConfigError("snowTimeout must be a positive number of seconds")
    if values["snowMaxAnswerBytes"] < MIN_ANSWER_BYTES:
        raise ConfigError(
            "snowMaxAnswerBytes must be at least {} (one incident record), got {}".format(
                MIN_ANSWER_BYTES, values["snowMaxAnswerBytes"]
            )
        )
    if values["snowSink"] == "event" and (values.get("site") or "").strip():
        # A site gateway's grouped episodes are incidents; it has no events to send yet.
        raise ConfigError("snowSink=event is not available on a site gateway (site is set)")
    if "^" in values["snowCmdbCi"]:
        # A name is looked up with an encoded query, where '^' starts another term.
        raise ConfigError("snowCmdbCi must not contain '^' (it would split the cmdb_ci lookup)")
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
        if name not in VARIABLES_BY_NAME:
            raise ConfigError(unknown_name_message(name, f"{option} {name}={value}"))
        if not value.strip():
            default = VARIABLES_BY_NAME[name].default
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
        if name in VARIABLES_BY_NAME or name in PROCESS_SWITCHES:
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


def _device_id(source: Mapping[str, str]) -> None:
    """Refuse a device id no AWS IoT thing can have: it names files, ids and incidents."""
    device = source.get("deviceId") or source.get("AWS_IOT_THING_NAME") or ""  # a host name fits
    if len(device) > MAX_DEVICE_ID:
        raise ConfigError(
            "deviceId {!r} is {} characters long; a device id has at most {} (an AWS IoT"
            " thing name's limit)".format(
                device[:40] + "..." if len(device) > 43 else device, len(device), MAX_DEVICE_ID
            )
        )


def _verify_tls(v: VariableReader, source: Mapping[str, str]) -> Any:
    verify_raw = source.get("snowVerifyTls", "true")
    try:
        return v.get("snowVerifyTls")
    except ConfigError:
        if not os.path.isfile(verify_raw):
            raise ConfigError(
                f"snowVerifyTls must be true, false or the path of a CA bundle, got {verify_raw!r}"
            )
        return verify_raw


def _group_wait(values: Mapping[str, Any]) -> float:
    """groupWaitSeconds, or its default: 30 s on a site gateway, none on a single Pi."""
    if values["groupWaitSeconds"] is not None:
        wait: float = values["groupWaitSeconds"]
        return wait
    return SITE_GROUP_WAIT if values["site"] else 0.0


def _group_by(raw: str) -> Tuple[str, ...]:
    labels = tuple(part.strip() for part in raw.split(",") if part.strip())
    for label in labels:
        if label not in GROUP_LABELS:
            raise ConfigError(
                "groupBy must list labels among {}, got {!r}".format(", ".join(GROUP_LABELS), label)
            )
    # A gateway serves one site: its name leads every group, named or not.
    return ("site",) + tuple(label for label in labels if label != "site")


def _urgency_bands(raw: str) -> Tuple[float, float]:
    try:
        low, high = (float(x) for x in raw.split(","))
    except ValueError:
        raise ConfigError(f"urgencyBands must be two percentages like '5,20', got {raw!r}")
    if not 0 <= low <= high:
        raise ConfigError(f"urgencyBands must be ascending and not negative, got {raw!r}")
    return low, high


def _limits(v: VariableReader, metric: str, prefix: str) -> MetricLimits:
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


def _topic(v: VariableReader, name: str) -> str:
    topic: Optional[str] = v.get(name)
    if not topic or "+" in topic or "#" in topic or len(topic.encode()) > 256:
        raise ConfigError(
            f"{name} must be a topic name without wildcards, at most 256 bytes, got {topic!r}"
        )
    return topic


def _non_negative(v: VariableReader, name: str) -> float:
    value: float = v.get(name)
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _positive(v: VariableReader, name: str) -> float:
    value: float = v.get(name)
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _one_to_three(v: VariableReader, name: str) -> int:
    value: int = v.get(name)
    if value not in (1, 2, 3):
        raise ConfigError(f"{name} must be 1, 2 or 3, got {value}")
    return value
