"""Starting a function's service when a Greengrass V1 core loads its module."""

from __future__ import annotations

import logging
import threading

from .errors import ConfigError, SensorError
from .state_dir import StateDirLocked

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Callable

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 300.0


def start_on_core(
    build: Callable[[], Any], install: Callable[[Any], None], label: str, attempt: int = 0
) -> None:
    """Build the service, hand it to ``install`` (which makes it the module's ``app``) and start it.

    Bad configuration (an unwritable ``stateDir`` included) is permanent until a
    redeploy, so it is logged once and the function stays idle: a pinned
    function that died at load would be restarted by the core in a tight loop.
    Another process holding the state directory is a real conflict, but may be
    the previous instance still shutting down: retried with backoff, each time
    with an ERROR naming the PID, no traceback. Anything else, such as a device
    not ready at boot, is retried with backoff.
    """
    try:
        service = build()
    except ConfigError as exc:
        # A user error: the message says what to fix; a traceback would bury it.
        log.error(
            "%s function could not start: %s; it stays idle: fix the configuration and redeploy",
            label,
            exc,
        )
        return
    except StateDirLocked as exc:
        # A conflict a person must resolve; the message names the PID: no traceback.
        delay = min(MAX_RETRY_DELAY, 5.0 * 2**attempt)
        log.error("%s function could not start: %s Trying again in %.0fs.", label, exc, delay)
    except SensorError as exc:
        # The message names what is absent (a device, a group, a folder): no traceback.
        delay = min(MAX_RETRY_DELAY, 5.0 * 2**attempt)
        log.error("%s function could not start; trying again in %.0fs: %s", label, delay, exc)
    except Exception:
        delay = min(MAX_RETRY_DELAY, 5.0 * 2**attempt)
        log.exception("%s function could not start; trying again in %.0fs", label, delay)
    else:
        install(service)
        service.start()
        return
    timer = threading.Timer(delay, start_on_core, args=(build, install, label, attempt + 1))
    timer.daemon = True
    timer.start()
