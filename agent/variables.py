"""The table of every variable the functions read: its type, default and meaning.

Greengrass V1 passes configuration as the function's environment variables
(``Environment.Variables`` in the function definition); the names of the
source blog (``tempLimit``, ``humidLimit``, ``snowUrl``) keep working.
``VARIABLES`` is the single list the table in docs/configuration.md is generated from
(``edge-agent config-table``); :class:`VariableReader` reads one variable from
a mapping, parsed to its type, its default filled in. A bad value raises
:class:`agent.errors.ConfigError` naming the variable and what was expected.
The checks across variables, and the settings the functions build from them,
are in :mod:`agent.config`.
"""

from __future__ import annotations

import math

from .errors import ConfigError
from .names import (
    DEFAULT_ANOMALY_TOPIC,
    DEFAULT_READINGS_TOPIC,
    DEFAULT_SECRET_NAME,
    DEVICE_STATE_DIR,
)
from .record import Record

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Tuple

# One default for every tool (the functions, ``edge-agent run``, ``edge-agent
# outbox``, ``edge-agent status``): the deployed state volume's path, durable
# across reboots (so queued incident actions survive one) and a path a
# Greengrass V1 volume resource may use (see agent/names.py).
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


class Variable(Record):
    """One variable of the table: how it is parsed, its default, which function reads it."""

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
        "CPU-heat compensation factor (1.5 to 2.25 typical); off if unset. A CPU temperature"
        " colder than the chip or above 100 °C is not believed: the temperature reading is"
        " missing (logged once per spell) rather than corrected with it.",
    ),
    Variable(
        "i2cBus",
        "int",
        "1",
        "sensor",
        "I2C bus of the Sense HAT's chips for the i2c sensor backend: /dev/i2c-N (1 on a Pi).",
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
        "snowTimeout",
        "float",
        "10",
        "anomaly",
        "Seconds a ServiceNow call may take in all: the connect and the whole answer.",
    ),
    Variable(
        "snowMaxAnswerBytes",
        "int",
        "262144",
        "anomaly",
        "Largest ServiceNow answer read, in bytes; a larger one is a fault, retried later.",
    ),
    Variable(
        "snowVerifyTls",
        "bool",
        "true",
        "anomaly",
        "Verify ServiceNow's TLS certificate; or a CA bundle path.",
    ),
    Variable(
        "snowSink",
        "choice",
        "incident",
        "anomaly",
        "Where episodes go: incidents through the Table API, or events to Event Management "
        "(POST /api/global/em/jsonv2; role evt_mgmt_integration).",
        choices=("incident", "event"),
    ),
    Variable(
        "snowCmdbCi",
        "str",
        "",
        "anomaly",
        "cmdb_ci of new incidents: a sys_id (32 hex) or a CI name looked up in cmdb_ci; "
        "{device} expands to the device id. A name not found: the incident opens without it.",
    ),
    Variable(
        "snowBusinessService",
        "str",
        "",
        "anomaly",
        "business_service of new incidents (a sys_id or name, as the instance takes it).",
    ),
    Variable(
        "snowContactType",
        "str",
        "",
        "anomaly",
        "contact_type of new incidents, a value of the instance's choice list (e.g. monitoring).",
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
    # --- a site gateway (the anomaly function of many Pis) -----------------
    Variable(
        "site",
        "str",
        None,
        "anomaly",
        "Site this anomaly function is the gateway of: episodes of all its devices are "
        "grouped, one incident per site event (unset: one incident per episode, a single Pi).",
    ),
    Variable(
        "groupBy",
        "str",
        "site,metric,direction",
        "anomaly",
        "Labels that make a group on a site gateway (site, metric, direction, device).",
    ),
    Variable(
        "siteDevices",
        "str",
        "",
        "anomaly",
        "Devices of the site (comma-separated), from the deployment; others are known "
        "from their first reading. Each is watched for silence from the gateway's start.",
    ),
    Variable(
        "silentAfterSeconds",
        "float",
        None,
        "anomaly",
        "A site device with no reading for this long is silent: one incident per silent "
        "group (default: 3 of its reading periods + 30 s).",
    ),
    Variable(
        "groupWaitSeconds",
        "float",
        None,
        "anomaly",
        "How long a group's first breach waits for others before the incident opens "
        "(default: 30 on a site gateway, 0 on a single Pi).",
    ),
    Variable(
        "groupIntervalSeconds",
        "float",
        "300",
        "anomaly",
        "At most one work note per group per this many seconds: who joined, recovered or "
        "worsened, and the peak.",
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

VARIABLES_BY_NAME: Dict[str, Variable] = {v.name: v for v in VARIABLES}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _parse(var: Variable, raw: str) -> Any:
    text = raw.strip()
    try:
        if var.kind == "float":
            value = float(text)
            if not math.isfinite(value):
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


class VariableReader:
    """Reads configuration variables from one mapping: parsed to their type, defaults filled in."""

    def __init__(self, source: Mapping[str, str]) -> None:
        self._source = source

    def get(self, name: str) -> Any:
        var = VARIABLES_BY_NAME[name]
        raw = self._source.get(name)
        if raw is None or (raw.strip() == "" and var.kind not in ("str",)):
            raw = var.default
        if raw is None:
            return None
        return _parse(var, raw)

    def require(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise ConfigError(f"{name} is required: {VARIABLES_BY_NAME[name].help}")
        return value


def markdown_table() -> str:
    """The configuration table of docs/configuration.md, generated so it cannot drift."""
    rows = ["| variable | function | default | meaning |", "| --- | --- | --- | --- |"]
    for var in VARIABLES:
        default = "(unset)" if var.default is None else "`{}`".format(var.default or '""')
        rows.append(f"| `{var.name}` | {var.function} | {default} | {var.help} |")
    return "\n".join(rows)
