"""A cap on the request rate to ServiceNow (``snowMaxRequestsPerSecond``).

A real instance rate-limits per user and per hour, and an IT team notices an
integration that fires hundreds of requests a second after an outage. The
pacer lets at most ``n`` requests start in any window of ``n / rate`` seconds
(``n`` = the whole part of the rate, at least 1): at 5/s, five requests go out
at once (an episode's few calls are not delayed) and a backlog drains at five a
second. Waiting uses the injected clock, so virtual time stays virtual.
"""

from __future__ import annotations

import collections
import threading
from typing import Deque, Optional

from ..clock import SYSTEM_CLOCK, Clock


class RequestPacer:
    """Blocks in :meth:`acquire` until one more request fits under the cap."""

    def __init__(self, per_second: float, clock: Optional[Clock] = None) -> None:
        if per_second < 0:
            raise ValueError("a request rate cannot be negative")
        self.per_second = per_second
        self.clock = clock or SYSTEM_CLOCK
        self._burst = max(1, int(per_second))
        self._window = self._burst / per_second if per_second else 0.0
        self._started: Deque[float] = collections.deque(maxlen=self._burst)
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait until a request may start; return how long that took (seconds)."""
        if not self.per_second:
            return 0.0  # no cap
        with self._lock:
            now = self.clock.monotonic()
            delay = 0.0
            if len(self._started) == self._burst:
                delay = max(0.0, self._started[0] + self._window - now)
            # Claim the slot before sleeping: another thread queues behind it.
            self._started.append(now + delay)
        if delay > 0:
            self.clock.sleep(delay)
        return delay
