"""Sensor function: reads the Sense HAT, publishes readings and episode events.

Greengrass V1: a pinned Lambda; the loop starts at module load (outside the
handler, as the SDK's examples do) and the handler does nothing.
Greengrass V2: run as a component with ``python3 -m functions.sensor_function``.
Laptop: ``edge-agent simulate`` calls :func:`create_app` with a fake sensor and the
local core; nothing starts on import outside a core.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from agent.clock import Clock
from agent.config import SensorSettings
from agent.errors import AgentError, BadSensorBackend, SensorError
from agent.greengrass import detect_backend, open_runtime
from agent.greengrass.base import Runtime
from agent.sensor_service import SensorService
from agent.sensors import open_sensor
from agent.sensors.base import Sensor
from agent.startup import start_on_core
from agent.topology import SENSOR_FUNCTION_ID

log = logging.getLogger("edge_agent.sensor_function")

app: Optional[SensorService] = None


def create_app(
    environ: Optional[Mapping[str, str]] = None,
    runtime: Optional[Runtime] = None,
    sensor: Optional[Sensor] = None,
    clock: Optional[Clock] = None,
) -> SensorService:
    """Build the service from configuration; explicit arguments beat the environment."""
    import os

    settings = SensorSettings.from_mapping(os.environ if environ is None else environ)
    if sensor is None:
        sensor = open_sensor(clock=clock, compensation_factor=settings.compensation_factor)
    runtime = runtime or open_runtime(SENSOR_FUNCTION_ID)
    # One source of truth: the runtime routes by the topics this function publishes on.
    runtime.route_topics(
        {"readingsTopic": settings.readings_topic, "anomalyTopic": settings.anomaly_topic}
    )
    return SensorService(sensor, runtime, settings, clock=clock)


def function_handler(event: Any, context: Any) -> None:
    """Nothing is routed to this function; the work happens in the loop."""
    return None


def _adopt(service: Any) -> None:
    global app
    app = service
    from agent.status.health import start_if_enabled  # reports for a status function, if any

    start_if_enabled(service, SENSOR_FUNCTION_ID)


def main() -> int:
    """Greengrass V2 component entry point: run the loop in the foreground."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        service = create_app()
    except (SensorError, BadSensorBackend) as exc:
        # A Sense HAT that is absent or unreachable: the message says which part and what to do.
        log.error("sensor function could not start: %s", exc)
        return 1
    except AgentError as exc:  # configuration, state directory: the message says what to do
        log.critical("sensor function could not start: %s", exc)
        return 2
    from agent.status.health import start_if_enabled

    health = start_if_enabled(service, SENSOR_FUNCTION_ID)
    service.run()
    if health is not None:
        health.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
elif detect_backend() == "v1":
    start_on_core(create_app, _adopt, "sensor")
