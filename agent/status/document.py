"""The ``/api/state`` document and the ``/healthz`` verdict. Pure: built from the model and
the state directory's views, at a given time.

``/api/state`` (``"schema": "edge-agent/status/1"``; fields are only ever added)::

    generated_at      the status function's clock (virtual in ``simulate --fast``)
    device            the device id, as the sensor sends it (any text: escape it)
    health            {"ok": bool, "reasons": [text, ...]}: what /healthz answers; not ok
                      when readings are stale, a function stopped or fell silent, the run
                      ended, delivery is stuck or an action was dead-lettered
    sensor            last_reading_at, last_reading_age_seconds, stale_after_seconds,
                      period, limits {metric: {upper, lower, hysteresis}}, counters
                      {samples, readings, sensor_errors, publish_errors, breach, ...},
                      invalid_readings {metric: n}, started_at, reported_at, restarts
    readings          {"window_seconds", "total", "ts": [...], "temperature": [...],
                      "humidity": [...], "pressure": [...]}; null for a missing value
    episodes          newest first: id, metric, bound, unit, limit, started_at,
                      breach_at, recovered_at, open, value, peak, title, incident
                      ({number, state, url} or null)
    open_episodes     the open ones (from the sensor's own state file when readable)
    incidents         newest first: at, action (opened/updated/resolved/noted), number,
                      state, episode_id, metric, url
    delivery          outbox {available, error, pending, oldest_pending_at,
                      oldest_pending_age_seconds, most_attempts, dead_letters,
                      oldest_dead_at, pending_actions, dead_letter_actions},
                      stuck_after_seconds, servicenow {url, requests {"METHOD code": n},
                      latency {buckets, cumulative, sum, count}, last_success_at,
                      last_error {at, method, code, cause}}, credentials {secret_id, fetches,
                      cached, kind}, counters {received, rejected, queued, incidents_*,
                      retries, dead_lettered, auth_failures, secret_fetches, ...}
    mqtt              the MQTT bridge's counters and gauges, or null (a core has its own)
    functions         {id: {started_at, reported_at, pid, final, restarts, state}}; state is
                      running, stopped (its final report came) or silent (no report for
                      ``silent_after_seconds``)
    run               {ended_at, exit_code, outcome} once the run this page serves (``simulate
                      --serve``) has ended, else null
    episode_events    [{event, metric, bound, count}] seen by the status function
    locks             [{path, holders [{pid, kind, alive}], recorded}]
    dropped_messages  {malformed, out_of_order, repeated}

Strings that come from the device or from ServiceNow (device, episode ids,
titles, incident numbers, error texts) are data: the page shows them with
``textContent`` only. No secret is ever in here: credentials appear as a
count and a kind, ServiceNow's URL without user, password or query.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import quote

from ..servicenow.incidents import CORRELATION_PREFIX, RESOLVED_STATES, correlation_id
from . import STATE_SCHEMA
from .health import HEALTH_INTERVAL
from .model import StatusModel
from .settings import StatusSettings
from .site_view import site_document
from .store import parse_action_key

ACTIONS = {"breach": "opened", "update": "updated", "recovered": "resolved"}
RECENT_INCIDENTS = 30
LISTED_EPISODES = 50
# A function reports every HEALTH_INTERVAL; eight missed reports is a function that died
# without its final one (SIGKILL, a crash, a core that stopped it), not a slow one.
SILENT_AFTER = 8 * HEALTH_INTERVAL


def build(
    model: StatusModel,
    views: Mapping[str, Any],
    settings: StatusSettings,
    now: float,
    window: Optional[float] = 3600.0,
    with_readings: bool = True,
    run: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The whole document; ``window`` seconds of readings back from the newest (None: all).
    ``run``: how the run ended ({ended_at, exit_code, outcome}), once it has.

    ``with_readings=False`` leaves the columns out (``window_seconds`` and
    ``total`` stay): the service writes them itself, a block at a time."""
    outbox = dict(views.get("outbox") or {"available": False, "error": "not read yet"})
    sensor_health = model.health.get("sensor") or {}
    anomaly_health = model.health.get("anomaly") or {}
    snow = anomaly_health.get("servicenow")
    snow_url = (snow or {}).get("url")
    incidents_known = outbox.get("incidents") or {}

    last = model.readings.last_ts
    readings: Dict[str, Any] = {"window_seconds": window, "total": model.readings.total}
    if with_readings:
        readings.update(model.readings.columns(since=window_start(model, window)))

    episodes = _episodes(model, views.get("sensor_state") or [], incidents_known, snow_url)
    stale_after = settings.stale_after(model.period())
    doc: Dict[str, Any] = {
        "schema": STATE_SCHEMA,
        "generated_at": now,
        "device": model.device or _state_device(views.get("sensor_state") or []),
        "sensor": {
            "last_reading_at": last,
            "last_reading_age_seconds": None if last is None else round(max(0.0, now - last), 3),
            "stale_after_seconds": stale_after,
            "period": model.period(),
            "limits": model.limits(),
            "counters": dict(sensor_health.get("counters") or {}),
            "invalid_readings": dict(model.invalid),
            "started_at": sensor_health.get("started_at"),
            "reported_at": sensor_health.get("ts"),
            "restarts": model.restarts.get("sensor", 0),
        },
        "readings": readings,
        "episodes": episodes,
        "open_episodes": [e for e in episodes if e["open"]],
        "incidents": _incidents(outbox, model, snow_url),
        "delivery": {
            "outbox": _outbox(outbox, now),
            "stuck_after_seconds": settings.stuck_seconds,
            "servicenow": snow,
            "credentials": anomaly_health.get("credentials"),
            "counters": dict(anomaly_health.get("counters") or {}),
            "paused_until": anomaly_health.get("paused_until"),
        },
        "mqtt": _mqtt(model),
        "site": site_document(anomaly_health.get("site"), now),
        "functions": {
            name: {
                "started_at": report["started_at"],
                "reported_at": report["ts"],
                "pid": report.get("pid"),
                "final": report.get("final", False),
                "restarts": model.restarts.get(name, 0),
                "state": _function_state(report, now),
            }
            for name, report in sorted(model.health.items())
        },
        "silent_after_seconds": SILENT_AFTER,
        "run": dict(run) if run else None,
        "episode_events": [
            {"event": e, "metric": m, "bound": b, "count": n}
            for (e, m, b), n in sorted(model.event_counts.items())
        ],
        "locks": list(views.get("locks") or []),
        "dropped_messages": dict(model.dropped),
    }
    ok, reasons = verdict(doc)
    doc["health"] = {"ok": ok, "reasons": reasons}
    return doc


