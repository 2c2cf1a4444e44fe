"""ServiceNow's ``X-RateLimit-*`` headers: the pacing slows down before the hourly limit, so the
429 never comes, and ``edge-agent status`` shows the budget left. Against the stand-in, whose
rate-limit rule counts requests per user per hour and answers 429 past the limit."""

from __future__ import annotations

from helpers import anomaly
from test_anomaly_function import make_service

from agent.config import AnomalySettings
from devtools.status_cmd import collect, render

LIMIT = 20


def episodes(n):
    return [
        anomaly(episode="pi-test:humidity:upper:{}".format(1_790_000_000 + i)) for i in range(n)
    ]


def test_the_pacing_spreads_the_last_fifth_of_the_budget_and_never_meets_a_429(
    snow, tmp_path, core, clock
):
    snow.rate_rule.limit = LIMIT
    clock.advance_to((clock.time() // 3600 + 1) * 3600)  # the start of an hour's window
    window_end = clock.time() + 3600
    settings = AnomalySettings.from_mapping({"snowUrl": snow.url, "stateDir": str(tmp_path)})
    service = make_service(settings, core, clock)
    for event in episodes(12):  # two calls each (look up, create): more than the budget
        service.handle(event)
    while service.next_attempt_at() is not None and clock.time() < window_end + 3600:
        service.pump()
        if service.next_attempt_at() is not None:
            clock.advance_to(max(clock.time(), service.next_attempt_at()))
    assert len(snow.incidents()) == 12
    log = snow.timed_request_log
    assert all(status != 429 for _, _, _, status in log), log
    in_window = [t for t, _, _, _ in log if t < window_end]
    assert len(in_window) == LIMIT  # the whole budget used, not one request more
    # The first 16 go at once; the last fifth is spread out until the reset.
    last_fifth = in_window[-(LIMIT // 5) :]
    gaps = [b - a for a, b in zip(last_fifth, last_fifth[1:])]
    assert min(gaps) >= (window_end - last_fifth[0]) / (LIMIT // 5 + 1)
    assert in_window[LIMIT - LIMIT // 5 - 1] - in_window[0] < 60


def test_status_shows_the_budget_left(snow, tmp_path, core, clock):
    snow.rate_rule.limit = LIMIT
    settings = AnomalySettings.from_mapping({"snowUrl": snow.url, "stateDir": str(tmp_path)})
    service = make_service(settings, core, clock)
    service.handle(episodes(1)[0])
    assert service.pump() == 1
    reset = (clock.time() // 3600 + 1) * 3600
    budget = service.servicenow_notices()["rate_limit"]
    assert budget == {
        "limit": LIMIT,
        "remaining": LIMIT - len(snow.request_log),
        "reset": reset,
        "rule": "edge-agent stand-in rule",
    }
    text = render(collect(str(tmp_path)))
    assert (
        "rate limit    {} of {} requests left until ".format(LIMIT - len(snow.request_log), LIMIT)
        in text
    )
    assert "(rule edge-agent stand-in rule)" in text
