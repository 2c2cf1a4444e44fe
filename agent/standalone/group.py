"""The group on the in-process core: the one runtime of ``edge-agent run``, ``simulate`` and tests.

:class:`LocalGroup` owns what a Greengrass core would own: the core (routing by
the group's topology, the secret resource, the shadow service), the MQTT bridge
standing in for the core's cloud connection, the sensor and anomaly functions,
built through their own entry modules (``functions/``) as a core loads them,
and the status function when the topology has it. Entering it builds them in
that order; :meth:`LocalGroup.stop` ends them in the one order that loses
nothing:

1. the sensor loop and the anomaly function's worker stop (no new message, no
   delivery in flight);
2. the status function gets the final health reports and takes every message;
3. the bridge delivers what waits for the broker, then closes (``mqtt``: its
   final counts);
4. the anomaly function's summary is taken (``anomaly_summary``), then its
   outbox is closed and the state directory's locks are released;
5. the sensor is released.

The status server outlives :meth:`~LocalGroup.stop` until
:meth:`~LocalGroup.close` (``simulate --serve --fast`` serves the finished run);
leaving the ``with`` block closes everything, after an error too.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

from ..anomaly_service import AnomalyService
from ..clock import Clock
from ..greengrass.local import LocalCore
from ..names import ANOMALY_FUNCTION_ID, SENSOR_FUNCTION_ID
from ..sensor_service import SensorService
from ..sensors.base import Sensor
from ..topology import GroupTopology, default_topology
from .mqtt_bridge import BridgeOptions, BridgeStats, MqttBridge
from .status import Line, LocalStatus

log = logging.getLogger(__name__)


def function_environments(
    topology: GroupTopology, *updates: Mapping[str, str]
) -> Tuple[Dict[str, str], Dict[str, str]]:
    """The sensor's and the anomaly function's variables from the topology, plus ``updates``."""
    sensor = dict(topology.function(SENSOR_FUNCTION_ID).environment)
    anomaly = dict(topology.function(ANOMALY_FUNCTION_ID).environment)
    for update in updates:
        sensor.update(update)
        anomaly.update(update)
    return sensor, anomaly


def _log_line(kind: str, text: str) -> None:
    log.info("%s: %s", kind, text)


class LocalGroup:
    """Core, bridge, functions and status service of one group on this machine (see the module).

    ``secret_file`` (the secret's value as Secrets Manager stores it) or
    ``secret_value`` feeds the group's secret resource; ``bridge`` connects
    ``cloud`` to a broker; ``environ_status`` (from
    :func:`agent.standalone.status.status_topology`, whose topology is then
    ``topology``) adds the status function. ``fast``: the caller drives
    delivery and health reports in virtual time (:meth:`AnomalyService.pump`).
    """

    def __init__(
        self,
        environ_sensor: Mapping[str, str],
        environ_anomaly: Mapping[str, str],
        clock: Clock,
        *,
        topology: Optional[GroupTopology] = None,
        sensor: Optional[Sensor] = None,
        secret_file: Optional[str] = None,
        secret_value: Optional[str] = None,
        shadow_path: Optional[str] = None,
        bridge: Optional[BridgeOptions] = None,
        environ_status: Optional[Mapping[str, str]] = None,
        fast: bool = False,
        line: Line = _log_line,
    ) -> None:
        self.topology = topology or default_topology()
        self.clock = clock
        self.core = LocalCore(self.topology, clock=clock, shadow_path=shadow_path)
        secret_name = environ_anomaly.get("snowSecretId") or self.topology.secrets[0].secret_name
        if secret_file:
            self.core.load_secret_file(secret_name, secret_file)
        elif secret_value is not None:
            self.core.add_secret(secret_name, secret_value)
        self._environ_sensor = environ_sensor
        self._environ_anomaly = environ_anomaly
        self._environ_status = environ_status
        self._sensor = sensor
        self._bridge_options = bridge
        self._fast = fast
        self._line = line
        self.bridge: Optional[MqttBridge] = None
        self.status: Optional[LocalStatus] = None
        self.mqtt: Optional[BridgeStats] = None  # the bridge's final counts, after stop()
        self.anomaly_summary: Dict[str, Any] = {}  # taken by stop(), before the outbox closes
        self._sensor_app: Optional[SensorService] = None
        self._anomaly_app: Optional[AnomalyService] = None
        self._started = False
        self._stopped = False

    # -- what it runs ------------------------------------------------------------------
    @property
    def sensor(self) -> SensorService:
        """The sensor function's service (after entering)."""
        if self._sensor_app is None:
            raise RuntimeError("the group is not running: use it in a with block")
        return self._sensor_app

    @property
    def anomaly(self) -> AnomalyService:
        """The anomaly function's service (after entering)."""
        if self._anomaly_app is None:
            raise RuntimeError("the group is not running: use it in a with block")
        return self._anomaly_app

    # -- start and stop ----------------------------------------------------------------
    def open(self) -> LocalGroup:
        """Build the bridge, the functions and the status function; what ``with`` does."""
        try:
            if self._bridge_options is not None:
                from .mqtt_bridge import attach_bridge

                self.bridge = attach_bridge(self.core, self._bridge_options)
            self._build_functions()
            if self._environ_status is not None:
                from .status import attach_status

                self.status = attach_status(
                    self.core,
                    self.clock,
                    self.sensor,
                    self.anomaly,
                    self._environ_status,
                    self._fast,
                    self._line,
                    self.bridge,
                )
        except BaseException:
            self._abandon()
            raise
        return self

    def __enter__(self) -> LocalGroup:
        return self.open()

    def _build_functions(self) -> None:
        """Create both functions as a core loads them and register their handlers."""
        from functions import anomaly_function, sensor_function

        self._sensor_app = sensor_function.create_app(
            environ=self._environ_sensor,
            runtime=self.core.runtime_for(SENSOR_FUNCTION_ID),
            sensor=self._sensor,
            clock=self.clock,
        )
        self._anomaly_app = anomaly_function.create_app(
            environ=self._environ_anomaly,
            runtime=self.core.runtime_for(ANOMALY_FUNCTION_ID),
            clock=self.clock,
        )
        self.core.register(SENSOR_FUNCTION_ID, sensor_function.handler_for(self._sensor_app))
        self.core.register(ANOMALY_FUNCTION_ID, self._anomaly_app.function_handler)
        # Once its handler is registered: the shadow service answers the first read to it.
        sensor_function.start_live_config(self._sensor_app)

    def start(self) -> None:
        """Real time: start the anomaly function's delivery worker (its loop is the caller's)."""
        self.anomaly.start()
        self._started = True

    def stop(self, final_reports: bool = True) -> None:
        """End the functions, flush the bridge, take the summary, release the state (in order).

        ``final_reports``: give the status function its final health reports first
        (not after an error). Does nothing the second time.
        """
        if self._stopped:
            return
        self._stopped = True
        sensor_app, anomaly_app = self._sensor_app, self._anomaly_app
        try:
            if sensor_app is not None:
                sensor_app.stop(timeout=0)
            if anomaly_app is not None:
                anomaly_app.stop()
            if self.status is not None and final_reports:
                self.status.finish()
        finally:
            if self.bridge is not None:
                self.mqtt = self.bridge.close()  # its losses are logged by the bridge
            if anomaly_app is not None:
                self.anomaly_summary = anomaly_app.summary()
                anomaly_app.close()  # the outbox, and the state directory's lock
            if sensor_app is not None:
                try:
                    sensor_app.sensor.close()
                except Exception:
                    log.debug("closing the sensor failed", exc_info=True)
                sensor_app.close()

    def close(self) -> None:
        """:meth:`stop` if not yet, then stop the status server."""
        try:
            self.stop(final_reports=False)
        finally:
            if self.status is not None:
                self.status.close()

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.stop()
        self.close()

    def _abandon(self) -> None:
        """A failed start: close what was opened, without waiting for the broker."""
        if self.bridge is not None:
            self.bridge.close(timeout=0)
            self.bridge = None
        self._stopped = True
        if self._anomaly_app is not None:
            self._anomaly_app.close()
        if self._sensor_app is not None:
            self._sensor_app.close()