def window_start(model: StatusModel, window: Optional[float]) -> Optional[float]:
    """Readings newer than this are in a ``window`` back from the newest (None: all)."""
    last = model.readings.last_ts
    return None if window is None or last is None else last - window


def verdict(doc: Mapping[str, Any]) -> Tuple[bool, List[str]]:
    """``/healthz``: the run going on, every function reporting, readings fresh, delivery
    not stuck and nothing dead-lettered; otherwise the reasons, in words (times as
    durations: the page shows clock times in the viewer's zone, a reason cannot)."""
    reasons = []
    run = doc.get("run")
    if run:
        reasons.append(
            "the run has ended (exit {}: {}): nothing is read or delivered any more".format(
                run.get("exit_code"), run.get("outcome")
            )
        )
    functions = doc.get("functions") or {}
    stopped = [name for name, f in functions.items() if f["state"] == "stopped"]
    if stopped:
        reasons.append(
            "{} stopped (final report sent)".format(
                _and(["the {} function".format(name) for name in stopped])
            )
        )
    for name, function in functions.items():
        if function["state"] == "silent":
            reasons.append(
                "the {} function is silent: no report for {} (limit {})".format(
                    name,
                    duration(doc["generated_at"] - function["reported_at"]),
                    duration(doc["silent_after_seconds"]),
                )
            )
    sensor = doc["sensor"]
    age = sensor["last_reading_age_seconds"]
    if age is None:
        reasons.append("no reading received yet")
    elif age > sensor["stale_after_seconds"]:
        reasons.append(
            "readings stale: the last one is {} old (limit {})".format(
                duration(age), duration(sensor["stale_after_seconds"])
            )
        )
    delivery = doc["delivery"]
    outbox = delivery["outbox"]
    if not outbox.get("available"):
        reasons.append("delivery unknown: {}".format(outbox.get("error")))
    else:
        oldest = outbox.get("oldest_pending_age_seconds")
        if oldest is not None and oldest > delivery["stuck_after_seconds"]:
            head = (outbox.get("pending_actions") or [{}])[0]
            error = head.get("last_error")
            reasons.append(
                "delivery stuck: {} action{} pending, the oldest for {} (limit {}){}".format(
                    outbox["pending"],
                    "" if outbox["pending"] == 1 else "s",
                    duration(oldest),
                    duration(delivery["stuck_after_seconds"]),
                    "; last error: {}".format(error) if error else "",
                )
            )
        dead = outbox.get("dead_letters") or 0
        if dead:
            reasons.append(
                "{} dead-lettered: ServiceNow refused {} for good; fix the cause, then "
                "edge-agent outbox --requeue-dead".format(
                    "1 action" if dead == 1 else "{} actions".format(dead),
                    "it" if dead == 1 else "them",
                )
            )
    return not reasons, reasons


def _function_state(report: Mapping[str, Any], now: float) -> str:
    if report.get("final"):
        return "stopped"
    return "silent" if now - report["ts"] > SILENT_AFTER else "running"


