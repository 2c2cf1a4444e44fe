"""Clocks. The sensor shim owns one, so a whole simulation can run in virtual time.

Everything that waits or timestamps (the sensor loop, debounce, the outbox's
retry timers) asks a clock instead of the ``time`` module.

A Pi's wall clock steps: it boots at 1970 (no real-time clock) or at
fake-hwclock's saved time, and NTP moves it later, forwards or back. So every
interval (debounce, renotify, back-off, deadlines) is measured on the monotonic
clock; :func:`steady` gives a wall-like time that never steps within a process,
for schedules that are also kept on disk.
"""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False  # the cold-start rule (agent/record.py): typing for mypy only
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    Stoppable = Union[threading.Event, "StopSignal"]


class StopSignal:
    """A stop flag that a waiting loop wakes for at once, cheaply.

    ``threading.Event.wait`` builds a condition's waiter (a new lock, a list entry)
    on every call: 116 µs of CPU per 5 ms wait against 62.5 µs for ``time.sleep``
    (issue 24's figures). Here a loop waits on one lock held until :meth:`set`: a
    single acquire with a timeout, which costs what a sleep does and ends the
    moment the signal is set.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()  # released by set(): from then on every wait returns at once
        self._set = False

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        try:
            self._lock.release()
        except RuntimeError:  # set by two threads at once: released already
            pass

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until set or ``timeout`` seconds (None: no limit); return whether set."""
        if self._set:
            return True
        if self._lock.acquire(True, -1 if timeout is None else timeout):
            self._lock.release()  # stays free for every other waiter
            return True
        return self._set


class Clock:
    """Wall-clock time. ``time()`` is seconds since the epoch."""

    steps = True  # whether time() may jump (NTP, a person setting the date)

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: Stoppable, seconds: float) -> bool:
        """Wait for ``event`` or ``seconds``; return whether the event was set."""
        return event.wait(max(0.0, seconds))

    def unsynchronised(self, now: float) -> bool:
        """Whether the wall time ``now`` (just read) may be wrong: see
        :func:`wall_clock_unsynchronised`."""
        return wall_clock_unsynchronised(now)


class VirtualClock(Clock):
    """Time that moves only when told to: ``sleep`` advances it instantly.

    Used by ``edge-agent simulate --fast`` and by tests, so ten minutes of
    readings, outages and retries take a fraction of a second.
    """

    steps = False

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

    def wait(self, event: Stoppable, seconds: float) -> bool:
        if event.is_set():
            return True
        self.advance(seconds)
        return event.is_set()

    def unsynchronised(self, now: float) -> bool:
        return False  # virtual time is what it says

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._now += seconds

    def advance_to(self, when: float) -> None:
        with self._lock:
            if when > self._now:
                self._now = when


class SteadyClock(Clock):
    """The wall time at start plus the monotonic time since: never steps while the process
    runs. Sleeps and waits are the base clock's."""

    steps = False

    def __init__(self, base: Clock) -> None:
        self.base = base
        self._mono0 = base.monotonic()
        self._wall0 = base.time()

    def time(self) -> float:
        return self._wall0 + (self.base.monotonic() - self._mono0)

    def monotonic(self) -> float:
        return self.base.monotonic()

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds)

    def wait(self, event: Stoppable, seconds: float) -> bool:
        return self.base.wait(event, seconds)

    def unsynchronised(self, now: float) -> bool:
        return self.base.unsynchronised(now)


def steady(clock: Clock) -> Clock:
    """``clock`` itself if its time cannot step (virtual, or already steady), else a
    :class:`SteadyClock` over it."""
    return clock if not clock.steps else SteadyClock(clock)


# adjtimex(2): status bit STA_UNSYNC, and the state it returns while unsynchronised.
STA_UNSYNC = 0x0040
TIME_ERROR = 5
# Before this (2020-01-01) a wall time is surely a clock that was never set.
PLAUSIBLE_WALL_TIME = 1_577_836_800.0
_adjtimex: Any = None  # the libc function once looked up; False: not available here


def wall_clock_unsynchronised(now: Optional[float] = None) -> bool:
    """Whether the wall clock may be wrong: the kernel says it is not synchronised
    (``adjtimex``'s ``STA_UNSYNC``, what ``timedatectl`` shows as "System clock
    synchronized: no"), or ``now`` is before 2020 (never set). Where adjtimex cannot be
    asked (not Linux), only the date is judged."""
    if now is not None and now < PLAUSIBLE_WALL_TIME:
        return True
    return _kernel_says_unsynchronised()


def _kernel_says_unsynchronised() -> bool:
    global _adjtimex
    if _adjtimex is None:
        _adjtimex = _find_adjtimex()
    if _adjtimex is False:
        return False
    buffer, modes, status = _timex
    modes.value = 0  # read only
    try:
        state = _adjtimex(buffer)
    except Exception:  # fail safe: an unknown state is not reported as unset
        return False
    if state < 0:
        return False
    return bool(status.value & STA_UNSYNC) or state == TIME_ERROR


def _find_adjtimex() -> Any:
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes  # deferred: only the sensor function asks, once per reading

        # The process's own symbol table (dlopen(NULL)), so an LD_PRELOAD'ed one is seen.
        function = ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return False
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_char_p]
    global _timex
    # struct timex: unsigned int modes; then long offset, freq, maxerror, esterror; int status.
    long_size = ctypes.sizeof(ctypes.c_long)
    status_offset = long_size + 4 * long_size  # modes padded to a long, then four longs
    # One buffer, larger than any struct timex, with views of its two fields: asked once a
    # reading (by the sensor loop's thread), it is not made anew each time.
    buffer = ctypes.create_string_buffer(512)
    _timex = (
        buffer,
        ctypes.c_uint.from_buffer(buffer, 0),
        ctypes.c_int.from_buffer(buffer, status_offset),
    )
    return function


_timex: Any = None  # (buffer, its modes field, its status field) once adjtimex is found


SYSTEM_CLOCK = Clock()
