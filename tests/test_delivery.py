"""What a failure means for the queue, against the ServiceNow stand-in in virtual time:
Retry-After (bounded), backoff with jitter, one pause for every action, dead letters."""

from __future__ import annotations

import random

import pytest
from conftest import SNOW_USER, secret_json
from helpers import anomaly, wait_until

from agent.config import AnomalySettings
from agent.credentials import CredentialsProvider
from agent.servicenow.client import TableClient
from agent.servicenow.delivery import Deliverer
from agent.servicenow.incidents import action_for
from agent.servicenow.outbox import Outbox
from devtools.servicenow_standin import ServiceNowStandIn

SETTINGS = AnomalySettings.from_mapping({"snowUrl": "https://x.service-now.com"})


def make_deliverer(snow, password, clock, tmp_path, seed=1, retry_base=2.0, retry_max=300.0):
    outbox = Outbox(str(tmp_path / "outbox-{}.db".format(seed)))
    credentials = CredentialsProvider(lambda _id: secret_json(password), "snow-creds", clock=clock)
    client = TableClient(snow.url, credentials.get, timeout=2.0, clock=clock)
    return Deliverer(
        outbox,
        client,
        credentials,
        clock=clock,
        retry_base=retry_base,
        retry_max=retry_max,
        rng=random.Random(seed),
    )


def queue(deliverer, clock, episode="pi-test:humidity:upper:1790000000", kind="breach", seq=0):
    action = action_for(anomaly(kind, seq, episode), SETTINGS)
    assert deliverer.outbox.enqueue(action, clock.time())
    return action


def wait_of(deliverer, clock):
    return deliverer.next_attempt_at() - clock.time()


@pytest.mark.parametrize("retry_after, wait", [(45, 45.0), (0, 2.0), (1, 2.0), (7200, 3600.0)])
def test_a_429_waits_as_retry_after_asks_within_bounds(
    snow, password, clock, tmp_path, retry_after, wait
):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    queue(deliverer, clock)
    snow.faults.rate_limit_next(1, retry_after=retry_after)
    assert deliverer.pump() == 0
    assert wait_of(deliverer, clock) == wait
    clock.advance(wait - 0.5)
    assert deliverer.pump() == 0 and len(snow.request_log) == 1  # nothing sent meanwhile
    clock.advance(0.5)
    assert deliverer.pump() == 1 and len(snow.incidents()) == 1


def test_a_429_without_retry_after_backs_off_as_a_first_failure_does(
    snow, password, clock, tmp_path
):
    # A proxy or gateway in front of the instance may answer 429 without Retry-After: the
    # agent then backs off as after any first failure, from the first step, not a later one.
    waits = []
    for seed, fault in ((1, "rate_limit"), (2, "fail")):
        deliverer = make_deliverer(snow, password, clock, tmp_path, seed=seed, retry_base=8.0)
        deliverer.rng = random.Random(7)  # the same jitter for both
        queue(deliverer, clock, episode="pi-test:humidity:upper:179000000{}".format(seed))
        if fault == "rate_limit":
            snow.faults.rate_limit_next(1, retry_after=None)
        else:
            snow.faults.fail_next(1, status=503)
        assert deliverer.pump() == 0
        waits.append(wait_of(deliverer, clock))
    assert waits[0] == waits[1] and 4.0 <= waits[0] <= 8.0, waits


def test_while_servicenow_fails_every_action_waits_not_only_the_failed_one(
    snow, password, clock, tmp_path
):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    queue(deliverer, clock)
    snow.faults.fail_next(1, status=503)
    assert deliverer.pump() == 0
    requests = len(snow.request_log)
    # Another incident's action, queued during the pause, waits for it too.
    queue(deliverer, clock, episode="pi-test:temperature:upper:1790000000")
    assert deliverer.pump() == 0 and len(snow.request_log) == requests
    assert deliverer.next_attempt_at() > clock.time()
    clock.advance_to(deliverer.next_attempt_at())
    assert deliverer.pump() == 2 and len(snow.incidents()) == 2
    assert deliverer.next_attempt_at() is None


def test_retry_delays_are_jittered_between_half_and_the_whole_backoff(
    snow, password, clock, tmp_path
):
    waits = []
    for seed in range(6):
        deliverer = make_deliverer(snow, password, clock, tmp_path, seed=seed, retry_base=8.0)
        queue(deliverer, clock)
        snow.faults.fail_next(1, status=503)
        assert deliverer.pump() == 0
        waits.append(wait_of(deliverer, clock))
        deliverer.outbox.close()
    assert all(4.0 <= w <= 8.0 for w in waits), waits
    assert min(waits) < 5.0  # seed 1 draws 0.13 of the jitter
    assert len(set(waits)) == len(waits)  # clients that failed together do not retry together


