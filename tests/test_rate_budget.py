"""ServiceNow's ``X-RateLimit-*`` headers: the pacing slows down before the hourly limit, so the
429 never comes, and ``edge-agent status`` shows the budget left. Against the stand-in, whose
rate-limit rule counts requests per user per hour and answers 429 past the limit."""

from __future__ import annotations

import logging

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


def test_a_spent_budget_waits_for_the_new_hour_which_brings_the_whole_budget_back(
    snow, tmp_path, core, clock, caplog
):
    snow.rate_rule.limit = LIMIT
    reset = (clock.time() // 3600 + 1) * 3600
    clock.advance_to(reset - 600)  # ten minutes before the hour's window ends
    settings = AnomalySettings.from_mapping({"snowUrl": snow.url, "stateDir": str(tmp_path)})
    service = make_service(settings, core, clock, snowMaxRequestsPerSecond="0")  # no cap
    for event in episodes(10):  # 20 requests: the first 16 go at once
        service.handle(event)
    with caplog.at_level(logging.INFO, logger="agent.servicenow"):
        while service.pump():
            pass
    assert [t for t, _, _, _ in snow.timed_request_log] == [reset - 600] * 16
    # The last fifth is spread over the ten minutes: the next one 2 minutes on, too long
    # for the pacer to sleep, so delivery waits.
    assert "4 of 20 requests left in ServiceNow's hourly rate limit; pacing: next in 120s" in (
        caplog.text
    )
    assert service.servicenow_notices()["rate_limit"]["remaining"] == 4
    # At the reset the budget is whole again, and no reset time is due.
    clock.advance_to(reset)
    assert service.servicenow_notices()["rate_limit"] == {
        "limit": LIMIT,
        "remaining": LIMIT,
        "reset": None,
        "rule": "edge-agent stand-in rule",
    }
    for event in episodes(16)[10:]:  # 12 requests, after the 4 put off: 16 of the new 20
        service.handle(event)
    while service.next_attempt_at() is not None and clock.time() < reset + 3600:
        service.pump()
        if service.next_attempt_at() is not None:
            clock.advance_to(max(clock.time(), service.next_attempt_at()))
    log = snow.timed_request_log
    assert all(status != 429 for _, _, _, status in log), log
    assert len(snow.incidents()) == 16
    # The new hour's requests (the 4 put off, then 12 more) go out at once.
    new_hour = [t for t, _, _, _ in log if t >= reset]
    assert new_hour == [reset] * 16
    budget = service.servicenow_notices()["rate_limit"]
    assert budget["reset"] == reset + 3600 and budget["remaining"] == LIMIT - len(new_hour)


def test_answers_without_a_rate_limit_rule_pace_nothing(snow, tmp_path, core, clock):
    snow.rate_rule.limit = None  # no rule covers this user: the answers carry no headers
    settings = AnomalySettings.from_mapping({"snowUrl": snow.url, "stateDir": str(tmp_path)})
    service = make_service(settings, core, clock, snowMaxRequestsPerSecond="0")  # no cap
    for event in episodes(15):
        service.handle(event)
    start = clock.time()
    while service.pump():
        pass
    assert [t for t, _, _, _ in snow.timed_request_log] == [start] * 30
    assert service.servicenow_notices()["rate_limit"] is None


def test_a_small_budget_holds_back_only_its_last_request(snow, tmp_path, core, clock):
    snow.rate_rule.limit = 5  # a fifth of 5 is 1: only the last request is spread out
    clock.advance_to((clock.time() // 3600 + 1) * 3600)
    settings = AnomalySettings.from_mapping({"snowUrl": snow.url, "stateDir": str(tmp_path)})
    service = make_service(settings, core, clock, snowMaxRequestsPerSecond="0")
    start = clock.time()
    for event in episodes(2):
        service.handle(event)
    while service.pump():
        pass
    assert [t for t, _, _, _ in snow.timed_request_log] == [start] * 4
    assert service.servicenow_notices()["rate_limit"]["remaining"] == 1


def test_a_request_long_after_the_last_goes_at_once_in_the_last_fifth(snow, tmp_path, core, clock):
    snow.rate_rule.limit = LIMIT
    reset = (clock.time() // 3600 + 1) * 3600
    clock.advance_to(reset - 3600)
    settings = AnomalySettings.from_mapping({"snowUrl": snow.url, "stateDir": str(tmp_path)})
    service = make_service(settings, core, clock, snowMaxRequestsPerSecond="0")
    for event in episodes(8):  # 16 requests at once: 4 left, the last fifth
        service.handle(event)
    while service.pump():
        pass
    # Fifty minutes on, the slot the spread gives the next request is long past: it goes now.
    clock.advance_to(reset - 600)
    service.handle(episodes(9)[8])
    service.pump()
    assert [t for t, _, _, _ in snow.timed_request_log][16] == reset - 600
