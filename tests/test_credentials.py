"""Which secrets are accepted, and how long the provider keeps them (the TTL edge, forced fetches)."""

from __future__ import annotations

import json

import pytest
from conftest import new_secret

from agent.credentials import Credentials, CredentialsProvider
from agent.errors import SecretError


def parse(**fields):
    return Credentials.from_secret_string(json.dumps(fields), "snow-creds")


def test_basic_auth_from_a_username_and_password():
    password = new_secret()
    creds = parse(username="u", password=password)
    assert (creds.kind, creds.username, creds.password) == ("basic", "u", password)
    assert password not in repr(creds)


def test_oauth_client_credentials_alone_or_with_both_halves_of_the_password_grant():
    secret, password = new_secret("cs"), new_secret()
    creds = parse(client_id="c", client_secret=secret)
    assert creds.kind == "oauth" and creds.username is None and creds.password is None
    creds = parse(client_id="c", client_secret=secret, username="u", password=password)
    assert creds.kind == "oauth" and (creds.username, creds.password) == ("u", password)
    assert secret not in repr(creds) and password not in repr(creds)


@pytest.mark.parametrize("half", [{"username": "u"}, {"password": "only-a-password"}])
def test_oauth_with_half_a_password_grant_is_refused(half):
    with pytest.raises(SecretError, match="password grant needs both"):
        parse(client_id="c", client_secret="s", **half)


def test_an_explicit_auth_picks_basic_even_with_client_credentials():
    creds = parse(auth="basic", username="u", password="p", client_id="c", client_secret="s")
    assert creds.kind == "basic"
    with pytest.raises(SecretError, match="needs 'client_id' and 'client_secret'"):
        parse(auth="oauth", username="u", password="p")
    with pytest.raises(SecretError, match="needs 'username' and 'password'"):
        parse(password="p")
    with pytest.raises(SecretError, match="must be a non-empty string"):
        parse(username="", password="p")


def test_same_as_compares_every_value():
    a = parse(username="u", password="p1")
    assert a.same_as(parse(username="u", password="p1"))
    assert not a.same_as(parse(username="u", password="p2"))
    assert not a.same_as(parse(username="v", password="p1"))
    assert not a.same_as(None)


def make_provider(clock, ttl=600.0):
    clock.advance(1000)  # a monotonic clock that has run a while, as on a device
    values = {"password": "p1"}
    fetched, fresh = [], []

    def fetch(secret_id):
        fetched.append(secret_id)
        return json.dumps({"username": "u", "password": values["password"]})

    def fetch_fresh(secret_id):
        fresh.append(secret_id)
        return fetch(secret_id)

    provider = CredentialsProvider(
        fetch, "snow-creds", ttl=ttl, clock=clock, fetch_fresh=fetch_fresh
    )
    return provider, values, fetched, fresh


def test_the_cache_expires_exactly_at_the_ttl(clock):
    provider, values, fetched, _ = make_provider(clock)
    assert provider.cached() is None
    assert provider.get().password == "p1"
    values["password"] = "p2"
    clock.advance(599.9)
    assert provider.get().password == "p1" and len(fetched) == 1
    clock.advance(0.1)  # 600 s: expired
    assert provider.get().password == "p2" and len(fetched) == 2
    assert provider.cached().password == "p2" and provider.fetches == 2


def test_a_forced_fetch_bypasses_both_caches_and_refreshes_this_one(clock):
    provider, values, fetched, fresh = make_provider(clock)
    provider.get()
    values["password"] = "p2"
    assert provider.get(force_fetch=True).password == "p2"
    assert fresh == ["snow-creds"] and len(fetched) == 2
    clock.advance(599)
    assert provider.get().password == "p2" and len(fetched) == 2  # cached from the forced fetch


def test_without_a_fresh_fetcher_a_forced_fetch_uses_the_ordinary_one(clock):
    calls = []
    provider = CredentialsProvider(
        lambda sid: calls.append(sid) or '{"username": "u", "password": "p"}', "s", clock=clock
    )
    provider.get()
    provider.get(force_fetch=True)
    assert calls == ["s", "s"] and provider.ttl == 3600.0