def test_a_long_outage_is_probed_every_30_to_60_seconds_and_recovers_at_once(
    snow, password, clock, tmp_path
):
    # Seed 3 draws near the top of the jitter during the held phase (0.996 of it).
    deliverer = make_deliverer(snow, password, clock, tmp_path, seed=3, retry_max=3600.0)
    queue(deliverer, clock)
    snow.faults.down = True
    waits = []
    for _ in range(12):
        assert deliverer.pump() == 0
        waits.append(wait_of(deliverer, clock))
        clock.advance_to(deliverer.next_attempt_at())
    # Doubling from 2 s (1-2, 2-4, ... s), then held at 30-60 s: never more.
    assert 1.0 <= waits[0] <= 2.0 and 2.0 <= waits[1] <= 4.0
    assert all(30.0 <= w <= 60.0 for w in waits[6:]), waits
    assert max(waits[6:]) > 59.5
    snow.faults.down = False
    assert deliverer.pump() == 1
    # The streak is over: the next failure starts from the base again.
    queue(deliverer, clock, episode="pi-test:temperature:upper:1790000000")
    snow.faults.fail_next(1, status=503)
    assert deliverer.pump() == 0 and wait_of(deliverer, clock) <= 2.0


def test_an_action_servicenow_refuses_for_good_is_dead_lettered_and_the_rest_go_on(
    snow, password, clock, tmp_path
):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    refused = queue(deliverer, clock)
    queue(deliverer, clock, episode="pi-test:temperature:upper:1790000000")
    outcomes = []
    deliverer.on_outcome.append(lambda o: outcomes.append((o.kind, o.action.key)))
    snow.faults.fail_next(1, status=403)
    assert deliverer.pump() == 2
    assert [d["key"] for d in deliverer.outbox.dead_letters()] == [refused.key]
    assert deliverer.outbox.dead_letters()[0]["status"] == 403
    assert ("dead_lettered", refused.key) in outcomes and len(snow.incidents()) == 1
    assert deliverer.stats.dead_lettered == 1 and deliverer.stats.opened == 1


def test_refused_credentials_hold_everything_for_a_minute_or_so(snow, password, clock, tmp_path):
    outbox = Outbox(str(tmp_path / "outbox.db"))
    credentials = CredentialsProvider(
        lambda _id: secret_json("wrong-password"), "snow-creds", clock=clock
    )
    client = TableClient(snow.url, credentials.get, timeout=2.0, clock=clock)
    deliverer = Deliverer(outbox, client, credentials, clock=clock, rng=random.Random(3))
    queue(deliverer, clock)
    assert deliverer.pump() == 0
    assert 60.0 <= wait_of(deliverer, clock) <= 70.0
    assert deliverer.stats.auth_failures == 1


