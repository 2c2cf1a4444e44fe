"""``/metrics``: the ``/api/state`` document in the Prometheus text format (0.0.4). Pure.

Names follow Prometheus' conventions: ``edge_agent_`` prefix, ``_total`` for
counters, base units (``_seconds``), labels for metric, bound, event, method
and status code. Counters that live in the sensor and anomaly functions come
from their latest health report (they restart from zero when the function
restarts; ``edge_agent_function_start_time_seconds`` tells when). Series
whose source has not reported yet are left out rather than shown as 0.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

Labels = Tuple[Tuple[str, str], ...]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SENSOR_COUNTERS = (
    ("readings", "edge_agent_readings_total", "Readings the sensor function published."),
    ("samples", "edge_agent_sensor_samples_total", "Times the sensor function read the sensor."),
    ("sensor_errors", "edge_agent_sensor_errors_total", "Sensor reads that failed."),
    ("publish_errors", "edge_agent_publish_errors_total", "Publishes the core refused."),
)
ANOMALY_COUNTERS = (
    ("retries", "edge_agent_delivery_retries_total", "ServiceNow actions rescheduled."),
    (
        "auth_failures",
        "edge_agent_servicenow_auth_failures_total",
        "Actions ServiceNow refused with 401 after one refetch of the secret.",
    ),
    ("secret_fetches", "edge_agent_secret_fetches_total", "Reads of the ServiceNow secret."),
)
INCIDENT_ACTIONS = (
    ("incidents_opened", "opened"),
    ("incidents_reused", "reused"),
    ("incidents_updated", "updated"),
    ("incidents_resolved", "resolved"),
)
EVENT_ACTIONS = (("events_sent", "sent"), ("events_cleared", "cleared"))
MESSAGE_OUTCOMES = (
    ("queued", "queued"),
    ("rejected", "rejected"),
    ("duplicates", "duplicate"),
    ("throttled", "throttled"),
)
MQTT_COUNTERS = (
    ("published", "edge_agent_mqtt_published_total", "Messages the broker acknowledged."),
    ("spooled", "edge_agent_mqtt_spooled_total", "Messages that waited in the spool offline."),
    ("dropped", "edge_agent_mqtt_dropped_total", "Messages pushed out of a full spool."),
    (
        "lost",
        "edge_agent_mqtt_lost_total",
        "Messages left in a memory spool when the bridge closed.",
    ),
    ("rejected", "edge_agent_mqtt_rejected_total", "Messages the broker refused."),
)


class Exposition:
    """Collects families and renders them; every family gets HELP and TYPE once."""

    def __init__(self) -> None:
        self._lines: List[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[Tuple[Labels, float]]
    ) -> None:
        samples = list(samples)
        if not samples:
            return
        # Text format 0.0.4 names the family as its samples (``x_total``), unlike OpenMetrics.
        self._lines.append("# HELP {} {}".format(name, _escape_help(help_text)))
        self._lines.append("# TYPE {} {}".format(name, kind))
        for labels, value in samples:
            self._lines.append(_sample(name, labels, value))

    def histogram(self, name: str, help_text: str, latency: Mapping[str, Any]) -> None:
        buckets = list(latency.get("buckets") or ())
        cumulative = list(latency.get("cumulative") or ())
        if not cumulative or len(cumulative) != len(buckets) + 1:
            return
        self._lines.append("# HELP {} {}".format(name, _escape_help(help_text)))
        self._lines.append("# TYPE {} histogram".format(name))
        for bound, count in zip(["{:g}".format(b) for b in buckets] + ["+Inf"], cumulative):
            self._lines.append(_sample(name + "_bucket", (("le", bound),), count))
        self._lines.append(_sample(name + "_sum", (), latency.get("sum") or 0.0))
        self._lines.append(_sample(name + "_count", (), cumulative[-1]))

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def render(doc: Mapping[str, Any]) -> str:
    """The exposition of one ``/api/state`` document."""
    out = Exposition()
    sensor = doc["sensor"]
    delivery = doc["delivery"]
    out.family(
        "edge_agent_info",
        "gauge",
        "The device this agent runs on.",
        [((("device", doc["device"]),), 1)] if doc.get("device") else [],
    )
    out.family(
        "edge_agent_healthy",
        "gauge",
        "1 when the run goes on, every function reports, readings are fresh, delivery is "
        "not stuck and no action is dead-lettered (what /healthz answers).",
        [((), 1 if doc["health"]["ok"] else 0)],
    )
    out.family(
        "edge_agent_function_up",
        "gauge",
        "1 while a function reports; 0 once it stopped (final report) or fell silent.",
        [
            ((("function", f),), 1 if v.get("state") == "running" else 0)
            for f, v in sorted(doc["functions"].items())
        ],
    )
    counters = sensor.get("counters") or {}
    if sensor.get("reported_at") is not None:
        for key, name, text in SENSOR_COUNTERS:
            out.family(name, "counter", text, [((), counters.get(key, 0))])
    out.family(
        "edge_agent_invalid_readings_total",
        "counter",
        "Readings with this metric missing or marked invalid by the chip.",
        [((("metric", m),), n) for m, n in sorted((sensor.get("invalid_readings") or {}).items())],
    )
    if sensor.get("last_reading_at") is not None:
        out.family(
            "edge_agent_last_reading_timestamp_seconds",
            "gauge",
            "Time of the newest reading (the sensor's clock, seconds since the epoch).",
            [((), sensor["last_reading_at"])],
        )
    out.family(
        "edge_agent_limit",
        "gauge",
        "A metric's configured limit, in its unit.",
        [
            ((("metric", metric), ("bound", bound)), value)
            for metric, spec in sorted((sensor.get("limits") or {}).items())
            for bound, value in (("upper", spec.get("upper")), ("lower", spec.get("lower")))
            if value is not None
        ],
    )
    out.family(
        "edge_agent_episodes_open",
        "gauge",
        "Breach episodes open now.",
        _open_episodes(doc.get("open_episodes") or (), sensor.get("limits") or {}),
    )
    out.family(
        "edge_agent_episode_events_total",
        "counter",
        "Episode events (breach, update, recovered) the status function received.",
        [
            ((("event", e["event"]), ("metric", e["metric"]), ("bound", e["bound"])), e["count"])
            for e in doc.get("episode_events") or ()
        ],
    )
    _delivery(out, delivery)
    _mqtt(out, doc.get("mqtt"))
    site_metrics(out, doc.get("site"))
    out.family(
        "edge_agent_function_start_time_seconds",
        "gauge",
        "When each function's process started (from its latest health report).",
        [((("function", f),), v["started_at"]) for f, v in sorted(doc["functions"].items())],
    )
    out.family(
        "edge_agent_function_report_timestamp_seconds",
        "gauge",
        "When each function last reported its counters.",
        [((("function", f),), v["reported_at"]) for f, v in sorted(doc["functions"].items())],
    )
    return out.text()


def _delivery(out: Exposition, delivery: Mapping[str, Any]) -> None:
    outbox = delivery["outbox"]
    if outbox.get("available"):
        out.family(
            "edge_agent_outbox_pending",
            "gauge",
            "ServiceNow actions waiting in the outbox.",
            [((), outbox["pending"])],
        )
        out.family(
            "edge_agent_outbox_dead_letters",
            "gauge",
            "ServiceNow actions dead-lettered (refused for good; see edge-agent outbox).",
            [((), outbox["dead_letters"])],
        )
        out.family(
            "edge_agent_outbox_oldest_pending_age_seconds",
            "gauge",
            "How long the oldest pending action has waited (0 when none).",
            [((), outbox.get("oldest_pending_age_seconds") or 0.0)],
        )
    counters = delivery.get("counters")
    if not counters:
        return  # the anomaly function has not reported yet
    out.family(
        "edge_agent_incidents_total",
        "counter",
        "Incident actions ServiceNow confirmed: opened, reused (found by correlation id), "
        "updated (work note), resolved.",
        [((("action", label),), counters.get(key, 0)) for key, label in INCIDENT_ACTIONS],
    )
    out.family(
        "edge_agent_events_total",
        "counter",
        "Event Management events ServiceNow took (snowSink=event): sent (an episode's "
        "start or update), cleared (its recovery).",
        [((("action", label),), counters.get(key, 0)) for key, label in EVENT_ACTIONS],
    )
    out.family(
        "edge_agent_anomaly_messages_total",
        "counter",
        "Episode events the anomaly function received, by what became of them.",
        [((("outcome", label),), counters.get(key, 0)) for key, label in MESSAGE_OUTCOMES],
    )
    for key, name, text in ANOMALY_COUNTERS:
        out.family(name, "counter", text, [((), counters.get(key, 0))])
    snow = delivery.get("servicenow") or {}
    requests: List[Tuple[Labels, float]] = []
    for key, count in sorted((snow.get("requests") or {}).items()):
        method, _, code = key.partition(" ")
        requests.append(((("method", method), ("code", code)), count))
    out.family(
        "edge_agent_servicenow_requests_total",
        "counter",
        "HTTP calls to ServiceNow by method and status code; code unreachable: ServiceNow was "
        "unreachable before the call was sent, no_answer: unreachable after it was sent (no "
        "answer; a write may have been committed). A lookup's 404 is nothing found, an answer.",
        requests,
    )
    out.histogram(
        "edge_agent_servicenow_request_duration_seconds",
        "Time from sending a ServiceNow call to its answer (or failure).",
        snow.get("latency") or {},
    )
    for key, name, text in (
        ("last_success_at", "edge_agent_servicenow_last_success_timestamp_seconds", "Last 2xx."),
        ("last_error", "edge_agent_servicenow_last_error_timestamp_seconds", "Last failed call."),
    ):
        value = snow.get(key)
        if isinstance(value, Mapping):
            value = value.get("at")
        if value is not None:
            out.family(name, "gauge", text, [((), value)])


def _mqtt(out: Exposition, mqtt: Optional[Mapping[str, Any]]) -> None:
    if not mqtt:
        return
    counters = mqtt.get("counters") or {}
    for key, name, text in MQTT_COUNTERS:
        out.family(name, "counter", text, [((), counters.get(key, 0))])
    gauges = mqtt.get("gauges") or {}
    out.family(
        "edge_agent_mqtt_spool_messages",
        "gauge",
        "Messages waiting in the spool or unacknowledged.",
        [((), gauges.get("pending", 0))],
    )
    out.family(
        "edge_agent_mqtt_connected",
        "gauge",
        "1 while connected to the broker.",
        [((), gauges.get("connected", 0))],
    )


def site_metrics(out: Exposition, site: Optional[Mapping[str, Any]]) -> None:
    """A site gateway's devices by state, its open groups and each device's last reading."""
    if not site:
        return
    out.family(
        "edge_agent_site_devices",
        "gauge",
        "Devices of the site by state (normal, in breach, silent).",
        [((("state", s),), n) for s, n in sorted(site["devices_by_state"].items())],
    )
    out.family(
        "edge_agent_site_group_members",
        "gauge",
        "Devices in each open group of the site (its incident's correlation id).",
        [
            ((("group", g["correlation_id"]), ("kind", g["kind"])), len(g["members"]))
            for g in site["groups"]
        ],
    )
    out.family(
        "edge_agent_site_device_silent",
        "gauge",
        "1 when the gateway has had no reading from the device for silentAfterSeconds.",
        [((("device", d["device"]),), 1 if d["state"] == "silent" else 0) for d in site["devices"]],
    )
    out.family(
        "edge_agent_site_device_in_breach",
        "gauge",
        "1 when the device is in an open breach episode.",
        [
            ((("device", d["device"]),), 1 if d["state"] == "in breach" else 0)
            for d in site["devices"]
        ],
    )
    out.family(
        "edge_agent_site_device_last_reading_timestamp_seconds",
        "gauge",
        "Time of the device's last reading the gateway received (the device's clock).",
        [
            ((("device", d["device"]),), d["last_reading_at"])
            for d in site["devices"]
            if d["last_reading_at"] is not None
        ],
    )
    out.family(
        "edge_agent_site_device_reading",
        "gauge",
        "The device's last reading, per metric, in the metric's unit.",
        [
            ((("device", d["device"]), ("metric", m)), v)
            for d in site["devices"]
            for m, v in sorted(d["reading"].items())
            if v is not None
        ],
    )


def _open_episodes(
    episodes: Iterable[Mapping[str, Any]], limits: Mapping[str, Any]
) -> List[Tuple[Labels, float]]:
    counts: Dict[Tuple[str, str], int] = {
        (metric, bound): 0
        for metric, spec in limits.items()
        for bound in ("upper", "lower")
        if spec.get(bound) is not None
    }
    for episode in episodes:
        key = (str(episode.get("metric")), str(episode.get("bound")))
        counts[key] = counts.get(key, 0) + 1
    return [((("metric", m), ("bound", b)), n) for (m, b), n in sorted(counts.items())]


def _sample(name: str, labels: Labels, value: float) -> str:
    if labels:
        inner = ",".join('{}="{}"'.format(k, _escape_label(v)) for k, v in labels)
        name = "{}{{{}}}".format(name, inner)
    return "{} {}".format(name, _number(value))


def _number(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    value = float(value)  # what is neither bool nor int: a float, or a number that converts
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _escape_label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
