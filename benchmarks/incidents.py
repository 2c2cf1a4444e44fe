"""Breach-to-incident latency and the outbox drain rate, against the local ServiceNow stand-in.

Both functions are created through their entry modules and wired to one
:class:`~agent.greengrass.local.LocalCore` with the default topology; the
outbox and the episode state are real files in a temporary state directory;
ServiceNow is the stand-in, over real HTTP on loopback, with ``requests``.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from typing import Any, Callable, ContextManager, Dict, List, Optional

from .common import (
    START,
    Pipeline,
    ScriptedSensor,
    WallWaitClock,
    anomaly_message,
    build_pipeline,
    new_password,
    ns_to_ms,
    start_standin,
    summarize,
)

WAIT_LIMIT_S = 30.0


class _CreateTimer:
    """Wraps the client's ``create`` to stamp the moment ServiceNow's 201 has been read."""

    def __init__(self, client: Any) -> None:
        self._create: Callable[[Dict[str, str]], Dict[str, str]] = client.create
        self.stamps: List[int] = []
        self.created = threading.Event()
        client.create = self  # an instance attribute: the deliverer calls client.create(...)

    def __call__(self, fields: Dict[str, str]) -> Dict[str, str]:
        record = self._create(fields)
        self.stamps.append(time.perf_counter_ns())
        self.created.set()
        return record


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.0005)


def _episode(
    pipe: Pipeline, sensor: ScriptedSensor, timer: _CreateTimer, worker: bool
) -> Dict[str, int]:
    """One episode: breach, incident, recovery, resolved; the breach's latencies in ns."""
    app, anomaly, clock = pipe.sensor_app, pipe.anomaly_app, pipe.clock
    period = app.settings.period
    debounce = app.settings.debounce_samples

    def tick() -> List[Any]:
        clock.advance(period)
        return app.tick()

    sensor.hot = True
    for _ in range(debounce - 1):
        tick()
    timer.created.clear()
    clock.advance(period)
    t0 = time.perf_counter_ns()  # just before the confirming sample is read
    events = app.tick()
    t_tick = time.perf_counter_ns()
    if worker:
        if not timer.created.wait(WAIT_LIMIT_S):
            raise RuntimeError("the delivery worker did not create the incident")
        t_confirmed = None
    else:
        anomaly.pump()
        t_confirmed = time.perf_counter_ns()
    if [e.event for e in events] != ["breach"] or not timer.created.is_set():
        raise RuntimeError(f"expected one breach and one incident, got {events}")

    sensor.hot = False
    recovered = False
    for _ in range(debounce):
        recovered = any(e.event == "recovered" for e in tick()) or recovered
    if not recovered:
        raise RuntimeError("the episode did not recover")
    if not worker:
        anomaly.pump()
    _wait_until(lambda: anomaly.next_attempt_at() is None, "the resolve to be delivered")
    result = {"to_201": timer.stamps[-1] - t0, "tick": t_tick - t0}
    if t_confirmed is not None:
        result["to_confirmed"] = t_confirmed - t0
    return result