def test_an_observer_that_raises_never_stops_delivery(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    seen = []

    def broken(outcome):
        raise RuntimeError("observer bug")

    deliverer.on_outcome.extend([broken, seen.append])
    queue(deliverer, clock)
    queue(deliverer, clock, kind="recovered", seq=1)
    assert deliverer.pump() == 2
    assert [o.kind for o in seen] == ["opened", "resolved"]


def test_stop_ends_a_pump_between_actions(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    for i in range(3):
        queue(deliverer, clock, episode="pi-test:humidity:upper:{}".format(1_790_000_000 + i))
    deliverer.on_outcome.append(lambda outcome: deliverer.stop())
    assert deliverer.pump() == 1


def close_in_servicenow(snow, password, incident, state="7"):
    """An engineer closes the incident in ServiceNow (here through the Table API)."""
    import requests

    response = requests.patch(
        "{}/api/now/table/incident/{}".format(snow.url, incident["sys_id"]),
        json={"state": state},
        auth=(SNOW_USER, password),
        headers={"Accept": "application/json"},
        timeout=5,
    )
    assert response.status_code == 200


def test_stats_and_outcomes_tell_what_became_of_each_action(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    outcomes = []
    deliverer.on_outcome.append(lambda o: outcomes.append((o.kind, o.action.kind, o.detail)))
    queue(deliverer, clock)
    queue(deliverer, clock, kind="update", seq=1)
    queue(deliverer, clock, kind="recovered", seq=2)
    assert deliverer.pump() == 3
    (incident,) = snow.incidents()
    assert incident["state"] == "6"
    # The same episode from a second agent (a replaced device): found, not created again.
    other = make_deliverer(snow, password, clock, tmp_path, seed=2)
    other.on_outcome.append(lambda o: outcomes.append((o.kind, o.action.kind, o.detail)))
    queue(other, clock)
    assert other.pump() == 1 and len(snow.incidents()) == 1
    # A closed incident is left alone.
    episode = "pi-test:temperature:upper:1790000000"
    queue(deliverer, clock, episode=episode)
    deliverer.pump()
    closed = [i for i in snow.incidents() if i["state"] != "6"][0]
    close_in_servicenow(snow, password, closed)
    queue(deliverer, clock, episode=episode, kind="update", seq=1)
    assert deliverer.pump() == 1
    assert [i["state"] for i in snow.incidents()].count("7") == 1
    assert outcomes == [
        ("opened", "open", ""),
        ("noted", "note", ""),
        ("resolved", "resolve", ""),
        ("reused", "open", ""),
        ("opened", "open", ""),
        ("skipped", "note", "already closed in ServiceNow"),
    ]
    stats = deliverer.stats
    assert (stats.opened, stats.reused, stats.noted, stats.resolved, stats.skipped) == (
        2,
        0,
        1,
        1,
        1,
    )
    assert (stats.retries, stats.dead_lettered, stats.auth_failures) == (0, 0, 0)
    assert (other.stats.opened, other.stats.reused) == (0, 1)


def test_a_note_without_an_incident_opens_it_first(snow, password, clock, tmp_path):
    # The breach was lost before it was queued: the update still records the episode.
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    outcomes = []
    deliverer.on_outcome.append(lambda o: outcomes.append(o.kind))
    seen = []
    deliverer.on_outcome.append(seen.append)
    queue(deliverer, clock, kind="update", seq=1)
    assert deliverer.pump() == 1
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        seen[0].kind = "skipped"  # every observer sees the same outcome
    (incident,) = snow.incidents()
    assert incident["state"] == "1" and incident["short_description"].startswith("Humidity above")
    assert outcomes == ["opened", "noted"]
    assert (deliverer.stats.opened, deliverer.stats.noted) == (1, 1)


def test_a_retry_counts_and_says_why(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    outcomes = []
    deliverer.on_outcome.append(lambda o: outcomes.append((o.kind, o.detail)))
    queue(deliverer, clock)
    snow.faults.fail_next(1, status=503)
    deliverer.pump()
    assert deliverer.stats.retries == 1
    assert [k for k, _ in outcomes] == ["retry"] and "503" in outcomes[0][1]


def test_an_unreadable_secret_backs_off_like_an_outage(snow, password, clock, tmp_path):
    outbox = Outbox(str(tmp_path / "outbox.db"))
    credentials = CredentialsProvider(lambda _id: "{not json", "snow-creds", clock=clock)
    client = TableClient(snow.url, credentials.get, timeout=2.0, clock=clock)
    deliverer = Deliverer(outbox, client, credentials, clock=clock, rng=random.Random(5))
    queue(deliverer, clock)
    waits = []
    for _ in range(3):
        assert deliverer.pump() == 0
        waits.append(wait_of(deliverer, clock))
        clock.advance_to(deliverer.next_attempt_at())
    assert 1.0 <= waits[0] <= 2.0 and 2.0 <= waits[1] <= 4.0 and 4.0 <= waits[2] <= 8.0
    assert snow.request_log == []  # nothing sent without credentials


def test_the_wait_after_refused_credentials_is_jittered_over_ten_seconds(
    snow, password, clock, tmp_path
):
    waits = []
    # Seeds whose first draw is near either end of the jitter: 0.12 and 9.56 of 10 s.
    for seed in (31, 2):
        outbox = Outbox(str(tmp_path / "outbox-{}.db".format(seed)))
        credentials = CredentialsProvider(
            lambda _id: secret_json("wrong-password"), "snow-creds", clock=clock
        )
        client = TableClient(snow.url, credentials.get, timeout=2.0, clock=clock)
        deliverer = Deliverer(outbox, client, credentials, clock=clock, rng=random.Random(seed))
        queue(deliverer, clock)
        deliverer.pump()
        waits.append(wait_of(deliverer, clock))
        outbox.close()
    assert 60.0 <= waits[0] < 61.0 and 69.0 < waits[1] <= 70.0


def test_a_create_servicenow_refused_is_not_waited_for_when_tried_again(
    snow, password, clock, tmp_path
):
    from agent.servicenow.incidents import Action

    deliverer = make_deliverer(snow, password, clock, tmp_path)
    corr = "edge-agent:pi-test:humidity:upper:1790000000"
    # Resolved without close code and notes: ServiceNow's data policy refuses it (403).
    refused = Action("open", corr + "#0:breach", corr, {"short_description": "x", "state": "6"})
    deliverer.outbox.enqueue(refused, clock.time())
    assert deliverer.pump() == 1 and len(deliverer.outbox.dead_letters()) == 1
    # Nothing was created, so nothing may still commit: a requeued create goes at once.
    assert deliverer.outbox.requeue_dead_letters(clock.time()) == 1
    assert deliverer.pump() == 1
    assert [m for m, _, _ in snow.request_log].count("POST") == 2


def test_credentials_fixed_on_servicenows_side_work_again_at_the_probe(
    snow, password, clock, tmp_path
):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    snow.set_users({SNOW_USER: "changed-by-an-admin"})
    queue(deliverer, clock)
    assert deliverer.pump() == 0 and deliverer.stats.auth_failures == 1
    snow.set_users({SNOW_USER: password})  # the admin sets it back
    clock.advance(600)  # the probe with the unchanged secret
    assert deliverer.pump() == 1
    assert not deliverer.auth.refused
    # Accepted again: the next action goes at once, with no wait for a re-read.
    queue(deliverer, clock, kind="recovered", seq=1)
    assert deliverer.next_attempt_at() == clock.time()
    assert deliverer.pump() == 1


def test_pump_finishes_at_most_its_limit(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    for i in range(3):
        queue(deliverer, clock, episode="pi-test:humidity:upper:{}".format(1_790_000_000 + i))
    assert deliverer.pump(limit=2) == 2
    assert deliverer.pump(limit=2) == 1
    assert len(snow.incidents()) == 3


def test_a_backoff_below_a_second_is_kept(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path, retry_base=0.5)
    queue(deliverer, clock)
    snow.faults.fail_next(1, status=503)
    deliverer.pump()
    assert 0.25 <= wait_of(deliverer, clock) <= 0.5


def test_a_dead_letter_ends_an_outage_streak(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    queue(deliverer, clock)
    for _ in range(3):  # a streak: 1-2, 2-4, 4-8 s
        snow.faults.fail_next(1, status=503)
        deliverer.pump()
        clock.advance_to(deliverer.next_attempt_at())
    snow.faults.fail_next(1, status=403)  # ServiceNow answers: it is up again
    assert deliverer.pump() == 1 and deliverer.next_attempt_at() is None
    queue(deliverer, clock, episode="pi-test:temperature:upper:1790000000")
    snow.faults.fail_next(1, status=503)
    deliverer.pump()
    assert wait_of(deliverer, clock) <= 2.0


def test_nothing_is_sent_while_refused_credentials_wait_even_for_half_a_second(
    snow, password, clock, tmp_path
):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    snow.set_users({SNOW_USER: "changed-by-an-admin"})
    queue(deliverer, clock)
    deliverer.pump()
    requests = len(snow.request_log)
    clock.advance(59.5)  # the re-read of the secret is due in half a second
    queue(deliverer, clock, episode="pi-test:temperature:upper:1790000000")
    assert deliverer.pump() == 0 and len(snow.request_log) == requests


def test_pump_takes_follow_ups_within_its_limit(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    for metric in ("humidity", "temperature", "pressure"):
        episode = "pi-test:{}:upper:1790000000".format(metric)
        queue(deliverer, clock, episode=episode)
        if metric != "pressure":
            queue(deliverer, clock, episode=episode, kind="recovered", seq=1)
    # Three heads, then the two resolves behind them: a limit of 4 stops after one.
    assert deliverer.pump(limit=4) == 4
    assert deliverer.pump() == 1


def _break_table(path, table):
    """A real write error of the outbox (not a constraint): an insert into ``table`` fails."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "CREATE TRIGGER broken_{0} AFTER INSERT ON {0} BEGIN INSERT INTO gone VALUES (1); END".format(
            table
        )
    )
    db.close()


def test_a_local_write_error_backs_off_from_a_minute(snow, password, clock, tmp_path):
    # Seed 0 draws 0.84 of the jitter for the second try.
    deliverer = make_deliverer(snow, password, clock, tmp_path, seed=0)
    _break_table(deliverer.outbox.path, "create_intents")  # the record before a POST
    queue(deliverer, clock)
    waits = []
    for _ in range(2):
        assert deliverer.pump() == 0
        waits.append(wait_of(deliverer, clock))
        clock.advance_to(deliverer.next_attempt_at())
    assert waits[0] == 60.0 and 100.0 < waits[1] <= 120.0
    assert [m for m, _, _ in snow.request_log].count("POST") == 0  # never sent unrecorded
    outcomes = []
    deliverer.on_outcome.append(lambda o: outcomes.append((o.kind, o.detail)))
    deliverer.pump()
    assert outcomes == [("retry", "OperationalError")]


def test_a_delivery_that_cannot_be_recorded_pauses_a_minute(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    _break_table(deliverer.outbox.path, "delivered")
    queue(deliverer, clock)
    assert deliverer.pump() == 0 and len(snow.incidents()) == 1
    assert wait_of(deliverer, clock) == 60.0


def _repair_table(path, table):
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER broken_{}".format(table))
    db.close()


def test_the_end_of_a_local_fault_sends_what_it_put_off_at_once(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    _break_table(deliverer.outbox.path, "create_intents")
    queue(deliverer, clock)
    assert deliverer.pump() == 0 and deliverer.waiting_on_local_fault
    assert wait_of(deliverer, clock) == 60.0
    clock.advance(5)
    _repair_table(deliverer.outbox.path, "create_intents")
    deliverer.local_fault_cleared()  # what the anomaly service reports after a good write
    assert not deliverer.waiting_on_local_fault
    assert deliverer.next_attempt_at() == clock.time()  # not after the minute
    assert deliverer.pump() == 1 and len(snow.incidents()) == 1


def test_a_wait_servicenow_asked_for_outlasts_a_local_fault(snow, password, clock, tmp_path):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    queue(deliverer, clock)
    snow.faults.rate_limit_next(1, retry_after=120)
    assert deliverer.pump() == 0
    asked = clock.time() + 120
    deliverer.pause_for_local_fault(300)  # the worker met a local error meanwhile
    assert deliverer.next_attempt_at() == clock.time() + 300
    clock.advance(30)
    deliverer.local_fault_cleared()
    assert deliverer.next_attempt_at() == asked  # neither now nor the local back-off
    clock.advance_to(asked - 1)
    assert deliverer.pump() == 0 and len(snow.request_log) == 1
    clock.advance_to(asked)
    assert deliverer.pump() == 1


def test_a_local_fault_longer_than_servicenows_wait_is_waited_out_unless_cleared(
    snow, password, clock, tmp_path
):
    deliverer = make_deliverer(snow, password, clock, tmp_path)
    queue(deliverer, clock)
    deliverer.pause_for_local_fault(30)
    deliverer.pause_for_local_fault(10)  # a shorter one does not cut the first short
    assert deliverer.paused_until == clock.time() + 30
    clock.advance(29)
    assert deliverer.pump() == 0 and snow.request_log == []
    clock.advance(1)
    assert deliverer.pump() == 1
    assert deliverer.waiting_on_local_fault  # only a good write ends it, not the clock
    deliverer.local_fault_cleared()
    assert not deliverer.waiting_on_local_fault and deliverer.paused_until == 0.0


def test_a_refused_oauth_token_is_dropped_and_a_new_one_fetched(password, clock, tmp_path):
    import json

    from conftest import new_secret

    client_secret = new_secret("oauth")
    server = ServiceNowStandIn(
        users={SNOW_USER: password}, oauth_clients={"edge-client": client_secret}, clock=clock.time
    ).start()
    try:
        secret = {"client_id": "edge-client", "client_secret": client_secret}
        secret.update(username=SNOW_USER, password=password)
        outbox = Outbox(str(tmp_path / "outbox.db"))
        credentials = CredentialsProvider(lambda _id: json.dumps(secret), "snow-creds", clock=clock)
        client = TableClient(server.url, credentials.get, timeout=2.0, clock=clock)
        deliverer = Deliverer(outbox, client, credentials, clock=clock, rng=random.Random(1))
        queue(deliverer, clock)
        assert deliverer.pump() == 1
        server.expire_tokens()
        queue(deliverer, clock, kind="recovered", seq=1)
        assert deliverer.pump() == 1 and server.incidents()[0]["state"] == "6"
        assert client.calls["TOKEN"] == 2
    finally:
        server.stop()


def test_a_new_secret_refused_too_is_not_tried_again_every_minute(snow, password, clock, tmp_path):
    secret = {"password": password}
    outbox = Outbox(str(tmp_path / "outbox.db"))
    credentials = CredentialsProvider(
        lambda _id: secret_json(secret["password"]), "snow-creds", clock=clock
    )
    client = TableClient(snow.url, credentials.get, timeout=2.0, clock=clock)
    deliverer = Deliverer(outbox, client, credentials, clock=clock, rng=random.Random(1))
    queue(deliverer, clock)
    assert deliverer.pump() == 1
    # Rotated on both sides, but the secret store got a wrong value.
    snow.set_users({SNOW_USER: "rotated"})
    secret["password"] = "wrong-after-rotation"
    queue(deliverer, clock, kind="recovered", seq=1)
    assert deliverer.pump() == 0
    assert snow.auth_failures == 2  # the cached password, then the new one once
    while clock.time() < 1_790_000_000.0 + 300:
        clock.advance_to(deliverer.next_attempt_at())
        deliverer.pump()
    assert snow.auth_failures == 2  # re-read every minute, unchanged: no login until the probe


def test_a_deleted_incident_is_skipped_and_said_so(snow, password, clock, tmp_path):
    import requests

    deliverer = make_deliverer(snow, password, clock, tmp_path)
    outcomes = []
    deliverer.on_outcome.append(lambda o: outcomes.append((o.kind, o.detail)))
    queue(deliverer, clock)
    deliverer.pump()
    (incident,) = snow.incidents()
    response = requests.delete(
        "{}/api/now/table/incident/{}".format(snow.url, incident["sys_id"]),
        auth=(SNOW_USER, password),
        timeout=5,
    )
    assert response.status_code == 204
    queue(deliverer, clock, kind="recovered", seq=1)
    assert deliverer.pump() == 1 and snow.incidents() == []
    assert outcomes[-1] == ("skipped", "the incident no longer exists")
    assert deliverer.stats.skipped == 1


def test_after_a_restart_a_create_that_may_still_commit_is_waited_for(
    snow, password, clock, tmp_path
):
    import sqlite3

    first = make_deliverer(snow, password, clock, tmp_path)
    first.client.timeout = 0.3
    snow.faults.commit_delay = 1.0  # ServiceNow commits the POST after the client gave up
    queue(first, clock)
    assert first.pump() == 0
    first.outbox.close()
    # Restarted on the same outbox (with a longer snowTimeout: a window of 3 x 10 s). The
    # action is due again, but the wait is measured from the durable record of the POST.
    again = make_deliverer(snow, password, clock, tmp_path)
    again.client.timeout = 10.0
    clock.advance_to(again.next_attempt_at())

    def lookups():  # the POST still in flight is logged when it ends: count the GETs
        return [m for m, _, _ in snow.request_log].count("GET")

    assert lookups() == 1
    assert again.pump() == 0 and lookups() == 1
    db = sqlite3.connect(again.outbox.path)
    (last_error,) = db.execute("SELECT last_error FROM pending").fetchone()
    db.close()
    assert "may still be committing" in last_error
    assert wait_until(snow.incidents)  # the slow commit lands
    clock.advance(30)
    assert again.pump() == 1
    assert len(snow.incidents()) == 1 and again.stats.reused == 1


def test_backoff_without_servicenows_answer_stops_growing_at_retry_max(
    snow, password, clock, tmp_path
):
    outbox = Outbox(str(tmp_path / "outbox.db"))
    credentials = CredentialsProvider(lambda _id: "{not json", "snow-creds", clock=clock)
    client = TableClient(snow.url, credentials.get, timeout=2.0, clock=clock)
    # Default retry_base 2 s and retry_max 300 s; seed 136 draws 0.995 of the 9th jitter.
    deliverer = Deliverer(outbox, client, credentials, clock=clock, rng=random.Random(136))
    queue(deliverer, clock)
    waits = []
    for _ in range(9):
        deliverer.pump()
        waits.append(wait_of(deliverer, clock))
        clock.advance_to(deliverer.next_attempt_at())
    assert 128.0 <= waits[7] <= 256.0
    assert 299.0 < waits[8] <= 300.0
