"""Starting a function's service when a Greengrass V1 core loads its module."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from .errors import ConfigError, SensorError

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 300.0


def start_on_core(
    build: Callable[[], Any], adopt: Callable[[Any], None], label: str, attempt: int = 0
) -> None:
    """Build the service, hand it to ``adopt`` (the module's ``app``) and start it.

    Bad configuration is permanent until a redeploy, so it is logged once and
    the function stays idle: a pinned function that died at load would be
    restarted by the core in a tight loop. Anything else, such as a device not
    ready at boot, is retried with backoff.
    """
    try:
        service = build()
    except ConfigError:
        log.exception("%s function could not start; fix the configuration and redeploy", label)
        return
    except Exception as exc:
        delay = min(MAX_RETRY_DELAY, 5.0 * 2**attempt)
        if isinstance(exc, SensorError):
            # The message names what is absent (a device, a group, a folder): no traceback.
            log.error("%s function could not start; trying again in %.0fs: %s", label, delay, exc)
        else:
            log.exception("%s function could not start; trying again in %.0fs", label, delay)
        timer = threading.Timer(delay, start_on_core, args=(build, adopt, label, attempt + 1))
        timer.daemon = True
        timer.start()
        return
    adopt(service)
    service.start()
