"""Health counters the functions publish for the status function: ``edge-agent/health/1``.

Counters such as sensor errors, ServiceNow status codes and latency, or secret
fetches live in the sensor's and the anomaly function's own processes. Each of
them sends a small message on ``edge-agent/health/<function id>`` (a local
topic the topology routes to the status function only, never to ``cloud``)
every :data:`HEALTH_INTERVAL` seconds and once more when it stops::

    {"schema": "edge-agent/health/1", "function": "sensor", "device": "pi-kitchen",
     "pid": 812, "started_at": 1790000000.0, "ts": 1790000015.0, "seq": 2,
     "final": false, "counters": {"samples": 3, "readings": 3, ...}, ...}

Counters are cumulative since ``started_at``: a restart starts them again from
zero, as a Prometheus counter does. The same mechanism runs on a V1 core, a V2
nucleus, ``edge-agent run`` and ``simulate``. Nothing here runs unless the
group has the status function (``EDGE_AGENT_STATUS=on`` in the environment).
"""

from __future__ import annotations

import logging
import os
import threading

from ..names import HEALTH_TOPIC, SENSOR_FUNCTION_ID, STATUS_SWITCH
from . import HEALTH_SCHEMA

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Mapping, Optional

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 15.0  # seconds between reports; the page's counters lag by at most this
# Prometheus' default buckets: ServiceNow calls take milliseconds on a LAN, seconds when slow.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

if TYPE_CHECKING:
    Collect = Callable[[], Dict[str, Any]]
else:  # only annotations use it
    Collect = "Callable[[], Dict[str, Any]]"
if TYPE_CHECKING:
    Publish = Callable[[str, Dict[str, Any]], None]
else:  # only annotations use it
    Publish = "Callable[[str, Dict[str, Any]], None]"


class ServiceNowCalls:
    """Counts the Table API client's calls by method and outcome, with a latency histogram.

    Hooked in as ``TableClient.on_call``; the delivery worker calls it, the
    health reporter reads it, so it is guarded by a lock.
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._requests: Dict[str, int] = {}
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._count = 0
        self.last_success_at: Optional[float] = None
        self.last_error: Optional[Dict[str, Any]] = None

    def observe(
        self, method: str, path: str, outcome: str, seconds: float, cause: str = ""
    ) -> None:
        """One call: ``outcome`` is the status code, or ``unreachable`` / ``no_answer``;
        ``cause`` why it failed when the code does not say (an HTML page, a redirect, DNS)."""
        if path.endswith("/oauth_token.do"):
            method = "TOKEN"
        index = 0
        while index < len(LATENCY_BUCKETS) and seconds > LATENCY_BUCKETS[index]:
            index += 1
        now = self.clock.time()
        with self._lock:
            key = "{} {}".format(method, outcome)
            self._requests[key] = self._requests.get(key, 0) + 1
            self._buckets[index] += 1
            self._sum += seconds
            self._count += 1
            # A lookup's 404 is the v1 Table API's "no match": an answer, not a failure
            # (the client gives a cause to any 404 that is not the Table API's own).
            if (
                not cause
                and outcome.isdigit()
                and (200 <= int(outcome) < 300 or (method, outcome) == ("GET", "404"))
            ):
                self.last_success_at = now
            else:
                self.last_error = {"at": now, "method": method, "code": outcome, "cause": cause}

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            cumulative, running = [], 0
            for count in self._buckets:
                running += count
                cumulative.append(running)
            return {
                "requests": dict(self._requests),
                "latency": {
                    "buckets": list(LATENCY_BUCKETS),
                    "cumulative": cumulative,
                    "sum": round(self._sum, 6),
                    "count": self._count,
                },
                "last_success_at": self.last_success_at,
                "last_error": dict(self.last_error) if self.last_error else None,
            }


class HealthReporter:
    """Publishes one function's ``edge-agent/health/1`` message: on a timer, or when pumped.

    ``start()`` runs a daemon thread on wall time (V1, V2, ``run``, real-time
    ``simulate``); ``simulate --fast`` calls :meth:`pump` on its virtual clock
    instead. :meth:`stop` sends the final report. Never raises.
    """

    def __init__(
        self,
        function_id: str,
        device: str,
        publish: Publish,
        collect: Collect,
        clock: Any,
        interval: float = HEALTH_INTERVAL,
    ) -> None:
        self.function_id = function_id
        self.topic = HEALTH_TOPIC.format(function=function_id)
        self.device = device
        self._publish = publish
        self._collect = collect
        self.clock = clock
        self.interval = interval
        self.started_at = clock.time()
        self.seq = 0
        self._last_at: Optional[float] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._warned = False

    def message(self, final: bool) -> Dict[str, Any]:
        message: Dict[str, Any] = {
            "schema": HEALTH_SCHEMA,
            "function": self.function_id,
            "device": self.device,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "ts": self.clock.time(),
            "seq": self.seq,
            "final": final,
        }
        message.update(self._collect())
        return message

    def report(self, final: bool = False) -> bool:
        """Publish a report now; ``False`` (logged) if it could not be built or sent."""
        self.seq += 1
        self._last_at = self.clock.time()
        try:
            self._publish(self.topic, self.message(final))
        except Exception as exc:  # a report must never hurt the function it describes
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "health report on %s not sent: %s", self.topic, type(exc).__name__)
            return False
        return True

    def pump(self) -> None:
        """Report if an interval has passed on the clock (virtual-time runs)."""
        if self._last_at is None or self.clock.time() - self._last_at >= self.interval:
            self.report()

    def start(self) -> HealthReporter:
        def loop() -> None:
            self.report()
            while not self._stop.wait(self.interval):
                self.report()

        self._thread = threading.Thread(target=loop, name="health-" + self.function_id)
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self, final: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if final:
            self.report(final=True)


# -- what each function reports ----------------------------------------------------------


def sensor_collector(service: Any) -> Collect:
    """The sensor function's counters, its period and the limits it judges against."""

    def collect() -> Dict[str, Any]:
        limits = {
            metric: {"upper": lim.upper, "lower": lim.lower, "hysteresis": lim.hysteresis}
            for metric, lim in service.judge.limits.items()
        }
        return {
            # dict() of a Counter is one C-level copy: safe while the loop increments it.
            "counters": dict(service.counts),
            "period": service.settings.period,
            "debounce_samples": service.settings.debounce_samples,
            "limits": limits,
        }

    return collect


