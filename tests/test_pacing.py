"""Pacing, in virtual time, counted by the stand-in: a request-rate cap, one probe per
30 s while ServiceNow is down, and a backlog that drains within a minute of its return."""

from __future__ import annotations

import pytest
from conftest import secret_json
from helpers import anomaly, wait_until

from agent.greengrass.local import LocalCore
from agent.servicenow.pacing import RequestPacer
from agent.topology import ANOMALY_FUNCTION_ID
from functions import anomaly_function


def make_service(snow, password, clock, tmp_path, **environ):
    core = LocalCore()
    core.add_secret("greengrass-snow-creds", secret_json(password))
    return anomaly_function.create_app(
        environ={"snowUrl": snow.url, "stateDir": str(tmp_path), **environ},
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=clock,
    )


def queue_episodes(service, count):
    for i in range(count):
        episode = "pi-pace:humidity:upper:{}".format(1_790_000_000 + 1000 * i)
        service.handle(anomaly("breach", 0, episode))
        service.handle(anomaly("recovered", 1, episode, value=40.0, ts=1_790_000_300.0))


def drive(service, clock, until, switch=lambda now: None):
    """Run the delivery worker's loop in virtual time until ``until`` or the outbox is empty."""
    while clock.time() < until:
        switch(clock.time())
        service.pump()
        next_at = service.next_attempt_at()
        if next_at is None:
            return
        clock.advance_to(max(next_at, clock.time() + 0.001))


def test_the_pacer_lets_a_burst_through_then_holds_the_rate(clock):
    pacer = RequestPacer(5, clock)
    starts = []
    for _ in range(16):
        pacer.acquire()
        starts.append(clock.time())
    assert starts[:5] == [starts[0]] * 5  # an episode's few calls are not delayed
    for i in range(5, 16):
        assert starts[i] - starts[i - 5] >= 1.0 - 1e-9  # never more than 5 in a second
    assert starts[-1] - starts[0] == pytest.approx(3.0)  # 16 requests: 5, 5, 5 and 1
    half = RequestPacer(0.5, clock)
    t0 = clock.time()
    half.acquire()
    half.acquire()
    assert clock.time() - t0 == pytest.approx(2.0)
    assert RequestPacer(0, clock).acquire() == 0.0  # 0: no cap


def test_a_backlog_goes_out_at_the_configured_rate(snow, password, clock, tmp_path):
    service = make_service(snow, password, clock, tmp_path, snowMaxRequestsPerSecond="5")
    queue_episodes(service, 40)  # 80 actions, 4 requests per episode
    drive(service, clock, clock.time() + 3600)
    assert service.next_attempt_at() is None
    times = [t for t, _, _, status in snow.timed_request_log if status is not None]
    assert len(times) == 160 and len(snow.incidents()) == 40
    for i in range(5, len(times)):
        assert times[i] - times[i - 5] >= 1.0 - 1e-6, "more than 5 requests in a second"
    assert times[-1] - times[0] == pytest.approx(159 / 5, abs=1.0)  # and no slower than that


@pytest.mark.parametrize("outage_hours", [0.25, 3.0])
def test_a_long_outage_is_probed_gently_and_the_backlog_drains_soon_after(
    snow, password, clock, tmp_path, outage_hours
):
    # The defaults: retryMaxSeconds 300 no longer decides how long a backlog waits.
    service = make_service(snow, password, clock, tmp_path)
    down_at = clock.time()
    up_at = down_at + outage_hours * 3600 + 7.3  # not on any retry's schedule
    snow.faults.down = True
    queue_episodes(service, 25)  # 25 incidents waiting, not one

    def switch(now):
        if now >= up_at and snow.faults.down:
            snow.faults.down = False

    drive(service, clock, up_at, switch)
    clock.advance_to(up_at)
    drive(service, clock, up_at + 3600, switch)
    assert service.next_attempt_at() is None
    assert len(snow.incidents()) == 25 and all(i["state"] == "6" for i in snow.incidents())
    log = snow.timed_request_log
    while_down = [t for t, _, _, status in log if status is None]
    assert all(t < up_at for t in while_down)
    # A probe, not every action: after the first half minute of quick retries,
    # never two requests less than 30 s apart.
    settled = [t for t in while_down if t >= down_at + 30]
    gaps = [b - a for a, b in zip(settled, settled[1:])]
    assert gaps and min(gaps) >= 30.0
    assert len(while_down) <= 6 + (up_at - down_at) / 30
    first_answer = min(t for t, _, _, status in log if status is not None)
    assert first_answer - up_at <= 60.0  # draining within a minute of ServiceNow's return


def test_stopping_the_service_ends_a_long_paced_drain(snow, password, tmp_path):
    import time

    from agent.clock import Clock

    core = LocalCore()
    core.add_secret("greengrass-snow-creds", secret_json(password))
    service = anomaly_function.create_app(
        environ={"snowUrl": snow.url, "stateDir": str(tmp_path), "snowMaxRequestsPerSecond": "2"},
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=Clock(),
    )
    queue_episodes(service, 50)  # at 2 requests/s, 100 s of work
    worker = service.start()
    assert wait_until(lambda: len(snow.request_log) >= 2)  # the paced drain is under way
    started = time.monotonic()
    service.stop(timeout=5)
    assert not worker.is_alive() and time.monotonic() - started < 2.0
    assert service.outbox.counts()["pending"] > 0  # left for next time, not lost
    service.outbox.close()
