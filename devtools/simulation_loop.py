"""The simulation's loops: readings at their times, deliveries in between, progress lines.

In virtual time (``--fast``) the loop itself delivers, each retry at its own
time (:func:`deliver_until`); in real time the anomaly function's worker
thread does, and the loop sleeps in slices so that progress lines and outages
keep their times however far apart readings are.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Sequence, Tuple, Union

from agent.clock import Clock, VirtualClock
from devtools.console import Console

REAL_DRAIN_LIMIT_S = 60.0  # wall seconds to wait for the outbox after a real-time run
SLEEP_SLICE_S = 0.5


class ShiftedClock(Clock):
    """Real time, moved by ``offset`` seconds: a real-time replay runs on the file's clock."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset


def round_start(now: float) -> float:
    return float(int(now // 60 * 60))


def tick_times(
    sensor: Any,
    start: float,
    duration: float,
    period: Union[float, Callable[[], float]],
    replay: bool,
) -> Iterator[float]:
    """When each reading is taken: every ``period`` seconds (a callable: the period in force,
    which a shadow change may alter between readings), or at the replay's own timestamps."""
    if replay:
        end = start + duration
        while True:
            at = sensor.next_ts()
            if at is None or at > end:
                return
            yield at
    every = period if callable(period) else (lambda: period)
    current = every()
    base, i = start, 0
    while True:
        at = base + i * current
        # 1.2 s at 0.1 s is 12 readings, although 1.2 // 0.1 == 11.0 in floating point.
        if at - start >= duration - 1e-9 * max(1.0, duration):
            return
        yield at
        if every() != current:  # from this reading on, the new period
            base, i, current = at, 0, every()
        i += 1


def outage_switch(
    standin: Any, outages: Sequence[Tuple[float, float]], start: float, console: Console
) -> Callable[[float], None]:
    """A function of the clock that takes the stand-in down during the given windows."""
    state = {"down": False}

    def update(now: float) -> None:
        if standin is None or not outages:
            return
        down = any(a <= now - start < b for a, b in outages)
        if down != state["down"]:
            state["down"] = down
            standin.faults.down = down
            console.line("outage", "ServiceNow is {}".format("DOWN" if down else "back"))

    return update


def deliver_until(
    clock: VirtualClock, anomaly_app: Any, until: float, set_down: Callable[[float], None]
) -> bool:
    """Deliver in virtual time, each retry at its own time, up to ``until``; True when nothing is left."""
    while True:
        set_down(clock.time())
        anomaly_app.pump()
        next_at = anomaly_app.next_attempt_at()
        if next_at is None:
            return True
        if next_at >= until:
            return False
        clock.advance_to(max(next_at, clock.time() + 0.001))  # always make progress


def run_virtual(
    clock: VirtualClock,
    sensor_app: Any,
    anomaly_app: Any,
    ticks: Iterator[float],
    end: float,
    drain_timeout: float,
    set_down: Callable[[float], None],
    console: Console,
    progress: Callable[[], str],
) -> bool:
    for at in ticks:
        deliver_until(clock, anomaly_app, at, set_down)  # retries due before this reading
        clock.advance_to(at)
        set_down(at)
        if not tick(sensor_app, console):
            break
        console.progress(progress)
    deliver_until(clock, anomaly_app, end, set_down)
    clock.advance_to(end)
    return deliver_until(clock, anomaly_app, clock.time() + drain_timeout, set_down)


def run_real(
    clock: Clock,
    sensor_app: Any,
    anomaly_app: Any,
    ticks: Iterator[float],
    end: float,
    set_down: Callable[[float], None],
    console: Console,
    progress: Callable[[], str],
) -> bool:
    for at in ticks:
        sleep_until(clock, at, set_down, console, progress)
        set_down(clock.time())
        if not tick(sensor_app, console):
            break
        console.progress(progress)
    sleep_until(clock, end, set_down, console, progress)
    deadline = time.monotonic() + REAL_DRAIN_LIMIT_S
    while anomaly_app.next_attempt_at() is not None and time.monotonic() < deadline:
        anomaly_app.wake()
        time.sleep(0.1)
        console.progress(
            lambda: "waiting for ServiceNow: {} actions queued".format(
                anomaly_app.outbox.counts()["pending"]
            )
        )
    return anomaly_app.next_attempt_at() is None


def sleep_until(
    clock: Clock,
    at: float,
    set_down: Callable[[float], None],
    console: Console,
    progress: Callable[[], str],
) -> None:
    # In slices, so progress lines and outages keep their times while readings are far apart.
    while True:
        left = at - clock.time()
        if left <= 0:
            return
        clock.sleep(min(left, SLEEP_SLICE_S))
        set_down(clock.time())
        console.progress(progress)


def tick(sensor_app: Any, console: Console) -> bool:
    try:
        sensor_app.tick()
    except EOFError:
        return False
    console.after_tick(sensor_app.counts["sensor_errors"])
    return True


def progress_text(elapsed: float, total: float, sensor_app: Any, fast: bool) -> str:
    episodes = sensor_app.judge.open_episodes()
    text = "{} of {} simulated ({:.0f}%), {} readings, {} open episode{}{}".format(
        clock_text(elapsed),
        clock_text(total),
        100.0 * min(elapsed, total) / total if total else 100.0,
        sensor_app.counts["readings"],
        len(episodes),
        "" if len(episodes) == 1 else "s",
        " ({})".format(", ".join(sorted(episodes))) if episodes else "",
    )
    if not fast and total > elapsed:
        text += ", {} to go".format(clock_text(total - elapsed))
    return text


def clock_text(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return (
        "{}:{:02d}:{:02d}".format(hours, *divmod(rest, 60))
        if hours
        else "{}:{:02d}".format(*divmod(rest, 60))
    )
