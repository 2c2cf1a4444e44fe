"""Messages from the broker into the group's functions, on a thread of their own.

paho calls ``on_message`` on the bridge's network thread; a function that
takes long (a ServiceNow call, say) must not stall the connection's
keepalive, so messages wait in a bounded queue and a worker hands them on.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Optional, Tuple

log = logging.getLogger("agent.standalone.mqtt_bridge")

DEFAULT_INBOUND_QUEUE = 1000

CloudHandler = Callable[[str, bytes], Any]


class Inbound:
    """A bounded queue and its worker; counts what it delivered and what did not fit."""

    def __init__(self, handler: Optional[CloudHandler], size: int = DEFAULT_INBOUND_QUEUE) -> None:
        self.handler = handler
        self.delivered = 0
        self.dropped = 0
        # (topic, payload); None: stop. An attribute's annotation is never evaluated, so
        # subscripting Queue is fine on Python 3.8 (vermin cannot tell).
        self._queue: queue.Queue[Optional[Tuple[str, bytes]]]  # novermin
        self._queue = queue.Queue(maxsize=size)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="mqtt-bridge-inbound", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, topic: str, payload: bytes) -> None:
        """Called on the network thread: never blocks; a full queue drops (counted, logged)."""
        try:
            self._queue.put_nowait((topic, payload))
        except queue.Full:
            self.dropped += 1
            log.warning("inbound queue full; a message from the cloud on %s was dropped", topic)

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped = True
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stopped:
                return
            topic, payload = item
            if self.handler is None:
                continue
            try:
                self.handler(topic, payload)
            except ValueError:
                log.warning("a message from the cloud on %s is not JSON; dropped", topic)
                continue
            except Exception:
                log.exception("delivering a message from the cloud on %s failed", topic)
                continue
            self.delivered += 1
