"""ServiceNow's inbound REST rate limit: a budget per user per hour, announced on every answer.

An instance with a rate-limit rule sends ``X-RateLimit-Limit`` (requests per
hour), ``X-RateLimit-Reset`` (epoch seconds when the window ends) and
``X-RateLimit-Rule`` (the rule's name) on every answer to a user the rule
covers; there is no remaining-count header. Past the limit it answers 429
with ``Retry-After`` until the window ends. Windows are the clock's hours.
"""

from __future__ import annotations

import threading
from typing import Callable, Dict, Optional, Tuple

from .responses import Response, error_envelope

WINDOW = 3600
DEFAULT_RULE = "edge-agent stand-in rule"
DEFAULT_LIMIT = 100000  # the stand-in's default never bites; tests lower it


class RateRule:
    """Requests per user in the current hour, against ``limit``."""

    def __init__(self, clock: Callable[[], float], limit: Optional[int] = DEFAULT_LIMIT) -> None:
        self._clock = clock
        self.limit = limit  # None: no rule covers the user, and answers carry no X-RateLimit-*
        self.name = DEFAULT_RULE
        self._lock = threading.Lock()
        self._used: Dict[Tuple[str, int], int] = {}

    def take(self, user: str) -> Tuple[Optional[Response], Dict[str, str]]:
        """Count one request by ``user``: (the 429 if over the limit, else None; the headers)."""
        if self.limit is None:
            return None, {}
        now = self._clock()
        window = int(now // WINDOW)
        reset = (window + 1) * WINDOW
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Rule": self.name,
        }
        with self._lock:
            used = self._used.get((user, window), 0) + 1
            self._used = {k: v for k, v in self._used.items() if k[1] == window}
            self._used[(user, window)] = used
        if used <= self.limit:
            return None, headers
        refusal = (
            429,
            error_envelope(
                "Too Many Requests",
                f"Rate limit of {self.limit} requests per hour exceeded (rule '{self.name}')",
            ),
            dict(headers, **{"Retry-After": str(max(1, int(reset - now)))}),
        )
        return refusal, headers
