"""Clocks. The sensor shim owns one, so a whole simulation can run in virtual time.

Everything that waits or timestamps (the sensor loop, debounce, the outbox's
retry timers) asks a clock instead of the ``time`` module.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall-clock time. ``time()`` is seconds since the epoch."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait for ``event`` or ``seconds``; return whether the event was set."""
        return event.wait(max(0.0, seconds))


class VirtualClock(Clock):
    """Time that moves only when told to: ``sleep`` advances it instantly.

    Used by ``edge-agent simulate --fast`` and by tests, so ten minutes of
    readings, outages and retries take a fraction of a second.
    """

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self._now = float(start)
        self._start = float(start)
        self._lock = threading.Lock()

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._start

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.advance(seconds)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._now += seconds

    def advance_to(self, when: float) -> None:
        with self._lock:
            if when > self._now:
                self._now = when


SYSTEM_CLOCK = Clock()
