"""Sensor function: reads the Sense HAT, publishes readings and episode events.

Greengrass V1: a pinned Lambda; the loop starts at module load (outside the
handler, as the SDK's examples do); the handler receives what the local shadow
service sends the function (deltas, documents, answers: ``agent.live_config``).
Greengrass V2: run as a component with ``python3 -m functions.sensor_function``;
shadow messages and configuration changes arrive over IPC.
Laptop: ``edge-agent simulate`` calls :func:`create_app` with a fake sensor and the
local core; nothing starts on import outside a core.
"""

from __future__ import annotations

import logging

from agent.clock import Clock, VirtualClock
from agent.config import SensorSettings
from agent.errors import AgentError, BadSensorBackend, GreengrassError, SensorError
from agent.greengrass import detect_backend, open_runtime
from agent.greengrass.base import Runtime
from agent.names import SENSOR_FUNCTION_ID, STATUS_SWITCH
from agent.sensor_service import SensorService
from agent.sensors import open_sensor
from agent.sensors.base import Sensor
from agent.startup import start_on_core

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, Optional, Tuple

    from agent.live_settings import LiveSettings

log = logging.getLogger("edge_agent.sensor_function")

app: Optional[SensorService] = None


def create_app(
    environ: Optional[Mapping[str, str]] = None,
    runtime: Optional[Runtime] = None,
    sensor: Optional[Sensor] = None,
    clock: Optional[Clock] = None,
) -> SensorService:
    """Build the service from configuration; explicit arguments beat the environment.

    The variables that may change at run time come, in order of precedence, from the
    thing's shadow, the component configuration (V2) or the environment, and the
    default (``agent.live_settings``); :func:`start_live_config` starts following them.
    """
    import os

    environ = os.environ if environ is None else environ
    service, layers = _build(environ, runtime, sensor, clock)
    attach_live_config(service, environ, layers)
    return service


def _build(
    environ: Mapping[str, str],
    runtime: Optional[Runtime],
    sensor: Optional[Sensor],
    clock: Optional[Clock],
) -> Tuple[SensorService, Optional[LiveSettings]]:
    """The service without its live configuration: what the first reading needs. The
    layers too where the component configuration gave values (V2), else None."""
    # The environment's check first, before anything opens.
    settings = SensorSettings.from_mapping(environ)
    runtime = runtime or open_runtime(SENSOR_FUNCTION_ID)
    try:
        configuration = runtime.component_configuration()  # V2: read over IPC, not Setenv
    except GreengrassError as exc:  # read again when the subscription to changes starts
        log.warning("starting with the environment's values: %s", exc)
        configuration = None
    layers = None
    if configuration:
        layers = _with_configuration(environ, configuration)
        settings = layers.settings
    if sensor is None:
        sensor = open_sensor(
            clock=clock,
            compensation_factor=settings.compensation_factor,
            i2c_bus=settings.i2c_bus,
        )
    # One source of truth: the runtime routes by the topics this function publishes on.
    runtime.route_topics(
        {"readingsTopic": settings.readings_topic, "anomalyTopic": settings.anomaly_topic}
    )
    return SensorService(sensor, runtime, settings, clock=clock), layers


def _with_configuration(environ: Mapping[str, str], configuration: Any) -> LiveSettings:
    """The layers with the V2 component configuration's values, as for a change while
    running: a value the check refuses is rejected (logged, and reported once the shadow
    is reached), the environment's or the default stays."""
    from agent.live_settings import CONFIGURATION, LiveSettings

    layers = LiveSettings(environ)
    for change in layers.propose(CONFIGURATION, configuration, replace=True).rejected:
        log.warning(
            "sensor variable from the component configuration rejected: %s; %s stays %s",
            change.describe(),
            change.name,
            change.old if change.old is not None else "unset",
        )
    return layers


def attach_live_config(
    service: SensorService, environ: Mapping[str, str], layers: Optional[LiveSettings]
) -> None:
    """Give ``service`` the live configuration that follows its shadow, where the runtime
    has one, with the shadow values saved before a restart back in force."""
    if not service.runtime.shadow_supported:
        return
    from agent.live_config import LiveConfig, thing_name
    from agent.live_settings import LiveSettings

    live_config = LiveConfig(
        service,
        service.runtime,
        layers or LiveSettings(environ),
        thing_name(environ, service.settings.device_id),
        # In virtual time (simulate --fast, tests) a worker's waits would be real:
        # the requests are made inline then, on the local core that never blocks.
        background=not isinstance(service.clock, VirtualClock),
    )
    live_config.restore(service.saved_layers)  # the values in force before a restart
    service.live_config = live_config


def start_live_config(service: SensorService) -> None:
    """Follow the shadow (and the V2 configuration): once the handler can receive."""
    if service.live_config is not None:
        service.live_config.start()


def handler_for(service: SensorService) -> Callable[[Any, Any], None]:
    """The Lambda-style handler of one service (the local core registers it)."""

    def handle(event: Any, context: Any) -> None:
        custom = getattr(getattr(context, "client_context", None), "custom", None) or {}
        topic = custom.get("subject") if isinstance(custom, dict) else None
        if topic and service.live_config is not None:
            service.live_config.on_message(event, topic)

    return handle


def function_handler(event: Any, context: Any) -> None:
    """The local shadow service's messages, routed to this function by the group's
    subscriptions; the readings' work happens in the loop."""
    if app is not None:
        handler_for(app)(event, context)


def _build_on_core() -> SensorService:
    """The service a V1 core's function runs: its live configuration and health reports
    start once its first reading is out (that reading needs neither)."""
    import os

    service, layers = _build(os.environ, None, None, None)
    service.after_first_reading(lambda: _follow(service, os.environ, layers))
    return service


def _follow(
    service: SensorService, environ: Mapping[str, str], layers: Optional[LiveSettings]
) -> None:
    """Follow the shadow (the values saved before a restart judge the first reading too)
    and report health for a status function, if the group has one."""
    attach_live_config(service, environ, layers)
    start_live_config(service)
    if environ.get(STATUS_SWITCH) == "on":
        from agent.status.health import start_if_enabled

        start_if_enabled(service, SENSOR_FUNCTION_ID)


def _install_app(service: Any) -> None:
    """Make ``service`` the ``app`` the V1 handler serves."""
    global app
    app = service


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

    start_live_config(service)
    health = start_if_enabled(service, SENSOR_FUNCTION_ID)
    service.run()
    if health is not None:
        health.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
elif detect_backend() == "v1":
    start_on_core(_build_on_core, _install_app, "sensor")
