"""The anomaly function against the ServiceNow stand-in, over real HTTP."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from conftest import SNOW_USER, new_secret, secret_json
from helpers import anomaly

from agent.anomaly_service import AnomalyService
from agent.config import AnomalySettings
from agent.greengrass.local import LambdaContext
from agent.topology import ANOMALY_FUNCTION_ID
from functions import anomaly_function


def make_service(settings, core, clock, **kwargs) -> AnomalyService:
    return anomaly_function.create_app(
        environ={
            "snowUrl": settings.snow_url,
            "stateDir": settings.state_dir,
            "deviceId": "pi-test",
            **kwargs,
        },
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=clock,
    )


def test_breach_opens_an_incident_that_says_what_breached(
    standin, anomaly_settings, core, clock, caplog
):
    caplog.set_level(logging.INFO)
    service = make_service(anomaly_settings, core, clock)
    context = LambdaContext("edge-agent-anomaly", "IoTBlog/anomaly", "sensor")
    service.function_handler(anomaly(value=63.0, peak=64.0), context)
    assert service.pump() == 1
    (incident,) = standin.incidents()
    assert incident["correlation_id"] == "edge-agent:pi-test:humidity:upper:1790000000"
    assert "Humidity" in incident["short_description"]
    assert "pi-test" in incident["short_description"]
    assert "14.00 %RH above the limit" in incident["description"]  # peak 64 vs limit 50
    assert incident["impact"] == "3" and incident["urgency"] == "1"  # 28 % over the limit
    assert incident["state"] == "1"
    # The incident number is logged, as an operator would look for it.
    assert "opened incident {}".format(incident["number"]) in caplog.text


def test_update_and_recovery_note_and_resolve_the_same_incident(
    standin, anomaly_settings, core, clock
):
    service = make_service(anomaly_settings, core, clock)
    service.handle(anomaly())
    service.pump()
    clock.advance(3600)
    service.handle(anomaly("update", seq=1, value=65.0, peak=65.0, ts=clock.time()))
    service.handle(anomaly("recovered", seq=2, value=45.0, peak=65.0, ts=clock.time() + 5))
    assert service.pump() == 2
    (incident,) = standin.incidents()
    assert incident["state"] == "6"
    assert incident["close_code"] == "Solution provided"
    notes = [entry["value"] for entry in incident["_journal"] if entry["field"] == "work_notes"]
    assert any(note.startswith("Still breaching") for note in notes)
    assert any(note.startswith("Back within limit") for note in notes)


def test_recovery_can_be_only_a_note(standin, anomaly_settings, core, clock):
    service = make_service(anomaly_settings, core, clock, recoveryAction="note")
    service.handle(anomaly())
    service.handle(anomaly("recovered", seq=1, value=45.0))
    service.pump()
    (incident,) = standin.incidents()
    assert incident["state"] == "1"
    assert any(e["value"].startswith("Back within limit") for e in incident["_journal"])


def test_a_repeated_message_queues_once(standin, anomaly_settings, core, clock):
    service = make_service(anomaly_settings, core, clock)
    assert service.handle(anomaly()) is True
    assert service.handle(anomaly()) is False
    service.pump()
    assert service.handle(anomaly()) is False  # already delivered
    service.pump()
    assert len(standin.incidents()) == 1


def test_updates_are_throttled_per_incident(standin, anomaly_settings, core, clock):
    service = make_service(anomaly_settings, core, clock, updateMinutes="30")
    service.handle(anomaly())
    service.handle(anomaly("update", seq=1))
    service.pump()
    clock.advance(60)
    assert service.handle(anomaly("update", seq=2, ts=clock.time())) is False
    assert service.counts["throttled"] == 1


def test_wrong_credentials_keep_actions_in_the_outbox_without_a_login_storm(
    standin, anomaly_settings, core, clock, caplog
):
    core.add_secret("greengrass-snow-creds", secret_json(new_secret("wrong")))
    service = make_service(anomaly_settings, core, clock)
    service.handle(anomaly())
    for _ in range(20):  # twenty minutes of the worker waking up
        service.pump()
        clock.advance(60)
    assert standin.incidents() == []
    assert service.outbox.counts()["pending"] == 1
    assert "ServiceNow refused the credentials from secret greengrass-snow-creds" in caplog.text
    # The secret is read again once a minute; the same refused credentials are
    # tried again only every ten minutes: a failed login at the start and one ten
    # minutes later in these twenty minutes, not a storm.
    assert standin.counters["auth_failures"] == 2
    assert service.credentials.fetches <= 21


def test_a_password_rotation_recovers_with_exactly_one_refetch(
    standin, anomaly_settings, core, clock
):
    service = make_service(anomaly_settings, core, clock)
    service.handle(anomaly())
    service.pump()
    assert service.credentials.fetches == 1
    clock.advance(120)
    rotated = new_secret("rotated")
    standin.set_users({SNOW_USER: rotated})
    core.add_secret("greengrass-snow-creds", secret_json(rotated))
    service.handle(anomaly("recovered", seq=1, value=40.0, ts=clock.time()))
    assert service.pump() == 1
    assert service.credentials.fetches == 2  # the first fetch and one refetch
    assert standin.incidents()[0]["state"] == "6"


def test_servicenow_unreachable_logs_clearly_and_delivers_later(
    anomaly_settings, core, clock, standin, caplog
):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = AnomalySettings.from_mapping(
        {
            "snowUrl": "http://127.0.0.1:{}".format(closed_port),
            "stateDir": anomaly_settings.state_dir,
        }
    )
    service = AnomalyService(settings, core.runtime_for(ANOMALY_FUNCTION_ID), clock=clock)
    service.handle(anomaly())
    assert service.pump() == 0  # no exception escapes
    assert "ServiceNow unreachable at http://127.0.0.1:{}".format(closed_port) in caplog.text
    assert service.outbox.counts()["pending"] == 1
    service.outbox.close()
    # The same outbox, now with ServiceNow reachable: delivered, once.
    later = make_service(anomaly_settings, core, clock)
    clock.advance(600)
    assert later.pump() == 1
    assert len(standin.incidents()) == 1


def test_a_429_retry_after_is_honoured(standin, anomaly_settings, core, clock):
    service = make_service(anomaly_settings, core, clock)
    standin.faults.rate_limit_next(1, retry_after=120)
    service.handle(anomaly())
    assert service.pump() == 0
    assert service.next_attempt_at() == pytest.approx(clock.time() + 120)
    clock.advance(119)
    requests_before = len(standin.request_log)
    assert service.pump() == 0
    assert len(standin.request_log) == requests_before  # nothing sent before Retry-After
    clock.advance(1)
    assert service.pump() == 1
    assert len(standin.incidents()) == 1


def test_server_errors_are_retried_with_growing_backoff(standin, anomaly_settings, core, clock):
    service = make_service(anomaly_settings, core, clock)
    standin.faults.fail_next(3, status=503)
    service.handle(anomaly())
    delays = []
    for _ in range(3):
        assert service.pump() == 0
        delays.append(service.next_attempt_at() - clock.time())
        clock.advance_to(service.next_attempt_at())
    assert service.pump() == 1
    assert delays[0] < delays[2]  # exponential, with jitter inside [d/2, d]
    assert 1.0 <= delays[0] <= 2.0 and 4.0 <= delays[2] <= 8.0


def test_other_4xx_go_to_the_dead_letter_table_and_are_not_retried(
    standin, anomaly_settings, core, clock, caplog
):
    service = make_service(anomaly_settings, core, clock)
    standin.faults.fail_next(2, status=403)  # the find and nothing else gets it
    service.handle(anomaly())
    assert service.pump() == 1
    (dead,) = service.outbox.dead_letters()
    assert dead["status"] == 403 and dead["kind"] == "open"
    assert "rejected" in caplog.text and "dead-letter" in caplog.text
    clock.advance(3600)
    assert service.pump() == 0
    assert service.outbox.counts()["pending"] == 0


def test_a_crash_between_post_and_confirmation_does_not_duplicate(
    standin, anomaly_settings, core, clock
):
    service = make_service(anomaly_settings, core, clock)
    standin.faults.fail_after_commit_next(1)  # the POST is stored, its answer never arrives
    service.handle(anomaly())
    assert service.pump() == 0
    assert len(standin.incidents()) == 1
    # The create may still be committing on ServiceNow's side: wait three timeouts
    # before looking again, or the find would miss it and POST a duplicate.
    assert service.next_attempt_at() - clock.time() >= 3 * service.client.timeout
    clock.advance_to(service.next_attempt_at())
    assert service.pump() == 1
    assert len(standin.incidents()) == 1
    assert service.deliverer.stats.reused == 1


def test_a_missing_secret_is_a_clear_error_and_the_action_waits(anomaly_settings, clock, caplog):
    from agent.greengrass.local import LocalCore

    bare = LocalCore()
    service = AnomalyService(anomaly_settings, bare.runtime_for(ANOMALY_FUNCTION_ID), clock=clock)
    service.handle(anomaly())
    assert service.pump() == 0
    assert "secret 'greengrass-snow-creds' is not available" in caplog.text
    assert service.outbox.counts()["pending"] == 1


def test_oauth_client_credentials_from_the_same_secret(password, tmp_path, core, clock):
    from devtools.servicenow_standin import ServiceNowStandIn

    client_secret = new_secret("oauth")
    with ServiceNowStandIn(users={}, oauth_clients={"edge-client": client_secret}) as server:
        core.add_secret(
            "greengrass-snow-creds",
            '{"client_id": "edge-client", "client_secret": "%s"}' % client_secret,
        )
        settings = AnomalySettings.from_mapping({"snowUrl": server.url, "stateDir": str(tmp_path)})
        service = make_service(settings, core, clock)
        service.handle(anomaly())
        service.handle(anomaly("recovered", seq=1, value=40.0))
        assert service.pump() == 2
        assert service.client.calls["TOKEN"] == 1  # the token is cached until it expires
        assert server.incidents()[0]["state"] == "6"


def test_malformed_messages_are_rejected_with_a_reason(anomaly_settings, core, clock, caplog):
    service = make_service(anomaly_settings, core, clock)
    assert service.handle(b"not json") is False
    assert service.handle(anomaly(metric="wind")) is False
    assert service.handle(anomaly(value=float("inf"))) is False
    assert "metric must be one of temperature, humidity, pressure" in caplog.text
    assert service.outbox.counts()["pending"] == 0


def test_an_update_one_interval_later_is_not_throttled_by_delivery_latency(
    standin, anomaly_settings, core, clock
):
    service = make_service(anomaly_settings, core, clock, updateMinutes="30")
    t0 = clock.time()
    service.handle(anomaly())
    assert service.handle(anomaly("update", seq=1, ts=t0 + 1800)) is True
    clock.advance(1800.3)  # the note was delivered late
    assert service.handle(anomaly("update", seq=2, ts=t0 + 3600)) is True
    assert service.handle(anomaly("update", seq=3, ts=t0 + 3700)) is False


def test_a_recovery_whose_breach_never_arrived_still_records_the_episode(
    standin, anomaly_settings, core, clock, caplog
):
    service = make_service(anomaly_settings, core, clock)
    service.handle(anomaly("recovered", seq=2, value=40.0))
    assert service.pump() == 1
    (incident,) = standin.incidents()
    assert incident["state"] == "6"
    assert "Humidity above limit on pi-test" in incident["short_description"]
    assert "opening it before the resolve" in caplog.text


def test_retry_after_zero_does_not_become_a_storm(standin, anomaly_settings, core, clock):
    service = make_service(anomaly_settings, core, clock)
    standin.faults.rate_limit_next(1, retry_after=0)
    service.handle(anomaly())
    assert service.pump() == 0
    assert service.next_attempt_at() - clock.time() >= anomaly_settings.retry_base


def test_an_unexpected_error_backs_off_instead_of_spinning(
    standin, anomaly_settings, core, clock, caplog
):
    service = make_service(anomaly_settings, core, clock)

    def broken(fields):
        raise KeyError("a bug")

    service.client.create = broken
    service.handle(anomaly())
    assert service.pump() == 0
    assert service.next_attempt_at() - clock.time() >= 60
    assert "unexpected KeyError while delivering" in caplog.text


def test_a_password_outside_latin1_works(anomaly_settings, core, clock, tmp_path):
    from devtools.servicenow_standin import ServiceNowStandIn

    password = new_secret("pässwörd€")
    with ServiceNowStandIn(users={SNOW_USER: password}) as server:
        core.add_secret("greengrass-snow-creds", secret_json(password))
        settings = AnomalySettings.from_mapping({"snowUrl": server.url, "stateDir": str(tmp_path)})
        service = make_service(settings, core, clock)
        service.handle(anomaly())
        assert service.pump() == 1
        assert len(server.incidents()) == 1


def test_dead_letters_can_be_requeued_after_the_cause_is_fixed(
    standin, anomaly_settings, core, clock
):
    service = make_service(anomaly_settings, core, clock)
    standin.faults.fail_next(1, status=403)
    service.handle(anomaly())
    service.pump()
    assert service.outbox.counts()["dead_letter"] == 1
    assert service.outbox.requeue_dead_letters(clock.time()) == 1
    assert service.pump() == 1
    assert len(standin.incidents()) == 1


def test_oauth_password_grant_renews_an_expired_token_once(core, clock, tmp_path):
    from devtools.servicenow_standin import ServiceNowStandIn

    client_secret, password = new_secret("oauth"), new_secret()
    with ServiceNowStandIn(
        users={SNOW_USER: password}, oauth_clients={"edge-client": client_secret}
    ) as server:
        secret = {
            "client_id": "edge-client",
            "client_secret": client_secret,
            "username": SNOW_USER,
            "password": password,
        }
        core.add_secret("greengrass-snow-creds", json.dumps(secret))
        settings = AnomalySettings.from_mapping({"snowUrl": server.url, "stateDir": str(tmp_path)})
        service = make_service(settings, core, clock)
        service.handle(anomaly())
        assert service.pump() == 1
        server.expire_tokens()  # revoked or expired early on the server's side
        service.handle(anomaly("recovered", seq=1, value=40.0))
        assert service.pump() == 1
        assert server.incidents()[0]["state"] == "6"
        assert service.client.calls["TOKEN"] == 2  # the first token, then one renewal
        assert service.credentials.fetches == 2  # the 401 earned exactly one refetch
