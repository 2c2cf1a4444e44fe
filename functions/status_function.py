"""Status function: the live page, ``/api/state``, ``/metrics`` and ``/healthz`` (off by default).

In the group only when its ``statusPort`` is set (``agent.topology``). Greengrass
V1: pinned; the HTTP server starts at module load (outside the handler, like
the sensor's loop) and ``function_handler`` receives the subscribed readings,
episode events and health reports. Greengrass V2: ``python3 -m
functions.status_function`` subscribes to the same topics through IPC.
Laptop: ``edge-agent simulate --serve`` and ``edge-agent run --status`` call
:func:`create_app`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Mapping, Optional

from agent.clock import Clock
from agent.errors import AgentError
from agent.greengrass import detect_backend, open_runtime
from agent.names import STATUS_FUNCTION_ID
from agent.startup import start_on_core
from agent.status.service import StatusService
from agent.status.settings import StatusSettings

log = logging.getLogger("edge_agent.status_function")

app: Optional[StatusService] = None


def create_app(
    environ: Optional[Mapping[str, str]] = None, clock: Optional[Clock] = None
) -> StatusService:
    """Build the service and bind its port (an ``OSError`` names the address if taken)."""
    import os

    settings = StatusSettings.from_mapping(os.environ if environ is None else environ)
    service = StatusService(settings, clock=clock)
    service.bind()
    return service


def function_handler(event: Any, context: Any) -> None:
    """Greengrass V1 handler for the readings, episode events and health reports."""
    if app is not None:
        app.function_handler(event, context)


def _install_app(service: Any) -> None:
    """Make ``service`` the ``app`` the V1 handler serves."""
    global app
    app = service


def main() -> int:
    """Greengrass V2 component entry point: subscribe, serve until stopped."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        service = create_app()
    except (AgentError, OSError) as exc:  # bad settings, or the port is taken: say which
        log.critical("status function could not start: %s", exc)
        return 2
    runtime = open_runtime(STATUS_FUNCTION_ID)
    for topic in service.settings.topics():
        runtime.subscribe(topic, service.handle)
    service.start()
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
elif detect_backend() == "v1":
    start_on_core(create_app, _install_app, "status")