def _and(items: List[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def duration(seconds: float) -> str:
    """``47 s``, ``6 min 12 s``, ``3 h 05 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return "{:.0f} s".format(seconds) if seconds >= 10 else "{:.1f} s".format(seconds)
    if seconds < 3600:
        return "{} min {:02d} s".format(int(seconds // 60), int(seconds % 60))
    return "{} h {:02d} min".format(int(seconds // 3600), int(seconds % 3600 // 60))


def incident_url(snow_url: Optional[str], sys_id: Optional[str]) -> Optional[str]:
    """The incident's form in ServiceNow's classic UI, or ``None`` when either part is unknown."""
    if not snow_url or not sys_id:
        return None
    return "{}/nav_to.do?uri={}".format(snow_url, quote("incident.do?sys_id=" + sys_id, safe=""))


def _episodes(
    model: StatusModel,
    states: List[Mapping[str, Any]],
    incidents: Mapping[str, Mapping[str, Any]],
    snow_url: Optional[str],
) -> List[Dict[str, Any]]:
    # Open episodes: the sensor's own state file says which are open, when readable.
    open_ids = None
    saved: Dict[str, Mapping[str, Any]] = {}
    readable = [s for s in states if not s.get("error")]
    if readable:
        open_ids = set()
        for state in readable:
            for metric, episode in state["episodes"].items():
                open_ids.add(episode["episode_id"])
                saved[episode["episode_id"]] = dict(episode, metric=metric)
    limits = model.limits()
    out = []
    seen = set()
    for episode in reversed(model.episodes.values()):
        seen.add(episode["id"])
        is_open = episode["id"] in open_ids if open_ids is not None else not episode["recovered_at"]
        out.append(_episode(dict(episode), is_open, limits, incidents, snow_url))
    for episode_id, episode in saved.items():
        if episode_id in seen:
            continue  # open since before the status function started: known from the file only
        metric = episode.get("metric")
        record = {
            "id": episode_id,
            "metric": metric,
            "bound": episode.get("bound"),
            "started_at": episode.get("started_at"),
            "breach_at": None,
            "recovered_at": None,
            "peak": episode.get("peak"),
            "limit": (limits.get(metric) or {}).get(episode.get("bound") or "upper"),
        }
        out.insert(0, _episode(record, True, limits, incidents, snow_url))
    return out[:LISTED_EPISODES]


def _episode(
    episode: Dict[str, Any],
    is_open: bool,
    limits: Mapping[str, Any],
    incidents: Mapping[str, Mapping[str, Any]],
    snow_url: Optional[str],
) -> Dict[str, Any]:
    episode["open"] = bool(is_open)
    episode["hysteresis"] = (limits.get(episode["metric"]) or {}).get("hysteresis")
    # ServiceNow knows the episode by its query-safe correlation id (see correlation_id).
    incident = incidents.get(correlation_id(episode["id"]))
    episode["incident"] = (
        None
        if incident is None
        else {
            "number": incident["number"],
            "state": incident["state"],
            "url": incident_url(snow_url, incident["sys_id"]),
        }
    )
    return episode


def _incidents(
    outbox: Mapping[str, Any], model: StatusModel, snow_url: Optional[str]
) -> List[Dict[str, Any]]:
    incident_by_correlation = outbox.get("incidents") or {}
    # A device id with characters a query cannot carry is mapped in the correlation id:
    # join back to the episode the sensor named.
    episode_of = {correlation_id(eid): eid for eid in model.episodes}
    out = []
    for delivered in outbox.get("delivered") or ():
        parts = parse_action_key(delivered["key"])
        if parts is None:
            continue
        incident = incident_by_correlation.get(parts["correlation_id"]) or {}
        action = ACTIONS.get(parts["event"], parts["event"])
        if action == "resolved" and incident.get("state") not in RESOLVED_STATES:
            action = "noted"  # recoveryAction=note, or resolved later by hand
        episode_id = (
            episode_of.get(parts["correlation_id"])
            or parts["correlation_id"][len(CORRELATION_PREFIX) :]
        )
        episode = model.episodes.get(episode_id) or {}
        out.append(
            {
                "at": delivered["at"],
                "action": action,
                "number": incident.get("number"),
                "state": incident.get("state"),
                "episode_id": episode_id,
                "metric": episode.get("metric") or _metric_of(episode_id),
                "url": incident_url(snow_url, incident.get("sys_id")),
            }
        )
        if len(out) >= RECENT_INCIDENTS:
            break
    return out


def _outbox(view: Mapping[str, Any], now: float) -> Dict[str, Any]:
    out = {k: v for k, v in view.items() if k not in ("incidents", "delivered")}
    for key, field in (("oldest_pending_at", "oldest_pending"), ("oldest_dead_at", "oldest_dead")):
        at = view.get(key)
        out[field + "_age_seconds"] = None if at is None else round(max(0.0, now - at), 3)
    return out


def _mqtt(model: StatusModel) -> Optional[Dict[str, Any]]:
    report = model.health.get("mqtt-bridge")
    if report is None:
        return None
    return {"counters": report.get("counters") or {}, "gauges": report.get("gauges") or {}}


def _state_device(states: List[Mapping[str, Any]]) -> Optional[str]:
    for state in states:
        device: Optional[str] = state.get("device")  # a string or None: store.sensor_states
        if device:
            return device
    return None


def _metric_of(episode_id: str) -> Optional[str]:
    parts = episode_id.rsplit(":", 3)
    return parts[1] if len(parts) == 4 else None