def anomaly_collector(service: Any, calls: ServiceNowCalls) -> Collect:
    """The anomaly function's counters, its ServiceNow calls and the state of its credentials."""

    def collect() -> Dict[str, Any]:
        stats = service.deliverer.stats
        counters = dict(service.counts)
        counters.update(
            incidents_opened=stats.opened,
            incidents_reused=stats.reused,
            incidents_updated=stats.noted,
            incidents_resolved=stats.resolved,
            incidents_skipped=stats.skipped,
            retries=stats.retries,
            dead_lettered=stats.dead_lettered,
            auth_failures=stats.auth_failures,
            events_sent=stats.events_sent,
            events_cleared=stats.events_cleared,
            secret_fetches=service.credentials.fetches,
        )
        servicenow = calls.snapshot()
        servicenow["url"] = public_url(service.settings.snow_url)
        servicenow["calls"] = dict(service.client.calls)
        servicenow.update(service.servicenow_notices())
        cached = getattr(service.credentials, "_cached", None)
        return {
            "counters": counters,
            "servicenow": servicenow,
            "credentials": {
                "secret_id": service.credentials.secret_id,
                "fetches": service.credentials.fetches,
                "cached": cached is not None,
                "kind": getattr(cached, "kind", None),
            },
            "paused_until": service.deliverer.paused_until or None,
            **({"site": service.site.snapshot()} if getattr(service, "site", None) else {}),
        }

    return collect


def bridge_collector(bridge: Any) -> Collect:
    """The MQTT bridge's counters (``edge-agent run``/``simulate --mqtt``; a core has its own)."""

    def collect() -> Dict[str, Any]:
        snapshot = bridge.stats().as_dict()
        gauges = {k: snapshot.pop(k) for k in ("pending", "pending_bytes") if k in snapshot}
        gauges["connected"] = 1 if snapshot.pop("connected", False) else 0
        counters = {
            k: v for k, v in snapshot.items() if isinstance(v, int) and not isinstance(v, bool)
        }
        return {"counters": counters, "gauges": gauges}

    return collect


def public_url(url: str) -> str:
    """``scheme://host[:port]/path`` without user, password, query or fragment."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = "[{}]".format(host)
    if parts.port:
        host = "{}:{}".format(host, parts.port)
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


# -- wiring ------------------------------------------------------------------------------


def sensor_reporter(service: Any, publish: Optional[Publish] = None) -> HealthReporter:
    """A reporter for a :class:`agent.sensor_service.SensorService`."""
    return HealthReporter(
        "sensor",
        service.settings.device_id,
        publish or service.runtime.publish,
        sensor_collector(service),
        service.clock,
    )


def anomaly_reporter(service: Any, publish: Optional[Publish] = None) -> HealthReporter:
    """A reporter for an :class:`agent.anomaly_service.AnomalyService`; hooks its client."""
    calls = ServiceNowCalls(service.clock)
    service.client.on_call.append(calls.observe)
    return HealthReporter(
        "anomaly",
        service.settings.device_id,
        publish or service.runtime.publish,
        anomaly_collector(service, calls),
        service.clock,
    )


def start_if_enabled(
    service: Any, function_id: str, environ: Optional[Mapping[str, str]] = None
) -> Optional[HealthReporter]:
    """On a core: start reporting when the group has a status function. Never raises."""
    environ = os.environ if environ is None else environ
    if environ.get(STATUS_SWITCH) != "on":
        return None
    try:
        factory = sensor_reporter if function_id == SENSOR_FUNCTION_ID else anomaly_reporter
        return factory(service).start()
    except Exception:
        log.exception("health reports for the status function could not start")
        return None
