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
from agent.errors import ConfigError
from agent.greengrass import detect_backend, open_runtime
from agent.greengrass.base import Runtime
from agent.topology import ANOMALY_FUNCTION_ID

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
    return AnomalyService(settings, runtime, clock=clock, **kwargs)


def function_handler(event: Any, context: Any) -> None:
    """Greengrass V1 handler for messages on the anomaly topic."""
    if app is None:
        log.error("anomaly function is not configured; message dropped (see the load error)")
        return
    app.function_handler(event, context)


def _start_on_core(attempt: int = 0) -> None:
    """What loading the module on a core does: build the service and start it.

    Bad configuration is permanent until a redeploy, so it is logged once and
    the function stays idle (a pinned function that died at load would be
    restarted by the core in a tight loop). Anything else, such as a device
    not ready at boot, is retried with backoff.
    """
    global app
    try:
        app = create_app()
    except ConfigError:
        log.exception("anomaly function could not start; fix the configuration and redeploy")
        return
    except Exception:
        delay = min(300.0, 5.0 * 2**attempt)
        log.exception("anomaly function could not start; trying again in %.0fs", delay)
        timer = threading.Timer(delay, _start_on_core, args=(attempt + 1,))
        timer.daemon = True
        timer.start()
        return
    app.start()


def main() -> int:
    """Greengrass V2 component entry point: subscribe and deliver until stopped."""
    import threading

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    service = create_app()
    service.runtime.subscribe(service.settings.anomaly_topic, service.handle)
    service.start()
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
elif detect_backend() == "v1":
    _start_on_core()
