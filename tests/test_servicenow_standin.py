"""The ServiceNow stand-in, exercised over real sockets with ``requests``."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from helpers import wait_until

from devtools.servicenow_standin import (
    Faults,
    ServiceNowStandIn,
    StandInProcess,
    main,
    priority_for,
    redact_path,
)

REPO = Path(__file__).resolve().parents[1]
V1 = "/api/now/table/incident"
V2 = "/api/now/v2/table/incident"
JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
PASSWORD = "pw-Agent-7731"
CLIENT_SECRET = "client-Secret-5521"


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def standin_clock():
    return FakeClock()


@pytest.fixture
def standin(standin_clock):
    server = ServiceNowStandIn(
        users={"admin": "admin", "agent": PASSWORD},
        oauth_clients={"edge": CLIENT_SECRET},
        clock=standin_clock,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def http(standin):
    with requests.Session() as session:
        session.auth = ("agent", PASSWORD)
        session.headers.update(JSON_HEADERS)
        yield session


def create(http, standin, **fields):
    response = http.post(standin.url + V1, json=fields, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()["result"]


# -- create ---------------------------------------------------------------------------
def test_create_answers_201_with_location_and_string_values(standin, http):
    response = http.post(
        standin.url + V1,
        json={
            "short_description": "Temperature high",
            "impact": 2,
            "urgency": "2",
            "correlation_id": "pi-1:temperature",
            "u_reading": 41.5,
            "work_notes": "first reading 41.5",
        },
        timeout=5,
    )
    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"
    record = response.json()["result"]
    assert response.headers["Location"] == f"{standin.url}{V1}/{record['sys_id']}"
    assert all(isinstance(v, str) for v in record.values())
    assert re.fullmatch(r"[0-9a-f]{32}", record["sys_id"])
    assert record["number"] == "INC0010001"
    assert record["state"] == "1"
    assert record["active"] == "true"
    assert record["impact"] == "2"
    assert record["priority"] == "3"
    assert record["u_reading"] == "41.5"
    assert record["work_notes"] == ""
    assert record["sys_created_by"] == "agent"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["sys_created_on"])
    assert record["sys_created_on"] == "2023-11-14 22:13:20"  # the fake clock, in UTC

    second = create(http, standin, short_description="another")
    assert second["number"] == "INC0010002"
    assert second["impact"] == second["urgency"] == "3"
    assert second["priority"] == "5"

    (stored,) = standin.incidents({"correlation_id": "pi-1:temperature"})
    assert [(e["field"], e["value"]) for e in stored["_journal"]] == [
        ("work_notes", "first reading 41.5")
    ]


@pytest.mark.parametrize(
    ("impact", "urgency", "priority"),
    [
        (1, 1, "1"),
        (1, 2, "2"),
        (2, 1, "2"),
        (1, 3, "3"),
        (2, 2, "3"),
        (3, 1, "3"),
        (2, 3, "4"),
        (3, 2, "4"),
        (3, 3, "5"),
    ],
)
def test_priority_matrix(impact, urgency, priority):
    assert priority_for(impact, urgency) == priority


def test_priority_is_computed_not_taken_from_the_client(standin, http):
    record = create(http, standin, impact="1", urgency="1", priority="5")
    assert record["priority"] == "1"


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Accept": "application/json"}, b'{"short_description": "x"}'),  # no Content-Type
        ({"Content-Type": "application/json"}, b'{"short_description": "x"}'),  # Accept */*
        (JSON_HEADERS, b'["not", "an", "object"]'),
        (JSON_HEADERS, b"{not json"),
    ],
)
def test_bad_create_requests_get_400_and_store_nothing(standin, headers, body):
    response = requests.post(
        standin.url + V1, data=body, headers=headers, auth=("agent", PASSWORD), timeout=5
    )
    assert response.status_code == 400
    assert response.json()["status"] == "failure"
    assert set(response.json()["error"]) == {"message", "detail"}
    assert standin.incidents() == []


def test_oversized_body_gets_413(standin, http):
    big = b'{"description": "' + b"x" * (10 * 1024 * 1024 + 10) + b'"}'
    response = http.post(standin.url + V1, data=big, timeout=30)
    assert response.status_code == 413
    assert response.json()["status"] == "failure"
    assert standin.incidents() == []
    # The body was drained, so the kept-alive connection still works.
    assert http.get(standin.url + V2, timeout=5).status_code == 200


def test_unknown_table_and_path(standin, http):
    response = http.get(standin.url + "/api/now/table/not_a_table", timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Invalid table not_a_table"
    response = http.get(standin.url + "/api/now/whatever", timeout=5)
    assert response.status_code == 400
    assert response.json()["status"] == "failure"
    response = http.get(standin.url + "/nothing/here", timeout=5)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json;charset=UTF-8"


# -- auth -----------------------------------------------------------------------------
def test_bad_auth_gets_401_envelope_and_is_counted(standin):
    before = standin.auth_failures
    for auth in [("agent", "wrong"), ("nobody", PASSWORD), None]:
        response = requests.get(standin.url + V2, auth=auth, timeout=5)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Service-now"'
        assert response.json() == {
            "error": {
                "message": "User Not Authenticated",
                "detail": "Required to provide Auth information",
            },
            "status": "failure",
        }
    assert standin.auth_failures == before + 3
    assert requests.get(standin.url + V2, auth=("agent", PASSWORD), timeout=5).status_code == 200
    assert standin.auth_failures == before + 3


def test_set_users_rotates_a_password(standin):
    assert requests.get(standin.url + V2, auth=("agent", PASSWORD), timeout=5).ok
    standin.set_users({"agent": "rotated"})
    assert requests.get(standin.url + V2, auth=("agent", PASSWORD), timeout=5).status_code == 401
    assert requests.get(standin.url + V2, auth=("agent", "rotated"), timeout=5).ok


def token(standin, **form):
    return requests.post(standin.url + "/oauth_token.do", data=form, timeout=5)


def test_oauth_password_grant_and_bearer(standin, standin_clock):
    response = token(
        standin,
        grant_type="password",
        client_id="edge",
        client_secret=CLIENT_SECRET,
        username="agent",
        password=PASSWORD,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "useraccount"
    assert body["expires_in"] == 1799
    assert body["access_token"] and body["refresh_token"]
    bearer = {"Authorization": "Bearer " + body["access_token"], **JSON_HEADERS}
    created = requests.post(standin.url + V1, json={"short_description": "x"}, headers=bearer)
    assert created.status_code == 201
    assert created.json()["result"]["sys_created_by"] == "agent"

    standin_clock.now += 1799
    before = standin.auth_failures
    expired = requests.get(standin.url + V2, headers=bearer, timeout=5)
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "User Not Authenticated"
    assert standin.auth_failures == before + 1

    refreshed = token(
        standin,
        grant_type="refresh_token",
        client_id="edge",
        client_secret=CLIENT_SECRET,
        refresh_token=body["refresh_token"],
    )
    assert refreshed.status_code == 200
    fresh = {"Authorization": "Bearer " + refreshed.json()["access_token"]}
    assert requests.get(standin.url + V2, headers=fresh, timeout=5).status_code == 200


def test_oauth_client_credentials_and_refusals(standin):
    response = token(
        standin, grant_type="client_credentials", client_id="edge", client_secret=CLIENT_SECRET
    )
    assert response.status_code == 200
    bearer = {"Authorization": "Bearer " + response.json()["access_token"]}
    assert requests.get(standin.url + V2, headers=bearer, timeout=5).status_code == 200

    bad_client = token(
        standin, grant_type="client_credentials", client_id="edge", client_secret="nope"
    )
    assert bad_client.status_code == 401
    assert bad_client.json()["error"] == "access_denied"
    bad_user = token(
        standin,
        grant_type="password",
        client_id="edge",
        client_secret=CLIENT_SECRET,
        username="agent",
        password="nope",
    )
    assert bad_user.status_code == 401
    assert standin.counters["oauth_failures"] == 2
    assert standin.counters["tokens_issued"] == 1
    forged = {"Authorization": "Bearer not-a-token"}
    assert requests.get(standin.url + V2, headers=forged, timeout=5).status_code == 401


def test_expire_tokens(standin):
    response = token(
        standin, grant_type="client_credentials", client_id="edge", client_secret=CLIENT_SECRET
    )
    bearer = {"Authorization": "Bearer " + response.json()["access_token"]}
    standin.expire_tokens()
    assert requests.get(standin.url + V2, headers=bearer, timeout=5).status_code == 401


def test_secrets_never_reach_the_log(standin, caplog):
    caplog.set_level(logging.DEBUG, logger="edge_agent.standin")
    requests.get(standin.url + V2, auth=("agent", PASSWORD), timeout=5)
    requests.get(standin.url + V2, auth=("agent", "Wrong-Secret-99"), timeout=5)
    response = token(
        standin,
        grant_type="password",
        client_id="edge",
        client_secret=CLIENT_SECRET,
        username="agent",
        password=PASSWORD,
    )
    access = response.json()["access_token"]
    requests.get(
        standin.url + V2 + "?access_token=" + access,
        headers={"Authorization": "Bearer " + access},
        timeout=5,
    )
    ours = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("edge_agent.standin")
    )
    text = ours + repr(standin.request_log)
    assert "GET /api/now/v2/table/incident -> 200" in ours
    for secret in (PASSWORD, "Wrong-Secret-99", CLIENT_SECRET, access, "Basic ", "Bearer "):
        assert secret not in text
    assert "access_token=***" in text


def test_redact_path():
    assert redact_path("/x?password=a&sysparm_limit=1&client_secret=b") == (
        "/x?password=***&sysparm_limit=1&client_secret=***"
    )


# -- query ----------------------------------------------------------------------------
def test_query_v1_404_and_v2_empty_list(standin, http):
    params = {"sysparm_query": "correlation_id=missing^active=true", "sysparm_limit": "1"}
    v1 = http.get(standin.url + V1, params=params, timeout=5)
    assert v1.status_code == 404
    assert v1.json() == {
        "error": {
            "message": "No Record found",
            "detail": "Records matching query not found. Check query parameter or offset parameter",
        },
        "status": "failure",
    }
    v2 = http.get(standin.url + V2, params=params, timeout=5)
    assert v2.status_code == 200
    assert v2.json() == {"result": []}


def test_query_by_correlation_id_with_fields_and_limit(standin, http):
    create(http, standin, correlation_id="a", short_description="first a")
    create(http, standin, correlation_id="b")
    latest = create(http, standin, correlation_id="a", short_description="second a")
    params = {
        "sysparm_query": "correlation_id=a^active=true^ORDERBYDESCsys_created_on",
        "sysparm_limit": "1",
        "sysparm_fields": "sys_id,number,state,correlation_id",
    }
    response = http.get(standin.url + V1, params=params, timeout=5)
    assert response.status_code == 200
    (found,) = response.json()["result"]
    assert found == {
        "sys_id": latest["sys_id"],
        "number": latest["number"],
        "state": "1",
        "correlation_id": "a",
    }
    both = http.get(standin.url + V1, params={"sysparm_query": "correlation_id=a"}, timeout=5)
    assert [r["short_description"] for r in both.json()["result"]] == ["first a", "second a"]
    others = http.get(standin.url + V1, params={"sysparm_query": "correlation_id!=a"}, timeout=5)
    assert [r["correlation_id"] for r in others.json()["result"]] == ["b"]


def test_a_correlation_id_longer_than_its_column_is_cut_and_the_uncut_query_misses(standin, http):
    long_id = "c" * 101
    created = create(http, standin, correlation_id=long_id)
    assert created["correlation_id"] == "c" * 100  # cut silently to the column's 100
    uncut = http.get(
        standin.url + V2, params={"sysparm_query": "correlation_id=" + long_id}, timeout=5
    )
    cut = http.get(
        standin.url + V2, params={"sysparm_query": "correlation_id=" + "c" * 100}, timeout=5
    )
    assert uncut.json()["result"] == []
    assert [r["sys_id"] for r in cut.json()["result"]] == [created["sys_id"]]


def test_unknown_query_fields_are_silently_ignored(standin, http):
    create(http, standin, correlation_id="a")
    create(http, standin, correlation_id="b")
    params = {"sysparm_query": "correlation_idd=a^active=true"}
    response = http.get(standin.url + V1, params=params, timeout=5)
    assert response.status_code == 200
    assert len(response.json()["result"]) == 2  # the typo widened the query: the trap
    assert standin.counters["ignored_query_terms"] == 1


def test_active_false_query(standin, http):
    record = create(http, standin, correlation_id="c")
    params = {"sysparm_query": "active=false"}
    assert http.get(standin.url + V2, params=params, timeout=5).json()["result"] == []
    http.patch(f"{standin.url}{V1}/{record['sys_id']}", json={"state": "8"}, timeout=5)
    (found,) = http.get(standin.url + V2, params=params, timeout=5).json()["result"]
    assert found["sys_id"] == record["sys_id"]


def test_get_one_record(standin, http):
    record = create(http, standin, short_description="one")
    response = http.get(f"{standin.url}{V2}/{record['sys_id']}", timeout=5)
    assert response.status_code == 200
    assert response.json()["result"] == record
    missing = http.get(f"{standin.url}{V1}/{'0' * 32}", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No Record found"


# -- update ---------------------------------------------------------------------------
def test_patch_appends_journal_and_recomputes_priority(standin, http, standin_clock):
    record = create(http, standin, impact="3", urgency="3", work_notes="opened")
    url = f"{standin.url}{V1}/{record['sys_id']}"
    standin_clock.now += 60
    first = http.patch(url, json={"work_notes": "still high", "impact": "1"}, timeout=5)
    assert first.status_code == 200
    result = first.json()["result"]
    assert result["work_notes"] == ""
    assert result["priority"] == "3"  # 1 x 3
    assert result["sys_mod_count"] == "1"
    assert result["sys_updated_on"] != record["sys_updated_on"]
    http.put(url, json={"work_notes": "back to normal", "comments": "for the caller"}, timeout=5)
    (stored,) = standin.incidents()
    assert [(e["field"], e["value"]) for e in stored["_journal"]] == [
        ("work_notes", "opened"),
        ("work_notes", "still high"),
        ("work_notes", "back to normal"),
        ("comments", "for the caller"),
    ]
    assert stored["work_notes"] == stored["comments"] == ""
    assert stored["number"] == record["number"]


def test_patch_cannot_change_system_fields(standin, http):
    record = create(http, standin)
    url = f"{standin.url}{V1}/{record['sys_id']}"
    result = http.patch(url, json={"number": "INC9999999", "sys_id": "x"}, timeout=5).json()
    assert result["result"]["number"] == record["number"]
    assert result["result"]["sys_id"] == record["sys_id"]


def test_patch_unknown_record_is_404(standin, http):
    response = http.patch(f"{standin.url}{V1}/{'a' * 32}", json={"state": "2"}, timeout=5)
    assert response.status_code == 404


def test_resolve_needs_close_code_and_notes(standin, http):
    record = create(http, standin)
    url = f"{standin.url}{V1}/{record['sys_id']}"
    refused = http.patch(url, json={"state": "6"}, timeout=5)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {
            "message": "Operation Failed",
            "detail": "Data Policy Exception: \n Close code is mandatory\n Close notes is mandatory",
        },
        "status": "failure",
    }
    half = http.patch(url, json={"state": "6", "close_code": "Solved (Permanently)"}, timeout=5)
    assert half.status_code == 403
    assert half.json()["error"]["detail"] == "Data Policy Exception: \n Close notes is mandatory"
    assert standin.incidents()[0]["state"] == "1"

    resolved = http.patch(
        url,
        json={"state": 6, "close_code": "Solved (Permanently)", "close_notes": "back to normal"},
        timeout=5,
    )
    assert resolved.status_code == 200
    result = resolved.json()["result"]
    assert result["state"] == "6"
    assert result["active"] == "true"
    assert result["resolved_at"]

    closed = http.patch(url, json={"state": "7"}, timeout=5).json()["result"]
    assert closed["state"] == "7"
    assert closed["active"] == "false"
    assert closed["closed_at"]


def test_close_code_already_on_record_satisfies_the_policy(standin, http):
    record = create(http, standin, close_code="Solved (Workaround)", close_notes="n")
    url = f"{standin.url}{V1}/{record['sys_id']}"
    assert http.patch(url, json={"state": "6"}, timeout=5).status_code == 200


def test_delete(standin, http):
    record = create(http, standin)
    url = f"{standin.url}{V1}/{record['sys_id']}"
    assert http.delete(url, timeout=5).status_code == 204
    assert http.get(url, timeout=5).status_code == 404
    assert http.delete(url, timeout=5).status_code == 404


# -- persistence ----------------------------------------------------------------------
def test_file_database_survives_a_restart(tmp_path):
    db = tmp_path / "standin.sqlite3"
    auth = ("admin", "admin")
    with ServiceNowStandIn(db_path=str(db)) as first:
        for _ in range(2):
            response = requests.post(first.url + V1, json={}, headers=JSON_HEADERS, auth=auth)
            assert response.status_code == 201
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with ServiceNowStandIn(db_path=str(db)) as second:
        assert [r["number"] for r in second.incidents()] == ["INC0010001", "INC0010002"]
        response = requests.post(second.url + V1, json={}, headers=JSON_HEADERS, auth=auth)
        assert response.json()["result"]["number"] == "INC0010003"
        assert len(requests.get(second.url + V1, auth=auth).json()["result"]) == 3


def test_concurrent_creates_get_unique_numbers(standin):
    numbers = []
    lock = threading.Lock()

    def worker():
        with requests.Session() as session:
            for _ in range(5):
                response = session.post(
                    standin.url + V1, json={}, headers=JSON_HEADERS, auth=("agent", PASSWORD)
                )
                with lock:
                    numbers.append(response.json()["result"]["number"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(numbers) == [f"INC{10001 + i:07d}" for i in range(40)]


# -- faults ---------------------------------------------------------------------------
def test_rate_limit_answers_429_with_retry_after(standin, http, standin_clock):
    standin.faults.rate_limit_next(1, retry_after=7)
    response = http.post(standin.url + V1, json={}, timeout=5)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert int(response.headers["X-RateLimit-Limit"]) > 0
    assert int(response.headers["X-RateLimit-Reset"]) == int(standin_clock.now) + 7
    assert "X-RateLimit-Remaining" not in response.headers
    assert response.json()["status"] == "failure"
    assert standin.incidents() == []
    assert http.post(standin.url + V1, json={}, timeout=5).status_code == 201
    assert standin.counters["rate_limited"] == 1


def test_fail_next_answers_5xx_then_recovers(standin, http):
    standin.fail_next(2)
    standin.fail_next(1, status=500)
    statuses = [http.post(standin.url + V1, json={}, timeout=5).status_code for _ in range(4)]
    assert statuses == [503, 503, 500, 201]
    assert len(standin.incidents()) == 1
    assert standin.faults.pending()["fail"] == 0


def test_drop_next_raises_connection_error(standin, http):
    standin.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        http.post(standin.url + V1, json={}, timeout=5)
    assert standin.incidents() == []
    assert http.post(standin.url + V1, json={}, timeout=5).status_code == 201
    assert (("POST", V1, None)) in standin.request_log
    assert standin.counters["dropped"] == 1


def test_fail_after_commit_writes_but_never_confirms(standin, http):
    standin.fail_after_commit_next(1)
    assert http.get(standin.url + V2, timeout=5).status_code == 200  # reads do not consume it
    with pytest.raises(requests.ConnectionError):
        http.post(standin.url + V1, json={"correlation_id": "lost"}, timeout=5)
    assert len(standin.incidents({"correlation_id": "lost"})) == 1


def test_down_resets_every_connection_until_up(standin, http):
    assert http.get(standin.url + V2, timeout=5).ok  # a kept-alive connection is reset too
    standin.down = True
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            http.get(standin.url + V2, timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(standin.url + V2, auth=("agent", PASSWORD), timeout=5)
    standin.down = False
    assert http.get(standin.url + V2, timeout=5).ok


def test_latency_delays_responses(standin, http):
    standin.latency = 0.4
    started = time.monotonic()
    assert http.get(standin.url + V2, timeout=5).ok
    assert time.monotonic() - started >= 0.4
    standin.latency = 0
    started = time.monotonic()
    assert http.get(standin.url + V2, timeout=5).ok
    assert time.monotonic() - started < 0.4


def test_random_faults_are_seeded():
    def run(seed):
        faults = Faults(seed)
        faults.fail_rate = 0.5
        return [faults.for_request(False).kind for _ in range(50)]

    assert run(1) == run(1)
    assert {"ok", "fail"} == set(run(1))


def test_fail_rate_one_fails_everything(standin, http):
    standin.faults.fail_rate = 1.0
    assert http.get(standin.url + V2, timeout=5).status_code == 503
    standin.faults.reset()
    assert http.get(standin.url + V2, timeout=5).status_code == 200


def test_commit_delay_stores_a_write_only_later_even_if_the_client_gave_up(standin, http):
    standin.faults.commit_delay = 0.6
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        http.post(standin.url + V1, json={"correlation_id": "slow"}, timeout=0.2)
    # The client gave up; the instance has not stored it yet, so a lookup misses it...
    assert standin.incidents({"correlation_id": "slow"}) == []
    reads = http.get(standin.url + V2, params={"sysparm_query": "correlation_id=slow"}, timeout=5)
    assert reads.json()["result"] == []
    # ...and it appears once the commit is through, answer or no answer.
    assert wait_until(lambda: standin.incidents({"correlation_id": "slow"}), 5)
    assert len(standin.incidents({"correlation_id": "slow"})) == 1
    assert time.monotonic() - started >= 0.6
    standin.faults.reset()
    assert standin.faults.commit_delay == 0


def test_sys_mod_count_counts_every_update_and_journal_entry(standin, http):
    record = create(http, standin)
    url = f"{standin.url}{V1}/{record['sys_id']}"
    counts = []
    for body in ({"work_notes": "one"}, {"work_notes": "two"}, {"urgency": "2"}, {}):
        counts.append(http.patch(url, json=body, timeout=5).json()["result"]["sys_mod_count"])
    assert counts == ["1", "2", "3", "3"]  # an update that changes nothing is no update
    fields = "sys_mod_count,sys_updated_by,work_notes"
    read = http.get(url, params={"sysparm_fields": fields}, timeout=5).json()["result"]
    assert read == {"sys_mod_count": "3", "sys_updated_by": "agent", "work_notes": ""}


def test_faults_configure_by_name_and_refuse_unknown_knobs():
    faults = Faults()
    faults.configure({"latency": 0.1, "commit_delay": 2, "down": True, "fail_next": {"n": 2}})
    assert faults.describe()["commit_delay"] == 2.0 and faults.down
    assert faults.pending()["fail"] == 2
    faults.configure({"reset": True})
    assert not faults.down and faults.pending()["fail"] == 0
    with pytest.raises(ValueError, match="unknown fault setting"):
        faults.configure({"latancy": 1})
    with pytest.raises(ValueError):
        faults.configure({"fail_rate": 2})


def test_the_request_log_has_the_time_of_each_request(standin, http, standin_clock):
    standin.reset_stats()
    http.get(standin.url + V2, timeout=5)
    standin_clock.now += 30
    http.get(standin.url + V2, timeout=5)
    times = [entry[0] for entry in standin.timed_request_log]
    assert times == [standin_clock.now - 30, standin_clock.now]


# -- control API and the stand-in as a process -----------------------------------------
def test_the_control_api_is_off_by_default(standin):
    response = requests.get(standin.url + "/__standin/state", timeout=5)
    assert response.status_code == 404  # an unknown path, as on an instance


def test_the_control_api_needs_its_token_and_bypasses_faults(standin_clock):
    with ServiceNowStandIn(
        users={"agent": PASSWORD}, clock=standin_clock, admin_token="tok-1"
    ) as server:
        url = server.url + "/__standin/"
        assert requests.get(url + "state", timeout=5).status_code == 403
        wrong = {"X-Standin-Admin": "tok-2"}
        assert requests.get(url + "state", headers=wrong, timeout=5).status_code == 403
        admin = {"X-Standin-Admin": "tok-1"}
        answer = requests.post(url + "faults", json={"down": True}, headers=admin, timeout=5)
        assert answer.status_code == 200 and answer.json()["result"]["faults"]["down"] is True
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + V2, auth=("agent", PASSWORD), timeout=5)
        # Still reachable while "down", and never in the request log.
        requests.post(url + "faults", json={"down": False}, headers=admin, timeout=5)
        assert [entry[1] for entry in server.request_log] == [V2]
        bad = requests.post(url + "faults", json={"nonsense": 1}, headers=admin, timeout=5)
        assert bad.status_code == 400 and "nonsense" in bad.json()["error"]["detail"]


def test_a_standin_process_is_driven_across_the_process_boundary():
    rotated = "pw-Rotated-9917"
    with StandInProcess(users={"agent": PASSWORD}) as snow:
        session = requests.Session()
        session.headers.update(JSON_HEADERS)
        assert session.post(snow.url + V1, json={}, auth=("agent", PASSWORD)).status_code == 201
        snow.set_users({"agent": rotated})
        assert session.get(snow.url + V2, auth=("agent", PASSWORD)).status_code == 401
        assert session.get(snow.url + V2, auth=("agent", rotated)).status_code == 200
        snow.faults.fail_next(1, status=502)
        assert session.get(snow.url + V2, auth=("agent", rotated)).status_code == 502
        snow.faults.commit_delay = 0.3
        assert snow.faults.commit_delay == 0.3
        assert [i["number"] for i in snow.incidents()] == ["INC0010001"]
        assert snow.counters["auth_failures"] == 1
        assert [entry[2] for entry in snow.request_log] == [201, 401, 200, 502]
        # SIGSTOP: the kernel still accepts the connection, nobody answers.
        snow.pause()
        with pytest.raises(requests.Timeout):
            requests.get(snow.url + V2, auth=("agent", rotated), timeout=0.5)
        snow.resume()
        assert session.get(snow.url + V2, auth=("agent", rotated), timeout=5).status_code == 200
        pid = snow.pid
        snow.pause()  # stopping must work on a frozen process too
    assert snow.running is False
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_forgotten_standin_process_is_stopped_when_collected():
    import gc

    snow = StandInProcess()
    pid = snow.pid
    del snow
    gc.collect()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- connections ----------------------------------------------------------------------
def test_session_reuses_one_connection(standin, http):
    before = standin.connections
    assert http.get(standin.url + V2, timeout=5).ok
    assert http.post(standin.url + V1, json={}, timeout=5).status_code == 201
    assert http.get(standin.url + V2, timeout=5).ok
    assert standin.connections == before + 1
    for _ in range(2):
        requests.get(standin.url + V2, auth=("agent", PASSWORD), timeout=5)
    assert standin.connections == before + 3


def test_request_log_records_every_request(standin, http):
    standin.reset_stats()
    http.get(standin.url + V2, params={"sysparm_limit": "1"}, timeout=5)
    requests.get(standin.url + V2, timeout=5)
    assert standin.request_log == [
        ("GET", V2 + "?sysparm_limit=1", 200),
        ("GET", V2, 401),
    ]
    assert standin.counters["requests"] == 2


def test_unsupported_method_gets_json_error(standin):
    response = requests.request("OPTIONS", standin.url + V1, timeout=5)
    assert response.status_code == 501
    assert response.json()["status"] == "failure"


# -- CLI ------------------------------------------------------------------------------
# The child resets SIGINT to Python's handler before it runs the CLI: a test
# process started with SIGINT ignored (a background job, some CI runners)
# passes SIG_IGN on to its children, and Ctrl-C would then never stop them.
_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'servicenow_standin'; "
    "runpy.run_module('devtools.servicenow_standin', run_name='__main__', alter_sys=True)"
)


def test_cli_serves_until_interrupted(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WITH_CTRL_C,
            "--port",
            "0",
            "--db",
            str(tmp_path / "cli.sqlite3"),
            "--user",
            f"bob:{PASSWORD}",
            "--oauth-client",
            f"edge:{CLIENT_SECRET}",
            "--log-level",
            "WARNING",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = []
        while not banner or not banner[-1].startswith("Press Ctrl-C"):
            line = proc.stdout.readline()
            assert line, "".join(banner)
            banner.append(line)
        first = "".join(banner)
        match = re.search(r"listening on (http://\S+)", first)
        assert match, first
        url = match.group(1)
        response = requests.post(
            url + V1,
            json={"short_description": "cli"},
            headers=JSON_HEADERS,
            auth=("bob", PASSWORD),
        )
        assert response.status_code == 201
        assert requests.get(url + V2, auth=("admin", "admin"), timeout=5).status_code == 401
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:  # never leave a server behind, whatever failed above
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    text = first + output
    assert "bob" in text and "edge" in text
    assert PASSWORD not in text and CLIENT_SECRET not in text
    assert (tmp_path / "cli.sqlite3").exists()


def test_main_returns_1_when_the_port_is_taken(tmp_path):
    # Run off the main thread (no signal handler is installed there).
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        results = []
        args = ["--port", str(port), "--db", ":memory:", "--log-level", "WARNING"]
        thread = threading.Thread(target=lambda: results.append(main(args)))
        thread.start()
        thread.join(10)
    assert results == [1]


def test_cli_rejects_malformed_options():
    with pytest.raises(SystemExit) as exc:
        main(["--user", "no-colon"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["--fail-rate", "1.5"])
    with pytest.raises(SystemExit):
        main(["--commit-delay", "-1"])
    with pytest.raises(SystemExit):  # the control API needs its token in the environment
        main(["--port", "0", "--admin-token-env", "EDGE_AGENT_TEST_UNSET_VARIABLE"])
