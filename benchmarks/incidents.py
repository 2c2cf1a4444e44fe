"""Breach-to-incident latency (project and seed) and the outbox drain, against one server.

Both run on the V1 device path (:mod:`benchmarks.pipelines`) against whichever
ServiceNow server they are given (:mod:`benchmarks.servers`).

* **project**: from just before the tick that reads the confirming sample
  (the third breaching one, with the default debounce) to the moment the
  POST's ``201`` has been read by the anomaly function's delivery worker. In
  between: judge, two atomic state-file writes, publish, routing, the
  handler's synced enqueue, the worker's wake-up, a GET for an incident left
  by a crash, the POST. The episode then recovers and its resolve (PATCH) is
  delivered before the next one starts.
* **seed**: from just before the read of a breaching sample to the moment the
  anomaly function prints the POST's ``201``: read, the 5 s sleep (virtual
  here, so 0), publish, routing, the secret fetch, a new connection, the POST.
* **drain**: actions queued through the anomaly function's handler (an open
  and a resolve per episode), then ``pump()`` until none is pending; an open
  costs a GET and a POST, a resolve a GET and a PATCH: 2 calls per action.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from typing import Any, Callable, ContextManager, Dict, List

from .common import START, WallWaitClock, anomaly_message, ns_to_ms, summarize
from .pipelines import ProjectPipeline, SeedPipeline
from .servers import Server

WAIT_LIMIT_S = 60.0


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


def _project_episode(pipe: ProjectPipeline, timer: _CreateTimer) -> Dict[str, int]:
    """One episode: breach, incident, recovery, resolved; the breach's latencies in ns."""
    app, clock = pipe.sensor, pipe.clock
    period, debounce = app.settings.period, app.settings.debounce_samples

    def tick() -> List[Any]:
        clock.advance(period)
        return app.tick()

    pipe.set_hot(True)
    for _ in range(debounce - 1):
        tick()
    timer.created.clear()
    clock.advance(period)
    t0 = time.perf_counter_ns()  # just before the confirming sample is read
    events = app.tick()
    t_tick = time.perf_counter_ns()
    if not timer.created.wait(WAIT_LIMIT_S):
        raise RuntimeError("the delivery worker did not create the incident")
    if [e.event for e in events] != ["breach"]:
        raise RuntimeError(f"expected one breach, got {events}")
    pipe.set_hot(False)
    recovered = False
    for _ in range(debounce):
        recovered = any(e.event == "recovered" for e in tick()) or recovered
    if not recovered:
        raise RuntimeError("the episode did not recover")
    _wait_until(lambda: pipe.anomaly.next_attempt_at() is None, "the resolve to be delivered")
    return {"to_201": timer.stamps[-1] - t0, "tick": t_tick - t0}