def measure_breach(
    episodes: int = 200,
    warmup: int = 3,
    worker: bool = True,
    standin_mode: str = "thread",
    region: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
) -> Dict[str, Any]:
    """From just before the tick of the confirming sample to the return of the POST's 201.

    ``worker=True``: the anomaly function's own delivery thread delivers (as on
    a core). ``worker=False``: ``pump()`` right after the tick, in the same
    thread; then ``to_confirmed`` also covers the outbox recording the delivery.
    """
    password = new_password()
    standin = start_standin(password, standin_mode)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-breach-") as state_dir:
            clock = WallWaitClock(start=START)
            sensor = ScriptedSensor(clock)
            pipe = build_pipeline(state_dir, standin.url, password, clock, sensor)
            timer = _CreateTimer(pipe.anomaly_app.client)
            if worker:
                pipe.anomaly_app.start()
            try:
                first = _episode(pipe, sensor, timer, worker)
                for _ in range(warmup - 1):
                    _episode(pipe, sensor, timer, worker)
                calls_before = dict(pipe.anomaly_app.client.calls)
                with region():
                    runs = [_episode(pipe, sensor, timer, worker) for _ in range(episodes)]
                calls = {
                    k: v - calls_before.get(k, 0) for k, v in pipe.anomaly_app.client.calls.items()
                }
                fetches = pipe.anomaly_app.credentials.fetches
            finally:
                pipe.close()
    finally:
        standin.stop()
    result: Dict[str, Any] = {
        "mode": "worker" if worker else "direct",
        "episodes": episodes,
        "to_201_ms": summarize(ns_to_ms(r["to_201"] for r in runs), 3),
        "tick_ms": summarize(ns_to_ms(r["tick"] for r in runs), 3),
        "first_episode_to_201_ms": round(first["to_201"] / 1e6, 3),
        "calls_per_episode": {k: round(v / episodes, 2) for k, v in calls.items()},
        "secret_fetches": fetches,
        "standin": standin_mode,
    }
    if not worker:
        result["to_confirmed_ms"] = summarize(ns_to_ms(r["to_confirmed"] for r in runs), 3)
    return result


def measure_drain(
    actions: int = 1000,
    synchronous: Optional[str] = None,
    warm: bool = True,
    standin_mode: str = "thread",
    region: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
) -> Dict[str, Any]:
    """Queue ``actions`` (an open and a resolve per episode), then time ``pump()`` until empty.

    ``synchronous`` overrides the outbox's ``PRAGMA synchronous`` (a what-if for
    profiling; the default keeps the outbox as shipped). ``warm`` makes the
    requests session and fetches the credentials first, so the rate is the
    steady state, not the first delivery's imports.
    """
    if actions % 2:
        raise ValueError("actions must be even: one open and one resolve per episode")
    password = new_password()
    standin = start_standin(password, standin_mode)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-drain-") as state_dir:
            clock = WallWaitClock(start=START)
            pipe = build_pipeline(state_dir, standin.url, password, clock)
            anomaly = pipe.anomaly_app
            try:
                if synchronous:
                    with anomaly.outbox._lock:
                        anomaly.outbox._db.execute(f"PRAGMA synchronous={synchronous}")
                if warm:
                    anomaly.client.session  # noqa: B018 - imports requests, builds the Session
                    anomaly.credentials.get()
                t0 = time.perf_counter_ns()
                for episode in range(actions // 2):
                    anomaly.handle(anomaly_message(episode))
                    anomaly.handle(anomaly_message(episode, "recovered", seq=1))
                enqueue_ns = time.perf_counter_ns() - t0
                if anomaly.outbox.counts()["pending"] != actions:
                    raise RuntimeError("not every action was queued")
                with region():
                    t0 = time.perf_counter_ns()
                    cpu0 = time.thread_time_ns()
                    finished = 0
                    while anomaly.next_attempt_at() is not None:
                        done = anomaly.pump()
                        if not done:
                            raise RuntimeError("delivery stalled: %s" % anomaly.summary())
                        finished += done
                    drain_ns = time.perf_counter_ns() - t0
                    cpu_ns = time.thread_time_ns() - cpu0
                summary = anomaly.summary()
            finally:
                pipe.close()
    finally:
        standin.stop()
    return {
        "actions": actions,
        "finished": finished,
        "synchronous": synchronous or "as shipped",
        "standin": standin_mode,
        "actions_per_second": round(actions / (drain_ns / 1e9), 1),
        "ms_per_action": round(drain_ns / actions / 1e6, 3),
        "cpu_ms_per_action": round(cpu_ns / actions / 1e6, 3),
        "enqueue_us_per_action": round(enqueue_ns / actions / 1e3, 1),
        "incidents_opened": summary["incidents_opened"],
        "incidents_resolved": summary["incidents_resolved"],
        "servicenow_calls": summary["servicenow_calls"],
    }
