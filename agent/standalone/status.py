"""The status function on the in-process core: ``simulate --serve`` and ``run --status``.

The same function code as on a core (``functions/status_function.py``), wired
the way a core wires it: the topology gains the status function and its local
subscriptions, the core delivers to it from a queue on its own thread (so the
sensor path only pays an enqueue), and the sensor and anomaly functions send
their ``edge-agent/health/1`` reports through their runtimes. The MQTT bridge,
which is not a function (a core has its own spooler), reports its counters
straight to the status function in the same format.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from ..anomaly_service import AnomalyService
from ..clock import Clock
from ..greengrass.local import LocalCore
from ..sensor_service import SensorService
from ..status.health import HealthReporter, anomaly_reporter, bridge_collector, sensor_reporter
from ..status.settings import parse_address
from ..topology import (
    SENSOR_FUNCTION_ID,
    STATUS_FUNCTION_ID,
    GroupTopology,
    with_status_function,
)

if TYPE_CHECKING:
    from ..status.service import StatusService
    from .mqtt_bridge import MqttBridge

Line = Callable[[str, str], None]


def status_topology(
    topology: GroupTopology, address: str, *updates: Mapping[str, str]
) -> Tuple[GroupTopology, Dict[str, str]]:
    """The group with the status function listening on ``[HOST:]PORT``, and its variables.

    ``updates`` are the command line's variables (``stateDir``, ``--set``), applied
    to the status function as they are to the other two.
    """
    host, port = parse_address(address)
    variables: Dict[str, str] = {}
    for update in updates:
        variables.update(update)
    variables.update(statusPort=str(port), statusBind=host)
    sensor_state_dir = topology.function(SENSOR_FUNCTION_ID).environment.get("stateDir")
    if "stateDir" not in variables and sensor_state_dir:
        variables["stateDir"] = sensor_state_dir
    with_status = with_status_function(topology, variables)
    return with_status, dict(with_status.function(STATUS_FUNCTION_ID).environment)


class LocalStatus:
    """The status function and the health reporters of one local group."""

    def __init__(
        self, app: StatusService, core: LocalCore, reporters: List[HealthReporter], fast: bool
    ) -> None:
        self.app = app
        self.core = core
        self.reporters = reporters
        self.fast = fast
        self._closed = False

    @property
    def url(self) -> Optional[str]:
        return self.app.url

    def pump(self, *_: Any) -> None:
        """Virtual time: report whatever is due on the simulation's clock."""
        for reporter in self.reporters:
            reporter.pump()

    def finish(self) -> None:
        """Final reports, then wait until the status function has taken every message."""
        for reporter in self.reporters:
            if self.fast:
                reporter.report(final=True)
            else:
                reporter.stop(final=True)
        self.core.wait_idle(STATUS_FUNCTION_ID)

    def close(self) -> None:
        """Stop serving (once; a second call does nothing)."""
        if not self._closed:
            self._closed = True
            self.app.stop()

    def after_run(
        self,
        summary: Dict[str, Any],
        on_finished: Optional[Callable[[Dict[str, Any]], None]],
        keep_serving: bool,
        line: Line,
    ) -> None:
        """Hand over the summary; with ``keep_serving``, serve on until Ctrl-C or SIGTERM."""
        from .exit_codes import meaning

        code = summary.get("exit_code", 0)
        self.app.run_ended(code, meaning(code))
        try:
            if on_finished is not None:
                on_finished(summary)
            if keep_serving:
                line("status", "run finished; still serving {} (Ctrl-C to stop)".format(self.url))
                why = wait_for_stop()
                line("status", "stopped serving ({})".format(why))
        finally:
            self.close()


def attach_status(
    core: LocalCore,
    clock: Clock,
    sensor_app: SensorService,
    anomaly_app: AnomalyService,
    environ: Mapping[str, str],
    fast: bool,
    line: Line,
    bridge: Optional[MqttBridge] = None,
) -> LocalStatus:
    """Start the status function on ``core`` and the health reports of the group's functions."""
    from functions import status_function

    app = status_function.create_app(environ=environ, clock=clock)
    core.register(STATUS_FUNCTION_ID, app.function_handler, queued=True)
    reporters = [sensor_reporter(sensor_app), anomaly_reporter(anomaly_app)]
    if bridge is not None:
        reporters.append(
            HealthReporter(
                "mqtt-bridge",
                sensor_app.settings.device_id,
                lambda topic, message: _handle(app, topic, message),
                bridge_collector(bridge),
                clock,
            )
        )
    status = LocalStatus(app, core, reporters, fast)
    app.start()
    if fast:
        # Virtual time moves with readings and with deliveries (a drain has no readings).
        sensor_app.on_reading.append(status.pump)
        anomaly_app.deliverer.on_outcome.append(status.pump)
    else:
        for reporter in reporters:
            reporter.start()
    line("status", "serving {}".format(app.url))
    return status


def _handle(app: StatusService, topic: str, message: Dict[str, Any]) -> None:
    app.handle(message, topic)


def wait_for_stop() -> str:
    """Block until Ctrl-C or SIGTERM; return which."""
    stop = threading.Event()
    why: Dict[str, str] = {}

    def on_sigterm(signum: int, frame: Any) -> None:
        why.setdefault("why", "SIGTERM")
        stop.set()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        why.setdefault("why", "Ctrl-C")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return why.get("why", "stopped")