def measure_project_breach(
    server: Server,
    episodes: int = 200,
    warmup: int = 3,
    quick_ack: bool = False,
    region: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-breach-") as state_dir:
        pipe = ProjectPipeline(state_dir, server, WallWaitClock(start=START), quick_ack=quick_ack)
        timer = _CreateTimer(pipe.anomaly.client)
        pipe.anomaly.start()
        try:
            first = _project_episode(pipe, timer)
            for _ in range(warmup - 1):
                _project_episode(pipe, timer)
            calls_before = dict(pipe.anomaly.client.calls)
            fetches_before = pipe.secret_fetches
            with region():
                runs = [_project_episode(pipe, timer) for _ in range(episodes)]
            calls = {k: v - calls_before.get(k, 0) for k, v in pipe.anomaly.client.calls.items()}
            fetches = pipe.secret_fetches - fetches_before
        finally:
            pipe.close()
    return {
        "server": server.name,
        "client": "TCP_QUICKACK before each response (what-if)" if quick_ack else "as shipped",
        "episodes": episodes,
        "to_201_ms": summarize(ns_to_ms(r["to_201"] for r in runs), 3),
        "tick_ms": summarize(ns_to_ms(r["tick"] for r in runs), 3),
        "first_episode_to_201_ms": round(first["to_201"] / 1e6, 3),
        "calls_per_episode": {k: round(v / episodes, 2) for k, v in calls.items() if v},
        "secret_fetches_per_episode": round(fetches / episodes, 3),
    }


def measure_seed_breach(server: Server, samples: int = 200, warmup: int = 3) -> Dict[str, Any]:
    """The seed's latency per breaching sample, with its 5 s sleep virtual (0 s)."""
    pipe = SeedPipeline(server)
    pipe.set_hot(True)
    for _ in range(warmup):
        pipe.sample()
    latencies = []
    for _ in range(samples):
        posted = pipe.posts
        t0 = time.perf_counter_ns()
        pipe.sample()
        if pipe.posts != posted + 1:
            raise RuntimeError("a breaching sample did not make exactly one POST")
        latencies.append(pipe.log.responses[-1][1] - t0)
    statuses = pipe.log.statuses()[warmup:]
    if any(status != 201 for status in statuses):
        raise RuntimeError(f"the seed's POSTs were answered {sorted(set(statuses))}")
    return {
        "server": server.name,
        "samples": samples,
        "sleep": "virtual (0 s); on a device every figure here is 5 s more",
        "to_201_ms": summarize(ns_to_ms(latencies), 3),
        "posts_per_breaching_sample": round((pipe.posts - warmup) / samples, 3),
        "secret_fetches_per_breaching_sample": round((pipe.secret_fetches - warmup) / samples, 3),
    }


def measure_seed_breach_with_sleep(server: Server, samples: int = 3) -> Dict[str, Any]:
    """The same with the blog's real 5 s sleep: what a device shows (long: 5 s a sample)."""
    pipe = SeedPipeline(server, sleep=time.sleep)
    pipe.set_hot(True)
    latencies = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        pipe.sample()
        latencies.append(pipe.log.responses[-1][1] - t0)
    return {
        "server": server.name,
        "samples": samples,
        "sleep": "the blog's 5 s, real",
        "to_201_ms": summarize(ns_to_ms(latencies), 3),
    }


def measure_drain(
    server: Server,
    actions: int = 1000,
    quick_ack: bool = False,
    synchronous: Any = None,
    region: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
) -> Dict[str, Any]:
    """Queue ``actions`` (an open and a resolve per episode), then time ``pump()`` until empty.

    ``synchronous`` overrides the outbox's ``PRAGMA synchronous`` (a what-if for
    profiling). The requests session is made and the credentials fetched first,
    so the rate is the steady state, not the first delivery's imports.
    """
    if actions % 2:
        raise ValueError("actions must be even: one open and one resolve per episode")
    with tempfile.TemporaryDirectory(prefix="bench-drain-") as state_dir:
        pipe = ProjectPipeline(
            state_dir, server, WallWaitClock(start=START), with_sensor=False, quick_ack=quick_ack
        )
        anomaly = pipe.anomaly
        try:
            if synchronous:
                with anomaly.outbox._lock:
                    anomaly.outbox._db.execute(f"PRAGMA synchronous={synchronous}")
            anomaly.client.session  # noqa: B018 - imports requests, builds the Session
            anomaly.credentials.get()
            t0 = time.perf_counter_ns()
            for episode in range(actions // 2):
                anomaly.handle(anomaly_message(episode, device=pipe.device_id))
                anomaly.handle(anomaly_message(episode, "recovered", seq=1, device=pipe.device_id))
            enqueue_ns = time.perf_counter_ns() - t0
            if anomaly.outbox.counts()["pending"] != actions:
                raise RuntimeError("not every action was queued")
            calls_before = sum(anomaly.client.calls.values())
            with region():
                t0 = time.perf_counter_ns()
                cpu0 = time.thread_time_ns()
                while anomaly.next_attempt_at() is not None:
                    if not anomaly.pump():
                        raise RuntimeError("delivery stalled: %s" % anomaly.summary())
                drain_ns = time.perf_counter_ns() - t0
                cpu_ns = time.thread_time_ns() - cpu0
            calls = sum(anomaly.client.calls.values()) - calls_before
            summary = anomaly.summary()
        finally:
            pipe.close()
    seconds = drain_ns / 1e9
    return {
        "server": server.name,
        "client": "TCP_QUICKACK before each response (what-if)" if quick_ack else "as shipped",
        "actions": actions,
        "synchronous": synchronous or "as shipped",
        "actions_per_second": round(actions / seconds, 1),
        "calls": calls,
        "calls_per_action": round(calls / actions, 3),
        "calls_per_second": round(calls / seconds, 1),
        "ms_per_action": round(drain_ns / actions / 1e6, 3),
        "cpu_ms_per_action": round(cpu_ns / actions / 1e6, 3),
        "enqueue_us_per_action": round(enqueue_ns / actions / 1e3, 1),
        "incidents_opened": summary["incidents_opened"],
        "incidents_resolved": summary["incidents_resolved"],
    }
