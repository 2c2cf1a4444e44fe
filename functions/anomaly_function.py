"""Anomaly function: turns episode events into ServiceNow incidents, through a durable outbox.

Greengrass V1: pinned (see ``agent.anomaly_service`` for why); the delivery
worker starts at module load and ``function_handler`` receives the subscribed
anomaly messages. Greengrass V2: ``python3 -m functions.anomaly_function``
subscribes through IPC. Laptop: ``edge-agent simulate`` calls :func:`create_app`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Mapping, Optional

from agent.anomaly_service import AnomalyService
from agent.clock import Clock
from agent.config import AnomalySettings
from agent.errors import AgentError
from agent.greengrass import detect_backend, open_runtime
from agent.greengrass.base import Runtime
from agent.names import ANOMALY_FUNCTION_ID
from agent.startup import start_on_core

log = logging.getLogger("edge_agent.anomaly_function")

app: Optional[AnomalyService] = None


def create_app(
    environ: Optional[Mapping[str, str]] = None,
    runtime: Optional[Runtime] = None,
    clock: Optional[Clock] = None,
    **kwargs: Any,
) -> AnomalyService:
    """Build the service from configuration; explicit arguments beat the environment."""
    import os

    settings = AnomalySettings.from_mapping(os.environ if environ is None else environ)
    runtime = runtime or open_runtime(ANOMALY_FUNCTION_ID)
    runtime.route_topics({"anomalyTopic": settings.anomaly_topic})
    return AnomalyService(settings, runtime, clock=clock, **kwargs)


def function_handler(event: Any, context: Any) -> None:
    """Greengrass V1 handler for messages on the anomaly topic."""
    if app is None:
        log.error("anomaly function is not configured; message dropped (see the load error)")
        return
    app.function_handler(event, context)


def _install_app(service: Any) -> None:
    """Make ``service`` the ``app`` the V1 handler serves; start its health reports."""
    global app
    app = service
    from agent.status.health import start_if_enabled  # reports for a status function, if any

    start_if_enabled(service, ANOMALY_FUNCTION_ID)


def main() -> int:
    """Greengrass V2 component entry point: subscribe and deliver until stopped."""

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        service = create_app()
    except AgentError as exc:  # configuration, state directory: the message says what to do
        log.critical("anomaly function could not start: %s", exc)
        return 2
    from agent.status.health import start_if_enabled

    start_if_enabled(service, ANOMALY_FUNCTION_ID)
    service.runtime.subscribe(service.settings.anomaly_topic, service.handle)
    if service.settings.site:  # a site gateway also hears its devices' readings (silence)
        service.runtime.subscribe(service.settings.readings_topic, service.handle)
    service.start()
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
elif detect_backend() == "v1":
    start_on_core(create_app, _install_app, "anomaly")
