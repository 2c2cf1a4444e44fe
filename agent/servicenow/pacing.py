"""Pacing of the requests to ServiceNow: a cap on the rate, and the hourly budget it announces.

* ``snowMaxRequestsPerSecond``: a real instance rate-limits per user and per
  hour, and an IT team notices an integration that fires hundreds of requests
  a second after an outage. The pacer lets at most ``n`` requests start in any
  window of ``n / rate`` seconds (``n`` = the whole part of the rate, at least
  1): at 5/s, five requests go out at once (an episode's few calls are not
  delayed) and a backlog drains at five a second.
* The budget: an instance with a rate-limit rule sends ``X-RateLimit-Limit``
  (requests per hour), ``X-RateLimit-Reset`` (epoch seconds when the window
  ends) and ``X-RateLimit-Rule`` on every answer, and no remaining count. The
  pacer counts its own requests in the window (:class:`RateBudget`); while more
  than a fifth of the limit is left nothing changes, below that the rest is
  spread evenly until the reset, so the 429 never comes. A wait longer than
  :data:`LONGEST_PACED_WAIT` is not slept: :class:`BudgetSpent` tells delivery
  to put everything off until then, as a 429 would.

Waiting uses the injected clock, so virtual time stays virtual.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Deque, Dict, Optional

from ..clock import SYSTEM_CLOCK, Clock

RESERVE_SHARE = 0.2  # below this share of the hourly limit left, requests are spread out
LONGEST_PACED_WAIT = 5.0  # seconds the pacer sleeps at most; longer waits go back to delivery


class BudgetSpent(Exception):
    """Too little of ServiceNow's hourly budget is left to send now: wait ``delay`` seconds."""

    def __init__(self, delay: float, remaining: Optional[int], limit: int) -> None:
        super().__init__(
            "{} of {} requests left in ServiceNow's hourly rate limit; pacing: next in {:.0f}s".format(
                remaining, limit, delay
            )
        )
        self.delay = delay


class RateBudget:
    """What ``X-RateLimit-*`` announced, and this client's requests in the current window."""

    def __init__(self) -> None:
        self.limit = 0  # requests per hour; read only once reset is set
        self.reset: Optional[float] = None  # None: no answer announced a limit yet
        self.rule = ""
        self.used = 0
        self.last_start = float("-inf")  # wall time the last request started

    def observe(self, headers: Any) -> None:
        """Read an answer's headers (``headers.get``); answers without them change nothing."""
        try:
            limit = int(headers.get("X-RateLimit-Limit"))  # int(None): TypeError
            reset = float(headers.get("X-RateLimit-Reset"))
        except (TypeError, ValueError):
            return
        if reset != self.reset:
            self.used = 0  # a new window (or the first answer that says so)
        self.limit, self.reset = limit, reset
        self.rule = headers.get("X-RateLimit-Rule") or ""
        self.used += 1

    def remaining(self, now: float) -> Optional[int]:
        return None if self.reset is None else self._left(now, self.reset)

    def _left(self, now: float, reset: float) -> int:
        if now >= reset:
            return self.limit  # the window ended: a new budget
        return max(0, self.limit - self.used)

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request so the rest lasts until the reset."""
        reset = self.reset
        if reset is None:
            return 0.0
        remaining = self._left(now, reset)
        if remaining > max(1, int(self.limit * RESERVE_SHARE)):
            return 0.0
        if remaining <= 0:
            return reset - now
        # Evenly spaced, the last one still inside the window.
        return max(0.0, self.last_start + (reset - now) / (remaining + 1) - now)

    def snapshot(self, now: float) -> Optional[Dict[str, Any]]:
        """``{"limit", "remaining", "reset", "rule"}`` for ``status``; ``None`` before any."""
        if self.reset is None:
            return None
        return {
            "limit": self.limit,
            "remaining": self._left(now, self.reset),
            "reset": self.reset if now < self.reset else None,
            "rule": self.rule,
        }


class RequestPacer:
    """Blocks in :meth:`acquire` until one more request fits under the cap and the budget."""

    def __init__(self, per_second: float, clock: Optional[Clock] = None) -> None:
        if per_second < 0:
            raise ValueError("a request rate cannot be negative")
        self.per_second = per_second
        self.clock = clock or SYSTEM_CLOCK
        self.budget = RateBudget()
        self._burst = max(1, int(per_second))
        self._started: Deque[float] = collections.deque(maxlen=self._burst)
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait until a request may start; return how long that took (seconds). Raise
        :class:`BudgetSpent` instead of a wait longer than :data:`LONGEST_PACED_WAIT`."""
        with self._lock:
            now = self.clock.monotonic()
            wall = self.clock.time()
            spread = self.budget.delay(wall)
            if spread > LONGEST_PACED_WAIT:
                raise BudgetSpent(spread, self.budget.remaining(wall), self.budget.limit)
            delay = spread
            if self.per_second and len(self._started) == self._burst:
                delay = max(delay, self._started[0] + self._burst / self.per_second - now)
            # Claim the slot before sleeping: another thread queues behind it.
            if self.per_second:
                self._started.append(now + delay)
            self.budget.last_start = wall + delay
        self.clock.sleep(delay)  # 0: no wait (both clocks)
        return delay
