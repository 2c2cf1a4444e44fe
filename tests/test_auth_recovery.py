"""While ServiceNow refuses the credentials: when the secret is re-read and a login tried.

(End to end, with every secret backend and the stand-in: test_password_rotation.py.)"""

from __future__ import annotations

import json

import pytest

from agent.credentials import CredentialsProvider
from agent.servicenow.auth_recovery import PROBE_INTERVAL, REFETCH_INTERVAL, AuthRecovery
from agent.servicenow.client import AuthFailed


@pytest.fixture
def secret():
    return {"password": "old"}


@pytest.fixture
def provider(secret, clock):
    clock.advance(1000)  # a monotonic clock that has run a while, as on a device

    def fetch(_secret_id):
        fetches.append(clock.monotonic())
        return json.dumps({"username": "u", "password": secret["password"]})

    fetches = []
    credentials = CredentialsProvider(fetch, "snow-creds", clock=clock)
    credentials.forced = fetches
    credentials.get()
    fetches.clear()
    return credentials


def refused(token=False):
    return AuthFailed("401 Unauthorized", 401, token_rejected=token)


def test_nothing_waits_while_the_credentials_work(provider, clock):
    recovery = AuthRecovery(provider, clock)
    assert recovery.wait_before_request() == 0.0 and not recovery.refused
    recovery.on_success()
    assert recovery.wait_before_request() == 0.0


def test_unchanged_refused_credentials_are_re_read_once_a_minute_and_tried_every_ten(
    provider, clock
):
    recovery = AuthRecovery(provider, clock)
    assert recovery.on_refused(refused()) is False  # same secret: no second login now
    assert recovery.refused and len(provider.forced) == 1
    assert recovery.wait_before_request() == REFETCH_INTERVAL
    clock.advance(REFETCH_INTERVAL - 1)
    assert recovery.wait_before_request() == 1.0 and len(provider.forced) == 1
    clock.advance(1)  # exactly a minute: read again, unchanged, wait another minute
    assert recovery.wait_before_request() == REFETCH_INTERVAL and len(provider.forced) == 2
    # Re-read every minute, never more often, until the probe at ten minutes.
    while clock.monotonic() < 1000 + PROBE_INTERVAL - REFETCH_INTERVAL:
        clock.advance(REFETCH_INTERVAL)
        assert recovery.wait_before_request() > 0
    assert len(provider.forced) == PROBE_INTERVAL // REFETCH_INTERVAL
    clock.advance(REFETCH_INTERVAL - 0.5)
    assert recovery.wait_before_request() == 0.5
    clock.advance(0.5)  # the probe: the same credentials once more
    assert recovery.wait_before_request() == 0.0


def test_a_changed_secret_is_tried_at_the_next_re_read(provider, clock, secret):
    recovery = AuthRecovery(provider, clock)
    recovery.on_refused(refused())
    clock.advance(30)
    secret["password"] = "new"
    assert recovery.wait_before_request() == 30.0  # not read yet
    clock.advance(30)
    assert recovery.wait_before_request() == 0.0 and not recovery.refused
    assert provider.cached().password == "new"


def test_a_refusal_when_the_secret_has_already_changed_retries_at_once(provider, clock, secret):
    recovery = AuthRecovery(provider, clock)
    secret["password"] = "new"
    assert recovery.on_refused(refused()) is True
    # The new one is refused too, within the minute: no re-read, no third login.
    assert recovery.on_refused(refused()) is False and len(provider.forced) == 1
    assert recovery.wait_before_request() == REFETCH_INTERVAL


def test_a_refused_token_earns_one_retry_with_a_new_token_not_more(provider, clock):
    recovery = AuthRecovery(provider, clock)
    assert recovery.on_refused(refused(token=True)) is True
    assert recovery.on_refused(refused(token=True)) is False
    recovery.on_success()
    assert not recovery.refused and recovery.wait_before_request() == 0.0
    clock.advance(REFETCH_INTERVAL)
    assert recovery.on_refused(refused(token=True)) is True  # a new episode of refusals
